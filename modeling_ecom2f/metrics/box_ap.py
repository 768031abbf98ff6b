"""Per-image detection quality: COCO box AP computed on one image (the step-2 quality of ECO-M2F for detectors).

Definition (`per_image_box_ap`). For one image, with `maxDets=100`, the "all" area range and IoU thresholds
0.50:0.05:0.95, this is exactly what pycocotools' `COCOeval` (iouType "bbox") reports as AP (`stats[0]`) when it is
restricted to that image (`params.imgIds = [image]`):

* per category with at least one non-crowd ground-truth box in the image, and per IoU threshold, detections of that
  category are sorted by score (stable), the top 100 kept, and greedily matched to the best still-unmatched
  ground truth with IoU >= threshold (crowd boxes: IoU = intersection / detection area, can be matched many times,
  and detections matched to them are ignored);
* precision is made monotone and sampled at the 101 recall points 0:0.01:1 (0 beyond the reached recall);
* an unmatched detection whose area `w * h` is outside COCO's "all" range [0, 1e10] (only a degenerate box with
  x1 < x0 or y1 < y0 can be) is ignored, as in COCO;
* AP is the mean over IoU thresholds, recall points and those categories.

Why this definition: it is the standard COCO box AP, so a per-image figure and the data-set figure speak the same
language, and it rewards both localisation (the 10 IoU thresholds) and ranking, which is what a deeper encoder
changes. As in COCO, detections of categories absent from the image's ground truth are not penalised.

Images without non-crowd ground truth have no AP in COCO (pycocotools reports -1). Step 2 needs a number for every
image, so here such an image scores 1.0 if the detector reports nothing at or above `score_threshold` and 0.0
otherwise. That figure is the same at every depth unless the detections change across the threshold, so the
derived ideal depth (`argmax_k (q_k - beta * k)`) of an empty image is the shallowest exit, which is the sensible
answer for an image with nothing to find. `PerImageBoxAP.has_ground_truth` tells the two cases apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100
AREA_RANGE_MAX = 1e5**2


@dataclass(frozen=True)
class PerImageBoxAP:
    """Box AP of one image.

    Attributes:
        ap: mean AP over IoU thresholds 0.50:0.95 (see the module docstring; the empty-image rule when there is no
            ground truth).
        ap_per_iou: AP at each of the 10 IoU thresholds `(10,)` (the empty-image value repeated when no ground truth).
        num_ground_truth: non-crowd ground-truth boxes.
        num_detections: detections scored (all given detections; at most 100 per category are used).
        has_ground_truth: whether `ap` is a COCO AP (`True`) or the empty-image rule (`False`).
    """

    ap: float
    ap_per_iou: tuple[float, ...]
    num_ground_truth: int
    num_detections: int
    has_ground_truth: bool

    @property
    def ap50(self) -> float:
        return self.ap_per_iou[0]

    @property
    def ap75(self) -> float:
        return self.ap_per_iou[5]


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def box_iou_coco(detections: np.ndarray, ground_truth: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU `(D, G)` of `[x, y, w, h]` boxes as pycocotools computes it (crowd columns: intersection / detection area)."""
    d0, d1 = detections[:, None, :2], detections[:, None, :2] + detections[:, None, 2:]
    g0, g1 = ground_truth[None, :, :2], ground_truth[None, :, :2] + ground_truth[None, :, 2:]
    wh = np.clip(np.minimum(d1, g1) - np.maximum(d0, g0), 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    d_area = detections[:, None, 2] * detections[:, None, 3]
    g_area = ground_truth[None, :, 2] * ground_truth[None, :, 3]
    union = np.where(crowd[None, :], d_area, d_area + g_area - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _category_precision(scores: np.ndarray, areas: np.ndarray, ious: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Interpolated precision `(10, 101)` of one category: detections sorted by score, ground truth non-crowd first."""
    num_real = int((~crowd).sum())
    order = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    ious = ious[order]
    # COCO's "all" area range [0, 1e10]: an unmatched detection outside it (a degenerate box) is ignored.
    outside = (areas[order] < 0) | (areas[order] > AREA_RANGE_MAX)
    precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gt_taken = np.zeros(len(crowd), dtype=bool)
        matched = np.zeros(len(order), dtype=bool)
        ignored = np.zeros(len(order), dtype=bool)
        for d in range(len(order)):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g in range(len(crowd)):
                if gt_taken[g] and not crowd[g]:
                    continue
                if best > -1 and not crowd[best] and crowd[g]:
                    break  # non-crowd ground truth comes first; a crowd match never replaces a real one
                if ious[d, g] < best_iou:
                    continue
                best, best_iou = g, ious[d, g]
            if best > -1:
                matched[d], ignored[d] = True, bool(crowd[best])
                gt_taken[best] = True
        ignored |= ~matched & outside
        tp = np.cumsum(matched & ~ignored)
        fp = np.cumsum(~matched & ~ignored)
        recall = tp / num_real
        prec = tp / (fp + tp + np.spacing(1))
        prec = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec
        index = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        valid = index < len(prec)
        precision[t, valid] = prec[index[valid]]
    return precision


def per_image_box_ap(
    prediction: Mapping[str, Any],
    ground_truth: Mapping[str, Any],
    *,
    score_threshold: float = 0.0,
) -> PerImageBoxAP:
    """COCO box AP (0.50:0.95) of one image; see the module docstring for the definition.

    Args:
        prediction: one entry of `post_process_object_detection`: `scores` `(D,)`, `labels` `(D,)`, `boxes` `(D, 4)`
            absolute `(x0, y0, x1, y1)` (tensors, arrays or lists).
        ground_truth: `{"annotations": [{"bbox": [x, y, w, h], "category_id": int, "iscrowd": 0/1}, ...]}` in the
            same pixel frame (what `modeling_ecom2f.data.detection_reference` makes).
        score_threshold: only for images without ground truth: detections scoring at least this count against it.

    Returns:
        A [`PerImageBoxAP`].
    """
    scores = np.asarray(_numpy(prediction["scores"]), dtype=np.float64).reshape(-1)
    labels = np.asarray(_numpy(prediction["labels"]), dtype=np.int64).reshape(-1)
    boxes = np.asarray(_numpy(prediction["boxes"]), dtype=np.float64).reshape(-1, 4)
    annotations: Sequence[Mapping[str, Any]] = ground_truth.get("annotations", [])
    gt_boxes = np.asarray([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray([int(a["category_id"]) for a in annotations], dtype=np.int64)
    gt_crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
    num_real = int((~gt_crowd).sum())
    if num_real == 0:
        value = 0.0 if bool((scores >= score_threshold).any()) else 1.0
        return PerImageBoxAP(value, (value,) * len(IOU_THRESHOLDS), 0, len(scores), False)

    det_xywh = _xyxy_to_xywh(boxes)
    per_category = []
    for category in np.unique(gt_labels[~gt_crowd]):
        in_gt = np.flatnonzero(gt_labels == category)
        in_gt = np.concatenate([in_gt[~gt_crowd[in_gt]], in_gt[gt_crowd[in_gt]]])  # non-crowd first, as COCO
        in_det = np.flatnonzero(labels == category)
        ious = box_iou_coco(det_xywh[in_det], gt_boxes[in_gt], gt_crowd[in_gt])
        areas = det_xywh[in_det, 2] * det_xywh[in_det, 3]
        per_category.append(_category_precision(scores[in_det], areas, ious, gt_crowd[in_gt]))
    precision = np.stack(per_category)  # (categories, 10, 101)
    ap_per_iou = tuple(float(v) for v in precision.mean(axis=(0, 2)))
    return PerImageBoxAP(float(precision.mean()), ap_per_iou, num_real, len(scores), True)


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


__all__ = ["IOU_THRESHOLDS", "PerImageBoxAP", "box_iou_coco", "per_image_box_ap"]
