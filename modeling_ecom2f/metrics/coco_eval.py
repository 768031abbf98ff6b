"""The one driver of pycocotools' ``COCOeval`` in the package: mask AP (``mask_ap``) and the recipe's data-set box
and mask AP all run it through here.

Inputs are COCO-format dicts: a ground-truth dataset (``images``, ``annotations``, ``categories``) and a detection
list whose entries are already indexed the way ``COCO.loadRes`` would do it (``id``, ``area``, ``bbox``,
``iscrowd``; :func:`index_mask_detections` does it for RLE masks). Building the detection ``COCO`` object directly
instead of through ``loadRes`` lets an empty detection list work and never mutates the caller's dicts.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Collection, Mapping, Sequence

__all__ = ["COCO_SUMMARY_NAMES", "coco_summary", "index_mask_detections", "run_coco_eval", "summary_figures"]

#: Names of ``COCOeval.stats`` in order.
COCO_SUMMARY_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def index_mask_detections(detections: Sequence[Mapping]) -> list[dict]:
    """Copies of RLE-mask detections with ``id`` (from 1), ``iscrowd`` 0, and ``area`` and ``bbox`` from the RLE."""
    from pycocotools import mask as mask_utils

    return [
        {
            **det,
            "id": k,
            "iscrowd": 0,
            "area": float(mask_utils.area(det["segmentation"])),
            "bbox": [float(v) for v in mask_utils.toBbox(det["segmentation"])],
        }
        for k, det in enumerate(detections, start=1)
    ]


def run_coco_eval(ground_truth: Mapping, detections: Sequence[Mapping], *, iou_type: str):
    """``COCOeval`` (``iou_type`` ``"segm"`` or ``"bbox"``) evaluated, accumulated and summarised, its printing
    silenced; ``detections`` must be indexed (see the module docstring)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": list(ground_truth["images"]),
            "annotations": list(ground_truth["annotations"]),
            "categories": list(ground_truth["categories"]),
        }
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(ground_truth["images"]),
            "categories": list(ground_truth["categories"]),
            "annotations": list(detections),
        }
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def summary_figures(evaluator) -> dict[str, float]:
    """The twelve ``COCOeval.stats`` by name (:data:`COCO_SUMMARY_NAMES`), NaN where COCOeval reports -1."""
    return {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_SUMMARY_NAMES, evaluator.stats)}


def coco_summary(
    images: list[dict],
    annotations: list[dict],
    detections: list[dict],
    thing_ids: Collection[int],
    *,
    iou_type: str,
) -> dict[str, float]:
    """The twelve summary figures of ``COCOeval`` over COCO-format lists whose category ids are label id + 1 (one
    category per thing class); ``detections`` indexed (see the module docstring)."""
    categories = [{"id": int(t) + 1, "name": str(t)} for t in sorted(thing_ids)]
    ground_truth = {"images": images, "annotations": annotations, "categories": categories}
    return summary_figures(run_coco_eval(ground_truth, detections, iou_type=iou_type))
