"""Mean intersection-over-union for semantic segmentation, from one ``bincount`` confusion matrix per image.

``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` (Everingham et al., PASCAL VOC); pixels whose ground truth is
``ignore_index`` are left out of both prediction and ground truth.

Two reductions:

* ``"dataset"`` (default; the figure Mask2Former/detectron2 ``SemSegEvaluator``, mmseg and the Hub's ``mean_iou``
  report): confusion matrices are summed over all images, then ``mIoU`` = mean of ``IoU_c`` over the classes with
  a non-empty union.
* ``"image"`` (what ``torchmetrics.segmentation.MeanIoU`` computes): ``IoU_c`` per image, averaged over every
  (image, class) pair with a non-empty union; per class, averaged over the images where the class occurs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..data.errors import SegmentationDataError
from .inputs import resolve_image_ids, to_numpy_map, to_segment_table

__all__ = ["MeanIoUResult", "intersection_and_union", "mean_iou", "miou_from_counts", "semantic_map"]


@dataclass(frozen=True)
class MeanIoUResult:
    """mIoU results (fractions).

    Attributes:
        mean_iou: Mean IoU (NaN if no class has a non-empty union).
        per_class_iou: ``(C,)`` IoU per class, NaN where the class never occurs in prediction or ground truth.
        pixel_accuracy: Correct / labelled pixels over the data set.
        confusion_matrix: ``(C, C)`` int64, rows = ground truth, columns = prediction (summed over images).
        num_images: Images evaluated.
    """

    mean_iou: float
    per_class_iou: np.ndarray
    pixel_accuracy: float
    confusion_matrix: np.ndarray
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN stays NaN)."""
        return {
            "mean_iou": self.mean_iou,
            "per_class_iou": [float(v) for v in self.per_class_iou],
            "pixel_accuracy": self.pixel_accuracy,
            "num_images": self.num_images,
        }


def semantic_map(entry: Any, *, image_id: object, ignore_index: int) -> np.ndarray:
    """``(H, W)`` int64 class map from a semantic map, or from a panoptic entry (void -> ``ignore_index``)."""
    if isinstance(entry, Mapping):
        table = to_segment_table(entry, image_id=image_id, what="reference", void_values=(0, -1), known_categories=None)
        lut = np.concatenate([[ignore_index], table.category_ids]).astype(np.int64)
        return lut[table.index_map]
    if entry is None:
        raise SegmentationDataError(image_id=image_id, problem="semantic map is None")
    return to_numpy_map(entry, image_id=image_id, what="semantic map")


def mean_iou(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    num_labels: int,
    ignore_index: int = 255,
    reduction: Literal["dataset", "image"] = "dataset",
    image_ids: Sequence[object] | None = None,
) -> MeanIoUResult:
    """mIoU of semantic predictions.

    Args:
        predictions: ``B`` maps ``(H, W)`` of class ids in ``[0, num_labels)`` (``post_process_semantic_segmentation``
            output).
        references: ``B`` ground truths: ``(H, W)`` class maps with ``ignore_index`` on void, or panoptic entries
            (``{"segmentation", "segments_info"}``; every segment, crowd included, counts as its category).
        num_labels: Number of classes ``C``.
        ignore_index: Ground-truth value meaning "not labelled".
        reduction: ``"dataset"`` or ``"image"`` (see the module docstring).
        image_ids: Names for error messages.
    """
    if reduction not in ("dataset", "image"):
        raise ValueError(f"reduction: must be 'dataset' or 'image', got {reduction!r}")
    if num_labels < 1:
        raise ValueError(f"num_labels: must be >= 1, got {num_labels}")
    ids = resolve_image_ids(predictions, references, image_ids)
    c = int(num_labels)
    total = np.zeros((c, c), np.int64)
    image_iou_sum = np.zeros(c, np.float64)
    image_iou_count = np.zeros(c, np.int64)
    for pred_entry, ref_entry, image_id in zip(predictions, references, ids):
        pred = to_numpy_map(pred_entry, image_id=image_id, what="prediction")
        ref = semantic_map(ref_entry, image_id=image_id, ignore_index=ignore_index)
        if pred.shape != ref.shape:
            raise SegmentationDataError(
                image_id=image_id, problem=f"prediction size {pred.shape} differs from reference size {ref.shape}"
            )
        valid = ref != ignore_index
        gt, pr = ref[valid], pred[valid]
        if gt.size and (gt.min() < 0 or gt.max() >= c):
            raise SegmentationDataError(
                image_id=image_id, problem=f"reference class ids outside [0, {c}) (and not ignore_index)"
            )
        if pr.size and (pr.min() < 0 or pr.max() >= c):
            raise SegmentationDataError(image_id=image_id, problem=f"prediction class ids outside [0, {c})")
        confusion = np.bincount(gt * c + pr, minlength=c * c).reshape(c, c)
        total += confusion
        if reduction == "image":
            iou, present = _iou(confusion)
            image_iou_sum += np.where(present, iou, 0.0)
            image_iou_count += present
    if reduction == "dataset":
        intersection, union = intersection_and_union(total)
        per_class = per_class_iou(intersection, union)
        miou = miou_from_counts(intersection, union)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(image_iou_count > 0, image_iou_sum / np.maximum(image_iou_count, 1), np.nan)
        miou = float(image_iou_sum.sum() / image_iou_count.sum()) if image_iou_count.sum() else float("nan")
    labelled = total.sum()
    accuracy = float(np.trace(total) / labelled) if labelled else float("nan")
    return MeanIoUResult(
        mean_iou=miou, per_class_iou=per_class, pixel_accuracy=accuracy, confusion_matrix=total, num_images=len(ids)
    )


def intersection_and_union(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection (true positives) and union (``TP + FP + FN``) counts, float64, of a ``(C, C)``
    confusion matrix (rows ground truth, columns prediction)."""
    tp = np.diag(confusion).astype(np.float64)
    return tp, confusion.sum(0) + confusion.sum(1) - tp


def per_class_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """``intersection / union`` per class, NaN where the union is empty."""
    intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    return np.divide(intersection, union, out=np.full(union.shape, np.nan), where=union > 0)


def miou_from_counts(intersection: np.ndarray, union: np.ndarray) -> float:
    """Data-set mIoU from per-class intersection and union counts summed over the images (e.g.
    :func:`intersection_and_union` of a summed confusion matrix): the mean IoU over the classes with a non-empty
    union, NaN if there is none. The ``"dataset"`` reduction of :func:`mean_iou`."""
    iou = per_class_iou(intersection, union)
    present = np.asarray(union) > 0
    return float(iou[present].mean()) if present.any() else float("nan")


def _iou(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU (0 where absent) and "union non-empty" mask from a ``(C, C)`` confusion matrix."""
    intersection, union = intersection_and_union(confusion)
    present = union > 0
    return np.where(present, per_class_iou(intersection, union), 0.0), present
