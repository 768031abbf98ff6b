"""Convert the authors' detectron2 checkpoints (Mask2Former, ECO-M2F, PRO-SCALE) into EcoMask2Former folders.

A layer of its own above the model: it imports the model, the configuration and the processor; nothing in the model
imports it. Command line: `ecom2f-convert` (`modeling_ecom2f.convert.cli`).
"""

from .architecture import Detectron2Architecture, ResNetSpec, SwinSpec, detect_architecture
from .converter import ConversionResult, build_config, convert_checkpoint
from .label_sets import LabelSet
from .mapping import MappingReport, map_state_dict
from .presets import PRESETS, RELEASES, DatasetPreset, Release
from .reading import ConversionError, SourceCheckpoint, read_detectron2_checkpoint

__all__ = [
    "PRESETS",
    "RELEASES",
    "ConversionError",
    "ConversionResult",
    "DatasetPreset",
    "Detectron2Architecture",
    "LabelSet",
    "MappingReport",
    "Release",
    "ResNetSpec",
    "SourceCheckpoint",
    "SwinSpec",
    "build_config",
    "convert_checkpoint",
    "detect_architecture",
    "map_state_dict",
    "read_detectron2_checkpoint",
]
