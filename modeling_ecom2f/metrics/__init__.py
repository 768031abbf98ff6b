"""Metrics of ecom2f: panoptic quality (data set and per image), mIoU, mask AP, per-image box AP (detection), and
the one COCOeval driver (data-set box and mask AP). The recipe computes no metric itself: it calls these.

All take the outputs of the image processor's ``post_process_*`` methods directly, and ground truth as produced by
``modeling_ecom2f.data`` (``panoptic_reference`` / ``semantic_reference``). Every figure is a fraction in [0, 1].
The same metrics as ``evaluate`` modules: ``evaluate.load(evaluate_module_path("ecom2f_panoptic_quality"))``.
"""

from .box_ap import IOU_THRESHOLDS, PerImageBoxAP, per_image_box_ap
from .coco_eval import COCO_SUMMARY_NAMES, coco_summary, index_mask_detections, run_coco_eval
from .evaluate_support import EVALUATE_MODULES, evaluate_module_path
from .inputs import SegmentTable, to_segment_table
from .mask_ap import coco_gt_and_detections, mask_average_precision
from .mean_iou import MeanIoUResult, intersection_and_union, mean_iou, miou_from_counts
from .panoptic_quality import (
    PanopticQualityAccumulator,
    PanopticQualityResult,
    PerImagePanopticQuality,
    panoptic_from_counts,
    panoptic_per_class_from_counts,
    panoptic_quality,
    per_image_panoptic_quality,
)

__all__ = [
    "IOU_THRESHOLDS",
    "PerImageBoxAP",
    "per_image_box_ap",
    "COCO_SUMMARY_NAMES",
    "EVALUATE_MODULES",
    "MeanIoUResult",
    "PanopticQualityAccumulator",
    "PanopticQualityResult",
    "PerImagePanopticQuality",
    "SegmentTable",
    "coco_gt_and_detections",
    "coco_summary",
    "evaluate_module_path",
    "index_mask_detections",
    "intersection_and_union",
    "mask_average_precision",
    "mean_iou",
    "miou_from_counts",
    "panoptic_quality",
    "panoptic_from_counts",
    "panoptic_per_class_from_counts",
    "per_image_panoptic_quality",
    "run_coco_eval",
    "to_segment_table",
]
