"""Metrics of ecom2f: panoptic quality (data set and per image), mIoU, mask AP, per-image box AP (detection).

All take the outputs of the image processor's ``post_process_*`` methods directly, and ground truth as produced by
``modeling_ecom2f.data`` (``panoptic_reference`` / ``semantic_reference``). Every figure is a fraction in [0, 1].
"""

from .box_ap import IOU_THRESHOLDS, PerImageBoxAP, per_image_box_ap
from .inputs import SegmentTable, to_segment_table
from .mask_ap import COCO_SUMMARY_NAMES, coco_gt_and_detections, mask_average_precision
from .mean_iou import MeanIoUResult, mean_iou
from .panoptic_quality import (
    PanopticQualityAccumulator,
    PanopticQualityResult,
    PerImagePanopticQuality,
    panoptic_from_counts,
    panoptic_quality,
    per_image_panoptic_quality,
)

__all__ = [
    "IOU_THRESHOLDS",
    "PerImageBoxAP",
    "per_image_box_ap",
    "COCO_SUMMARY_NAMES",
    "MeanIoUResult",
    "PanopticQualityAccumulator",
    "PanopticQualityResult",
    "PerImagePanopticQuality",
    "SegmentTable",
    "coco_gt_and_detections",
    "mask_average_precision",
    "mean_iou",
    "panoptic_quality",
    "panoptic_from_counts",
    "per_image_panoptic_quality",
    "to_segment_table",
]
