"""Per-image evaluation of an EcoMask2Former model (the segmentation task's evaluator, records, accumulator and
data-set summary) and the helpers detection shares (`GFlopsTable`, `spread`, `exit_outputs`).
Every figure comes from `modeling_ecom2f.metrics` (PQ, mIoU, COCOeval); this module only gathers their inputs. The
modes themselves (every fixed depth, gates, random routing, oracle) are evaluated by `mode_evaluation.evaluate_modes`.

Per batch the model runs once per fixed depth and once per gate; the oracle picks, per image, the fixed-depth
result at its ideal depth (the per-image-depth forward equals the fixed-depth forward image by image, which the
model tests prove). Each image yields a small record (PQ counts per category, its semantic confusion matrix, its
COCO ground truth and detections as RLEs, its depth and GFLOPs); the images are split into contiguous blocks over
the processes and the records are gathered, so the data-set figures are exact whatever the number of processes.

GFLOPs follow the papers' convention (`modeling_ecom2f.ecom2f_flops.count_gflops`, fvcore: one multiply-add = one
FLOP, deformable sampling not counted), per image at its own processed size and depth; "encoder" is the deformable
encoder's layers only, "total" the whole forward (gate included when it runs).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from ..ecom2f_flops import count_gflops
from ..ecom2f_size_groups import image_extents
from ..metrics import (
    coco_gt_and_detections,
    coco_summary,
    index_mask_detections,
    intersection_and_union,
    mean_iou,
    miou_from_counts,
    panoptic_from_counts,
    panoptic_per_class_from_counts,
    per_image_panoptic_quality,
)
from .faults import check_finite_outputs
from .runtime import RecipeError

logger = logging.getLogger("modeling_ecom2f.recipe")


@dataclass
class ImageRecord:
    """One image evaluated in one mode."""

    index: int
    image_id: str
    depth: int
    quality: float  # the per-image quality the oracle and the gate labels use: PQ here
    counts: np.ndarray  # (4, C): tp, fp, fn, iou_sum per category
    gflops: float
    encoder_gflops: float
    confusion: np.ndarray | None = None  # (K, K) semantic confusion
    coco: tuple | None = None  # (images, annotations, detections) with COCO image id 1
    processed_size: tuple[int, int] | None = None  # unpadded (height, width) the model saw


class GFlopsTable:
    """Per-image GFLOPs by (height, width, depth, gate), counted once per key with a batch-1 forward of `counter`
    (`count_gflops`, or `count_detection_gflops` for detectors: anything returning `.total` and `.encoder`)."""

    def __init__(self, model, counter=count_gflops) -> None:
        self.model = model
        self.counter = counter
        self.cache: dict[tuple, tuple[float, float]] = {}

    def __call__(self, height: int, width: int, depth: int, gate: bool) -> tuple[float, float]:
        key = (height, width, depth, gate)
        if key not in self.cache:
            device = next(self.model.parameters()).device
            counted = self.counter(self.model, torch.zeros(1, 3, height, width, device=device),
                                   num_encoder_layers=depth, output_gate_logits=gate)
            self.cache[key] = (counted.total, counted.encoder)
        return self.cache[key]


def _cpu_or_none(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.cpu()


class BatchEvaluator:
    """Turns model outputs for a collated batch into `ImageRecord`s (post-processing + per-image metrics)."""

    def __init__(self, *, model, processor, label_info, args, with_ap: bool, with_miou: bool,
                 with_gflops: bool = True) -> None:
        self.processor = processor
        self.label_info = label_info
        self.thing_ids = list(label_info.thing_ids)
        self.stuff_ids = list(label_info.stuff_ids)
        self.num_classes = max(label_info.id2label) + 1
        self.with_ap = with_ap and bool(self.thing_ids)
        self.with_miou = with_miou
        self.args = args
        self.gflops = GFlopsTable(model)
        self.with_gflops = with_gflops
        signature = inspect.signature(processor.post_process_panoptic_segmentation).parameters
        self.mask_aware = "pixel_mask" in signature

    def _kwargs(self, batch) -> dict:
        out = {"target_sizes": batch["target_sizes"]}
        if self.mask_aware:
            out["pixel_mask"] = batch["pixel_mask"].cpu()
        return out

    def records(self, outputs, batch, *, gate: bool) -> list[ImageRecord]:
        light = SimpleNamespace(  # float32 on the CPU for the post-processors, whatever the run's precision/device
            class_queries_logits=outputs.class_queries_logits.float().cpu(),
            masks_queries_logits=outputs.masks_queries_logits.float().cpu(),
            encoder_layers_used=outputs.encoder_layers_used.cpu(),
            # Each image's own area in a mixed-size batch (ecom2f outputs; the processor crops there first).
            mask_sizes=_cpu_or_none(getattr(outputs, "mask_sizes", None)),
            image_sizes=_cpu_or_none(getattr(outputs, "image_sizes", None)),
        )
        kwargs, refs, ids = self._kwargs(batch), batch["references"], batch["image_ids"]
        check_finite_outputs(light, ids, where="scoring a batch (step 2 / evaluation)")
        panoptic = self.processor.post_process_panoptic_segmentation(
            light, threshold=self.args.panoptic_threshold,
            overlap_mask_area_threshold=self.args.overlap_mask_area_threshold, label_ids_to_fuse=set(), **kwargs)
        scores = per_image_panoptic_quality(panoptic, refs, thing_ids=self.thing_ids, stuff_ids=self.stuff_ids,
                                            image_ids=ids)
        semantic = instance = None
        if self.with_miou:
            semantic = self.processor.post_process_semantic_segmentation(light, **kwargs)
        if self.with_ap:
            instance = self.processor.post_process_instance_segmentation(
                light, threshold=self.args.instance_threshold,
                overlap_mask_area_threshold=self.args.overlap_mask_area_threshold, **kwargs)
        depths = light.encoder_layers_used.tolist()
        records = []
        for i, (index, size) in enumerate(zip(batch["indices"].tolist(), image_extents(batch["pixel_mask"]))):
            total, encoder = self.gflops(size[0], size[1], int(depths[i]), gate) if self.with_gflops else (0.0, 0.0)
            counts = np.stack([scores.true_positives[i], scores.false_positives[i], scores.false_negatives[i],
                               scores.iou_sum[i]]).astype(np.float64)
            record = ImageRecord(index=int(index), image_id=str(ids[i]), depth=int(depths[i]),
                                 quality=float(scores.pq[i]), counts=counts, gflops=total, encoder_gflops=encoder,
                                 processed_size=size)
            if semantic is not None:
                record.confusion = mean_iou([semantic[i]], [refs[i]], num_labels=self.num_classes,
                                            image_ids=[ids[i]]).confusion_matrix
            if instance is not None:
                gt, detections = coco_gt_and_detections([instance[i]], [refs[i]], thing_ids=self.thing_ids,
                                                        stuff_ids=self.stuff_ids, image_ids=[ids[i]])
                record.coco = (gt["images"], gt["annotations"], detections)
            records.append(record)
        return records


class ModeAccumulator:
    """Sums of one mode's per-image records (small enough to gather across processes)."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None
        self.confusion: np.ndarray | None = None
        self.coco: dict[int, tuple] = {}
        self.rows: list[dict] = []

    def add(self, record: ImageRecord) -> None:
        self.counts = record.counts.copy() if self.counts is None else self.counts + record.counts
        if record.confusion is not None:
            self.confusion = record.confusion.copy() if self.confusion is None else self.confusion + record.confusion
        if record.coco is not None:
            self.coco[record.index] = record.coco
        self.rows.append({"index": record.index, "image_id": record.image_id, "depth": record.depth,
                          "pq": record.quality, "gflops": record.gflops, "encoder_gflops": record.encoder_gflops})

    def merge(self, other: "ModeAccumulator") -> None:
        if other.counts is not None:
            self.counts = other.counts.copy() if self.counts is None else self.counts + other.counts
        if other.confusion is not None:
            self.confusion = other.confusion.copy() if self.confusion is None else self.confusion + other.confusion
        self.coco.update(other.coco)
        self.rows.extend(other.rows)


