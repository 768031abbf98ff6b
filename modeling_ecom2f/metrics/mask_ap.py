"""Mask average precision (COCO protocol) through pycocotools' own ``COCOeval(..., iouType="segm")``.

Only the conversion is ours: masks become pycocotools RLEs (``pycocotools.mask.encode``), ground truth keeps its
``iscrowd`` flag (COCOeval ignores detections matched to crowd regions), and the twelve COCO summary numbers plus
per-category AP (as detectron2's ``COCOEvaluator`` derives it from ``eval["precision"]``) are returned as fractions.
COCOeval itself runs through ``coco_eval.run_coco_eval``, the package's one driver of it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from ..data.errors import SegmentationDataError
from .coco_eval import COCO_SUMMARY_NAMES, index_mask_detections, run_coco_eval, summary_figures
from .inputs import resolve_image_ids, to_segment_table

__all__ = ["COCO_SUMMARY_NAMES", "mask_average_precision", "coco_gt_and_detections"]


def _encode(masks: np.ndarray) -> list[dict]:
    """pycocotools RLEs of ``(N, H, W)`` bool masks."""
    from pycocotools import mask as mask_utils

    if masks.shape[0] == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.moveaxis(masks, 0, -1).astype(np.uint8)))


def _prediction_masks(entry: Any, *, image_id: str, known: np.ndarray):
    """``(masks (N, H, W) bool, categories (N,), scores (N,))`` from a ``post_process_instance_segmentation`` output."""
    if not isinstance(entry, Mapping) or "segmentation" not in entry:
        raise SegmentationDataError(image_id=image_id, problem="prediction is missing or has no 'segmentation'")
    seg = entry["segmentation"]
    info = list(entry.get("segments_info") or [])
    if seg is None:
        if info:
            raise SegmentationDataError(
                image_id=image_id, problem="prediction segmentation is None but segments are listed"
            )
        raise SegmentationDataError(image_id=image_id, problem="prediction segmentation is None (pass target_sizes)")
    try:
        raw = seg.detach().cpu().numpy() if hasattr(seg, "detach") else np.asarray(seg)
    except ValueError:  # ragged lists: transformers' return_coco_annotation run lengths
        raw = None
    if raw is None or raw.dtype == object or raw.ndim not in (2, 3):
        raise SegmentationDataError(
            image_id=image_id,
            problem="segmentation must be an (H, W) map or (N, H, W) binary maps "
            "(transformers' return_coco_annotation run lengths are not COCO RLEs)",
        )
    if raw.ndim == 3:  # return_binary_maps=True: the k-th map belongs to the k-th listed segment
        if raw.shape[0] != len(info):
            raise SegmentationDataError(
                image_id=image_id, problem=f"{raw.shape[0]} binary maps for {len(info)} segments"
            )
        masks = raw > 0.5
        cats = np.array([int(s.get("label_id", s.get("category_id", -1))) for s in info], dtype=np.int64)
        scores = np.array([float(s.get("score", 1.0)) for s in info], dtype=np.float64)
        unknown = np.setdiff1d(cats, known)
        if unknown.size:
            raise SegmentationDataError(
                image_id=image_id,
                problem=f"prediction category ids {unknown.tolist()} are missing from the label metadata",
            )
    else:
        table = to_segment_table(entry, image_id=image_id, what="prediction", void_values=(-1,), known_categories=known)
        masks = table.index_map[None, :, :] == np.arange(1, table.num_segments + 1)[:, None, None]
        cats, scores = table.category_ids, table.scores
    return masks, cats, scores


def coco_gt_and_detections(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    thing_ids: Collection[int],
    stuff_ids: Collection[int] = (),
    image_ids: Sequence[object] | None = None,
) -> tuple[dict, list[dict]]:
    """The COCO-format ground-truth dataset dict and detection list that :func:`mask_average_precision` evaluates.

    COCO image ids are ``1..B`` and category ids are ``category + 1`` (pycocotools treats id 0 as "unmatched").
    Predictions of stuff categories are dropped (mask AP is a thing metric); unknown categories raise.
    """
    names = resolve_image_ids(predictions, references, image_ids)
    things = np.array(sorted({int(t) for t in thing_ids}), dtype=np.int64)
    known = np.array(sorted({int(t) for t in thing_ids} | {int(s) for s in stuff_ids}), dtype=np.int64)
    images, annotations, detections = [], [], []
    for index, (pred, ref, name) in enumerate(zip(predictions, references, names), start=1):
        table = to_segment_table(ref, image_id=name, what="reference", void_values=(0, -1), known_categories=known)
        height, width = table.index_map.shape
        images.append({"id": index, "height": int(height), "width": int(width), "file_name": name})
        keep = np.isin(table.category_ids, things)
        slots = np.nonzero(keep)[0]
        gt_masks = table.index_map[None, :, :] == (slots + 1)[:, None, None]
        for rle, slot, mask in zip(_encode(gt_masks), slots, gt_masks):
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(table.category_ids[slot]) + 1,
                    "segmentation": rle,
                    "area": float(ys.size),
                    "iscrowd": int(table.is_crowd[slot]),
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() - xs.min() + 1),
                        float(ys.max() - ys.min() + 1),
                    ],
                }
            )
        masks, cats, scores = _prediction_masks(pred, image_id=name, known=known)
        if masks.shape[1:] != (height, width):
            raise SegmentationDataError(
                image_id=name,
                problem=f"prediction size {tuple(masks.shape[1:])} differs from reference size {(height, width)}",
            )
        keep = np.isin(cats, things) & masks.reshape(masks.shape[0], height * width).any(axis=1)
        for rle, cat, score in zip(_encode(masks[keep]), cats[keep], scores[keep]):
            detections.append(
                {"image_id": index, "category_id": int(cat) + 1, "segmentation": rle, "score": float(score)}
            )
    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(t) + 1, "name": str(t)} for t in things],
    }
    return gt, detections


def mask_average_precision(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    thing_ids: Collection[int],
    stuff_ids: Collection[int] = (),
    image_ids: Sequence[object] | None = None,
) -> dict[str, Any]:
    """COCO mask AP of instance predictions.

    Args:
        predictions: ``B`` outputs of ``post_process_instance_segmentation`` (``segmentation`` ``(H, W)`` with -1 =
            none, or ``(N, H, W)`` binary maps with ``return_binary_maps=True``; ``segments_info`` with ``id``,
            ``label_id``, ``score``).
        references: ``B`` panoptic ground truths (``{"segmentation", "segments_info"}``, 0/-1 = void); thing
            segments are the instances, ``iscrowd`` ones are COCO crowd regions.
        thing_ids: Thing categories (the evaluated ones). stuff_ids: other known categories.
        image_ids: Names for error messages.

    Returns:
        ``{"AP", "AP50", ..., "ARl"}`` (fractions; NaN where COCOeval reports -1, e.g. no small objects) and
        ``"per_class_AP"``: ``{category_id: AP or NaN}``.
    """
    gt_dict, detections = coco_gt_and_detections(
        predictions, references, thing_ids=thing_ids, stuff_ids=stuff_ids, image_ids=image_ids
    )
    things = sorted({int(t) for t in thing_ids})
    evaluator = run_coco_eval(gt_dict, index_mask_detections(detections), iou_type="segm")
    out: dict[str, Any] = summary_figures(evaluator)
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, area ranges, max dets]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[int(cat_id) - 1] = float(values.mean()) if values.size else float("nan")
    out["per_class_AP"] = {c: per_class.get(c, float("nan")) for c in things}
    return out
