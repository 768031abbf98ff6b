"""ecom2f: efficient transformer encoders for Mask2Former-style universal segmentation.

`import modeling_ecom2f` gives the public API and registers the classes with the transformers Auto classes: the
configs (`AutoConfig`), the base models (`AutoModel`), the task models and the image processors.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForObjectDetection,
    AutoModelForUniversalSegmentation,
)

from configuration.configuration_eco_deformable_detr import EcoDeformableDetrConfig
from configuration.configuration_ecom2f import EcoMask2FormerConfig
from processing.image_processing_eco_deformable_detr import EcoDeformableDetrImageProcessor
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
    detection_reference,
    make_synthetic_panoptic_dataset,
    panoptic_reference,
    semantic_reference,
)
from .ecom2f_depth import sample_exit_depth
from .ecom2f_detr_outputs import EcoDeformableDetrModelOutput, EcoDeformableDetrObjectDetectionOutput
from .ecom2f_gate import EcoExitGate
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
    per_image_box_ap,
    per_image_panoptic_quality,
)
from .modeling_eco_deformable_detr import (
    EcoDeformableDetrForObjectDetection,
    EcoDeformableDetrModel,
    EcoDeformableDetrPreTrainedModel,
)
from .modeling_ecom2f import (
    EcoMask2FormerForUniversalSegmentation,
    EcoMask2FormerModel,
    EcoMask2FormerPreTrainedModel,
)

AutoConfig.register(EcoMask2FormerConfig.model_type, EcoMask2FormerConfig, exist_ok=True)
AutoModel.register(EcoMask2FormerConfig, EcoMask2FormerModel, exist_ok=True)
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

AutoConfig.register(EcoDeformableDetrConfig.model_type, EcoDeformableDetrConfig, exist_ok=True)
AutoModel.register(EcoDeformableDetrConfig, EcoDeformableDetrModel, exist_ok=True)
AutoModelForObjectDetection.register(EcoDeformableDetrConfig, EcoDeformableDetrForObjectDetection, exist_ok=True)
AutoImageProcessor.register(
    EcoDeformableDetrConfig,
    image_processor_classes={"pil": EcoDeformableDetrImageProcessor, "torchvision": EcoDeformableDetrImageProcessor},
    exist_ok=True,
)

__all__ = [
    "EcoDeformableDetrConfig",
    "EcoDeformableDetrForObjectDetection",
    "EcoDeformableDetrImageProcessor",
    "EcoDeformableDetrModel",
    "EcoDeformableDetrModelOutput",
    "EcoDeformableDetrObjectDetectionOutput",
    "EcoDeformableDetrPreTrainedModel",
    "EcoExitGate",
    "EcoMask2FormerCollator",
    "EcoMask2FormerConfig",
    "EcoMask2FormerForUniversalSegmentation",
    "EcoMask2FormerForUniversalSegmentationOutput",
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
    "detection_reference",
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
    "per_image_box_ap",
    "per_image_panoptic_quality",
    "sample_exit_depth",
    "semantic_reference",
]