def coco_mask_ap(coco_parts: list[tuple], thing_ids: Sequence[int]) -> dict:
    """COCO mask AP over per-image `(images, annotations, detections)` parts (each with image id 1)."""
    images, annotations, detections = [], [], []
    for image_id, (imgs, anns, dets) in enumerate(coco_parts, start=1):
        images.extend({**img, "id": image_id} for img in imgs)
        for ann in anns:
            annotations.append({**ann, "image_id": image_id, "id": len(annotations) + 1})
        detections.extend({**det, "image_id": image_id} for det in dets)
    return coco_summary(images, annotations, index_mask_detections(detections), thing_ids, iou_type="segm")


def spread(values: np.ndarray, prefix: str) -> dict:
    """`{prefix}_mean`, `_std`, `_min` and `_max` of `values` (per-image GFLOPs in the mode summaries)."""
    return {f"{prefix}_mean": float(values.mean()), f"{prefix}_std": float(values.std()),
            f"{prefix}_min": float(values.min()), f"{prefix}_max": float(values.max())}


def summarize_mode(acc: ModeAccumulator, *, category_ids, thing_ids, exit_layers) -> dict:
    """The figures of one mode from its merged accumulator."""
    rows = sorted(acc.rows, key=lambda r: r["index"])
    if not rows:
        raise RecipeError("no image was evaluated")
    depths = np.array([r["depth"] for r in rows])
    result = panoptic_from_counts(acc.counts, category_ids, thing_ids)
    # per category id: PQ, SQ, RQ and the summed counts (what a per-class comparison of two models needs)
    result["per_class"] = {str(c): v for c, v in panoptic_per_class_from_counts(acc.counts, category_ids).items()}
    if acc.confusion is not None:
        result["miou"] = miou_from_counts(*intersection_and_union(acc.confusion))
    if acc.coco:
        result["mask_ap"] = coco_mask_ap([acc.coco[r["index"]] for r in rows], thing_ids)
    result["gflops"] = {**spread(np.array([r["gflops"] for r in rows]), "total"),
                        **spread(np.array([r["encoder_gflops"] for r in rows]), "encoder")}
    result["depth_histogram"] = {str(k): int((depths == k).sum()) for k in exit_layers}
    result["mean_depth"] = float(depths.mean())
    result["num_images"] = len(rows)
    return result


