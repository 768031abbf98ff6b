"""ecom2f: efficient transformer encoders for Mask2Former-style universal segmentation.

`import modeling_ecom2f` gives the public API and registers the classes with the transformers Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
)

from configuration.configuration_ecom2f import EcoMask2FormerConfig

from .ecom2f_depth import sample_exit_depth
from .ecom2f_gate import EcoMask2FormerGate
from .ecom2f_outputs import (
    EcoMask2FormerForUniversalSegmentationOutput,
    EcoMask2FormerModelOutput,
    EcoMask2FormerPixelDecoderOutput,
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

__all__ = [
    "EcoMask2FormerConfig",
    "EcoMask2FormerForUniversalSegmentation",
    "EcoMask2FormerForUniversalSegmentationOutput",
    "EcoMask2FormerGate",
    "EcoMask2FormerModel",
    "EcoMask2FormerModelOutput",
    "EcoMask2FormerPixelDecoderOutput",
    "EcoMask2FormerPreTrainedModel",
    "sample_exit_depth",
]
