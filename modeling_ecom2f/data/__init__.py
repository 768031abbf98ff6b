"""Data for ecom2f: the procedural default data set, real-data adapters, augmentation, collation and pictures.

Every loader returns ``(dataset, label_info)``: a ``datasets.Dataset``/``DatasetDict`` with the standard columns
``image``, ``annotation`` (COCO panoptic RGB id PNG), ``segments_info``, ``image_id`` and a
:class:`SegmentationLabelInfo` (also stored as JSON in ``dataset.info.description``).
"""

from .ade20k import load_ade20k, read_ade20k_instance_mapping
from .augmentation import EcoMask2FormerTrainAugmentation
from .cityscapes import CITYSCAPES_CLASSES, load_cityscapes
from .coco_panoptic import load_coco_panoptic
from .detection import detection_reference
from .collate import EcoMask2FormerCollator, decode_row, make_collate_fn, panoptic_reference, semantic_reference
from .errors import SegmentationDataError
from .labels import SegmentationLabelInfo
from .mapped import ANNOTATION_FORMATS, load_mapped_dataset
from .maze_rooms import (
    MAZE_DIFFICULTY_COLUMNS,
    MazeRoomsConfig,
    make_maze_rooms_panoptic_dataset,
    maze_benchmark_config,
    render_maze_rooms_sample,
)
from .panoptic_format import (
    panoptic_features,
    panoptic_ids_to_rgb,
    panoptic_to_instance_masks,
    panoptic_to_semantic,
    rgb_to_panoptic_ids,
    validate_panoptic,
)
from .synthetic import DIFFICULTY_COLUMNS, SyntheticSample, make_synthetic_panoptic_dataset, render_synthetic_sample
from .synthetic_config import STUFF_TEXTURES, THING_SHAPES, SyntheticPanopticConfig, depth_benchmark_config
from .visualization import (
    colorize_panoptic,
    draw_panoptic_grid,
    draw_panoptic_overlay,
    draw_prediction_vs_ground_truth,
)

__all__ = [
    "ANNOTATION_FORMATS",
    "CITYSCAPES_CLASSES",
    "DIFFICULTY_COLUMNS",
    "EcoMask2FormerCollator",
    "MAZE_DIFFICULTY_COLUMNS",
    "MazeRoomsConfig",
    "EcoMask2FormerTrainAugmentation",
    "STUFF_TEXTURES",
    "SegmentationDataError",
    "SegmentationLabelInfo",
    "SyntheticPanopticConfig",
    "depth_benchmark_config",
    "SyntheticSample",
    "THING_SHAPES",
    "colorize_panoptic",
    "decode_row",
    "detection_reference",
    "draw_panoptic_grid",
    "draw_panoptic_overlay",
    "draw_prediction_vs_ground_truth",
    "load_ade20k",
    "load_cityscapes",
    "load_coco_panoptic",
    "load_mapped_dataset",
    "make_collate_fn",
    "make_maze_rooms_panoptic_dataset",
    "make_synthetic_panoptic_dataset",
    "maze_benchmark_config",
    "panoptic_features",
    "panoptic_ids_to_rgb",
    "panoptic_reference",
    "panoptic_to_instance_masks",
    "panoptic_to_semantic",
    "read_ade20k_instance_mapping",
    "render_maze_rooms_sample",
    "render_synthetic_sample",
    "rgb_to_panoptic_ids",
    "semantic_reference",
    "validate_panoptic",
]