def forward_at_depth(model, batch, accelerator, depth, *, gate_beta: float | None = None):
    """Inference forward of a collated batch at `depth` (an int, or None: the gate decides, with `gate_beta` for a
    utility gate)."""
    extra = {} if gate_beta is None else {"gate_beta": gate_beta}
    with torch.no_grad(), accelerator.autocast():
        return model(pixel_values=batch["pixel_values"].to(accelerator.device),
                     pixel_mask=batch["pixel_mask"].to(accelerator.device), num_encoder_layers=depth, **extra)


def exit_outputs(model, batch, accelerator, depths: Sequence[int]):
    """`(depth, outputs)` of a collated batch at each of `depths`: from one pass (`model.forward_exits`, which shares
    the backbone and encoder layers between exits) when the model has it, else one forward per depth."""
    if hasattr(model, "forward_exits"):
        with torch.no_grad(), accelerator.autocast():
            yield from model.forward_exits(batch["pixel_values"].to(accelerator.device),
                                           pixel_mask=batch["pixel_mask"].to(accelerator.device), exits=list(depths))
        return
    for depth in depths:
        yield depth, forward_at_depth(model, batch, accelerator, depth)


__all__ = [
    "BatchEvaluator",
    "GFlopsTable",
    "ImageRecord",
    "ModeAccumulator",
    "coco_mask_ap",
    "forward_at_depth",
    "panoptic_from_counts",
    "spread",
    "exit_outputs",
    "summarize_mode",
]
