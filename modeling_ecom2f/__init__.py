"""ecom2f: efficient transformer encoders for Mask2Former-style universal segmentation.

`import modeling_ecom2f` gives the public API and registers the classes with the transformers Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
)

from configuration.configuration_ecom2f import EcoMask2FormerConfig
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor

from . import data, metrics
from .data import (
    EcoMask2FormerCollator,
    EcoMask2FormerTrainAugmentation,
    SegmentationDataError,
    SegmentationLabelInfo,
    SyntheticPanopticConfig,
    draw_panoptic_overlay,
    draw_prediction_vs_ground_truth,
    load_ade20k,
    load_cityscapes,
    load_coco_panoptic,
    load_mapped_dataset,
    make_collate_fn,
    make_synthetic_panoptic_dataset,
    panoptic_reference,
    semantic_reference,
)
from .ecom2f_depth import sample_exit_depth
from .ecom2f_gate import EcoMask2FormerGate
from .ecom2f_outputs import (
    EcoMask2FormerForUniversalSegmentationOutput,
    EcoMask2FormerModelOutput,
    EcoMask2FormerPixelDecoderOutput,
)
from .metrics import (
    PanopticQualityAccumulator,
    mask_average_precision,
    mean_iou,
    panoptic_quality,
    per_image_panoptic_quality,
)
from .modeling_ecom2f import (
    EcoMask2FormerForUniversalSegmentation,
    EcoMask2FormerModel,
    EcoMask2FormerPreTrainedModel,
)

AutoConfig.register(EcoMask2FormerConfig.model_type, EcoMask2FormerConfig, exist_ok=True)
AutoModelForUniversalSegmentation.register(
    EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation, exist_ok=True
)
AutoModelForImageSegmentation.register(EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation, exist_ok=True)
# One class for both backend keys: it is PIL/NumPy based, and AutoImageProcessor asks for "torchvision" first when
# torchvision is installed (a missing key would log a fallback warning on every load).
AutoImageProcessor.register(
    EcoMask2FormerConfig,
    image_processor_classes={"pil": EcoMask2FormerImageProcessor, "torchvision": EcoMask2FormerImageProcessor},
    exist_ok=True,
)

__all__ = [
    "EcoMask2FormerCollator",
    "EcoMask2FormerConfig",
    "EcoMask2FormerForUniversalSegmentation",
    "EcoMask2FormerForUniversalSegmentationOutput",
    "EcoMask2FormerGate",
    "EcoMask2FormerImageProcessor",
    "EcoMask2FormerModel",
    "EcoMask2FormerModelOutput",
    "EcoMask2FormerPixelDecoderOutput",
    "EcoMask2FormerPreTrainedModel",
    "EcoMask2FormerTrainAugmentation",
    "PanopticQualityAccumulator",
    "SegmentationDataError",
    "SegmentationLabelInfo",
    "SyntheticPanopticConfig",
    "data",
    "draw_panoptic_overlay",
    "draw_prediction_vs_ground_truth",
    "load_ade20k",
    "load_cityscapes",
    "load_coco_panoptic",
    "load_mapped_dataset",
    "make_collate_fn",
    "make_synthetic_panoptic_dataset",
    "mask_average_precision",
    "mean_iou",
    "metrics",
    "panoptic_quality",
    "panoptic_reference",
    "per_image_panoptic_quality",
    "sample_exit_depth",
    "semantic_reference",
]
