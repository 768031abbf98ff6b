"""Evaluation of an EcoMask2Former model in several depth modes at once: every fixed depth, one or more gates and
the oracle (per image the ideal depth `argmax_k(PQ_k - beta k)` of its own per-image PQ).

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

import contextlib
import dataclasses
import inspect
import io
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch

from ..ecom2f_flops import count_gflops
from ..metrics import coco_gt_and_detections, mean_iou, per_image_panoptic_quality
from .data import inference_dataloader, shard_indices
from .faults import check_finite_outputs
from .labels import ideal_depths
from .routing import classification_depths, random_routing, utility_depths
from .runtime import RecipeError, progress_bar

logger = logging.getLogger("modeling_ecom2f.recipe")


@dataclass
class ImageRecord:
    """One image evaluated in one mode."""

    index: int
    image_id: str
    depth: int
    pq: float
    counts: np.ndarray  # (4, C): tp, fp, fn, iou_sum per category
    gflops: float
    encoder_gflops: float
    confusion: np.ndarray | None = None  # (K, K) semantic confusion
    coco: tuple | None = None  # (images, annotations, detections) with COCO image id 1
    processed_size: tuple[int, int] | None = None  # unpadded (height, width) the model saw

    @property
    def quality(self) -> float:
        """The per-image quality the oracle and the gate labels use (PQ for segmentation)."""
        return self.pq


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


def _processed_sizes(pixel_mask: torch.Tensor) -> list[tuple[int, int]]:
    """Unpadded `(height, width)` of each image (the processor pads at the bottom/right)."""
    rows = pixel_mask.bool().any(dim=2).sum(dim=1).tolist()
    cols = pixel_mask.bool().any(dim=1).sum(dim=1).tolist()
    return [(int(h), int(w)) for h, w in zip(rows, cols)]


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
        for i, (index, size) in enumerate(zip(batch["indices"].tolist(), _processed_sizes(batch["pixel_mask"]))):
            total, encoder = self.gflops(size[0], size[1], int(depths[i]), gate) if self.with_gflops else (0.0, 0.0)
            counts = np.stack([scores.true_positives[i], scores.false_positives[i], scores.false_negatives[i],
                               scores.iou_sum[i]]).astype(np.float64)
            record = ImageRecord(index=int(index), image_id=str(ids[i]), depth=int(depths[i]), pq=float(scores.pq[i]),
                                 counts=counts, gflops=total, encoder_gflops=encoder, processed_size=size)
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
        self.rows.append({"index": record.index, "image_id": record.image_id, "depth": record.depth, "pq": record.pq,
                          "gflops": record.gflops, "encoder_gflops": record.encoder_gflops})

    def merge(self, other: "ModeAccumulator") -> None:
        if other.counts is not None:
            self.counts = other.counts.copy() if self.counts is None else self.counts + other.counts
        if other.confusion is not None:
            self.confusion = other.confusion.copy() if self.confusion is None else self.confusion + other.confusion
        self.coco.update(other.coco)
        self.rows.extend(other.rows)


def panoptic_from_counts(counts: np.ndarray, category_ids: Sequence[int], thing_ids: Sequence[int]) -> dict:
    """Data-set PQ/SQ/RQ (all, things, stuff) from summed per-category counts `(4, C)` (tp, fp, fn, iou_sum)."""
    tp, fp, fn, iou = counts
    denom = tp + 0.5 * fp + 0.5 * fn
    present = denom > 0
    sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
    rq = np.where(present, tp / np.where(present, denom, 1.0), 0.0)
    pq = sq * rq
    is_thing = np.isin(np.asarray(category_ids), np.asarray(list(thing_ids), dtype=np.int64))
    out = {}
    for suffix, mask in (("", present), ("_things", present & is_thing), ("_stuff", present & ~is_thing)):
        for name, values in (("pq", pq), ("sq", sq), ("rq", rq)):
            out[name + suffix] = float(values[mask].mean()) if mask.any() else float("nan")
    return out


def coco_summary(images: list[dict], annotations: list[dict], detections: list[dict], thing_ids: Sequence[int], *,
                 iou_type: str) -> dict:
    """pycocotools' own COCOeval (`iou_type` "segm" or "bbox") over COCO-format lists whose category ids are
    label id + 1 (one category per thing class); returns the 12 summary figures by name (NaN where undefined)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ..metrics import COCO_SUMMARY_NAMES

    categories = [{"id": int(t) + 1, "name": str(t)} for t in sorted(thing_ids)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": images, "categories": categories, "annotations": detections}
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_SUMMARY_NAMES, evaluator.stats)}


def coco_mask_ap(coco_parts: list[tuple], thing_ids: Sequence[int]) -> dict:
    """COCO mask AP over per-image `(images, annotations, detections)` parts (each with image id 1)."""
    from pycocotools import mask as mask_utils

    images, annotations, detections = [], [], []
    for image_id, (imgs, anns, dets) in enumerate(coco_parts, start=1):
        images.extend({**img, "id": image_id} for img in imgs)
        for ann in anns:
            annotations.append({**ann, "image_id": image_id, "id": len(annotations) + 1})
        detections.extend({**det, "image_id": image_id} for det in dets)
    detections = [{**det, "id": k, "iscrowd": 0, "area": float(mask_utils.area(det["segmentation"])),
                   "bbox": [float(v) for v in mask_utils.toBbox(det["segmentation"])]}
                  for k, det in enumerate(detections, start=1)]
    return coco_summary(images, annotations, detections, thing_ids, iou_type="segm")


def _spread(values: np.ndarray, prefix: str) -> dict:
    return {f"{prefix}_mean": float(values.mean()), f"{prefix}_std": float(values.std()),
            f"{prefix}_min": float(values.min()), f"{prefix}_max": float(values.max())}


def summarize_mode(acc: ModeAccumulator, *, category_ids, thing_ids, exit_layers) -> dict:
    """The figures of one mode from its merged accumulator."""
    rows = sorted(acc.rows, key=lambda r: r["index"])
    if not rows:
        raise RecipeError("no image was evaluated")
    depths = np.array([r["depth"] for r in rows])
    result = panoptic_from_counts(acc.counts, category_ids, thing_ids)
    if acc.confusion is not None:
        confusion = acc.confusion
        tp = np.diag(confusion).astype(np.float64)
        union = confusion.sum(0) + confusion.sum(1) - tp
        result["miou"] = float((tp[union > 0] / union[union > 0]).mean()) if (union > 0).any() else float("nan")
    if acc.coco:
        result["mask_ap"] = coco_mask_ap([acc.coco[r["index"]] for r in rows], thing_ids)
    result["gflops"] = {**_spread(np.array([r["gflops"] for r in rows]), "total"),
                        **_spread(np.array([r["encoder_gflops"] for r in rows]), "encoder")}
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


@dataclass
class GateSpec:
    """A gate to evaluate: the model that holds it (the parent itself, or a step-3 output sharing the parent's other
    weights), its objective, and the betas it is evaluated at (`[None]` for a classification gate)."""

    model: Any
    objective: str
    betas: list
    label_beta: float | None = None  # the beta of a classification gate's training labels, when known

    @classmethod
    def of(cls, model, betas: Sequence[float] | None = None, label_beta: float | None = None) -> "GateSpec":
        objective = getattr(model.config, "gate_objective", "classification")
        if objective == "utility":
            return cls(model=model, objective=objective, betas=list(betas) if betas else [model.config.gate_beta])
        return cls(model=model, objective=objective, betas=[None], label_beta=label_beta)

    def mode_name(self, name: str, beta: float | None) -> str:
        return name if beta is None else f"{name}_beta{beta:g}"

    def depths(self, outputs: np.ndarray, exit_layers: Sequence[int], beta: float | None) -> np.ndarray:
        if beta is None:
            return classification_depths(outputs, exit_layers)
        return utility_depths(outputs, exit_layers, beta)


def _gate_outputs(spec: GateSpec, batch, accelerator) -> np.ndarray:
    with torch.no_grad(), accelerator.autocast():
        logits = spec.model.model.compute_gate_logits(batch["pixel_values"].to(accelerator.device),
                                                      batch["pixel_mask"].to(accelerator.device))
    return logits.float().cpu().numpy()


def _check_selection(spec: GateSpec, batch, accelerator, evaluator, per_depth: dict, outputs: np.ndarray,
                     exit_layers: Sequence[int]) -> None:
    """The real gated forward of `spec.model` on this batch must pick the selected depths with the same quality."""
    saved = spec.model.config.gate_trained
    spec.model.config.gate_trained = True
    try:
        for beta in spec.betas:
            chosen = spec.depths(outputs, exit_layers, beta).tolist()
            real = evaluator.records(forward_at_depth(spec.model, batch, accelerator, None, gate_beta=beta), batch,
                                     gate=True)
            selected = [per_depth[depth][i] for i, depth in enumerate(chosen)]
            if [r.depth for r in real] != chosen or any(abs(a.quality - b.quality) > 1e-6
                                                        for a, b in zip(real, selected)):
                raise RecipeError("the gated forward disagrees with the per-depth selection of its decisions")
    finally:
        spec.model.config.gate_trained = saved


def evaluate_modes(*, accelerator, model, processor, dataset, label_info, args, depths: Sequence[int] | None = None,
                   gates: dict | None = None, oracle_betas: Sequence[float] = (), random_routing_controls: bool = True,
                   with_ap: bool = True, with_miou: bool = True, description: str = "evaluation",
                   check_gates: bool = True, routing_seed: int = 0, task=None) -> dict:
    """Evaluate `model` on `dataset` at fixed `depths`, with each gate in `gates` (at each of its betas), with the
    random-routing control of every gate mode, and as the oracle per beta.

    Every image runs once through every exit (`exit_outputs`: one pass when the model supports it) and yields one
    record per exit; every mode is then a per-image *choice* among those records (a fixed depth, the gate's
    decision, the gate's decisions shuffled across images, the per-image ideal depth). This is exact because a
    per-image-depth forward equals the fixed-depth forward image by image (tests/test_modeling_depth.py); with
    `check_gates` each gate's real gated forward is compared with its selection on the first batch.

    Args:
        model: an (unwrapped) ecom2f model on `accelerator.device`; it is put in `eval()` mode.
        task: the `tasks.RecipeTask` (segmentation when None): its evaluator, accumulator and summary are used;
            the oracle picks per image by the task's per-image quality (PQ, box AP).
        gates: mode name -> a `GateSpec`, a gate model sharing the parent's non-gate weights, or None for
            `model`'s own gate. Classification gates give one mode (`name`), utility gates one per beta
            (`name_beta<b>`).
        oracle_betas: betas of the oracle modes.
        random_routing_controls: add `random_<gate mode>` for every gate mode (same depth histogram, shuffled).
        with_ap, with_miou: also compute mask AP / mIoU.

    Returns (on every process): `{"modes": {name: figures}, "per_image": {name: rows}, "num_images": N}`; each mode's
    figures carry `kind` (fixed, gate, random_routing, oracle), `beta`, `gate_objective` and, for a control,
    `controls` (the gate mode it controls).
    """
    from accelerate.utils import broadcast_object_list, gather_object

    from .tasks import get_task

    task = get_task(task)
    model.eval()
    exits = list(model.config.exit_layers)
    depths = list(exits if depths is None else depths)
    bad = [d for d in depths if d not in exits]
    if bad:
        raise RecipeError(f"depths {bad} are not exits of the model {exits}")
    specs = {name: value if isinstance(value, GateSpec) else GateSpec.of(model if value is None else value)
             for name, value in (gates or {}).items()}
    for spec in specs.values():
        spec.model.eval()
    run_depths = exits if (specs or oracle_betas) else sorted(depths)  # a choice per image needs every exit
    evaluator = task.batch_evaluator(model=model, processor=processor, label_info=label_info, args=args,
                                     with_ap=with_ap, with_miou=with_miou)
    indices = shard_indices(len(dataset), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = inference_dataloader(dataset, label_info, processor, indices=indices,
                                  batch_size=args.per_device_eval_batch_size,
                                  num_workers=getattr(args, "dataloader_num_workers", 0),
                                  make_collator=task.make_collator)
    records: dict[int, list] = {k: [] for k in run_depths}  # per exit, this process's records
    gate_rows: dict[str, list] = {name: [] for name in specs}  # per gate, (index, outputs) of this process
    checked = not check_gates
    for batch in progress_bar(accelerator, iterable=loader, desc=description, total=len(loader)):
        per_depth = {}
        for k, outputs in exit_outputs(model, batch, accelerator, run_depths):
            per_depth[k] = evaluator.records(outputs, batch, gate=False)
            records[k].extend(per_depth[k])
        for name, spec in specs.items():
            outputs = _gate_outputs(spec, batch, accelerator)
            gate_rows[name].extend(zip(batch["indices"].tolist(), outputs))
            if not checked:
                _check_selection(spec, batch, accelerator, evaluator, per_depth, outputs, exits)
        checked = True
    gathered = gather_object([(records, gate_rows)]) if accelerator.num_processes > 1 else [(records, gate_rows)]
    report = [None]
    if accelerator.is_main_process:
        by_depth = {k: {} for k in run_depths}
        gate_outputs: dict[str, dict] = {name: {} for name in specs}
        for part_records, part_gates in gathered:
            for k, rows in part_records.items():
                by_depth[k].update((r.index, r) for r in rows)
            for name, rows in part_gates.items():
                gate_outputs[name].update(rows)
        order = sorted(by_depth[run_depths[0]])
        modes = _route(order, by_depth, exits=exits, depths=depths, specs=specs, gate_outputs=gate_outputs,
                       oracle_betas=oracle_betas, random_routing_controls=random_routing_controls,
                       routing_seed=routing_seed, evaluator=evaluator)
        report[0] = {"num_images": len(dataset), "modes": {}, "per_image": {}}
        for name, (chosen, meta) in modes.items():
            acc = task.new_accumulator()
            for record in chosen:
                acc.add(record)
            report[0]["modes"][name] = {**meta, **task.summarize_mode(acc, label_info=label_info, exit_layers=exits)}
            report[0]["per_image"][name] = sorted(acc.rows, key=lambda r: r["index"])
    if accelerator.num_processes > 1:
        broadcast_object_list(report, from_process=0)
    return report[0]


def _route(order, by_depth, *, exits, depths, specs, gate_outputs, oracle_betas, random_routing_controls,
           routing_seed, evaluator) -> dict:
    """Mode name -> (records chosen per image, mode metadata)."""

    def pick(chosen_depths, gate: bool) -> list:
        out = []
        for index, depth in zip(order, np.asarray(chosen_depths).tolist()):
            base = by_depth[int(depth)][index]
            if gate and getattr(evaluator, "with_gflops", True):  # the gate's own FLOPs are part of the cost
                height, width = base.processed_size
                total, encoder = evaluator.gflops(height, width, int(depth), True)
                base = dataclasses.replace(base, gflops=total, encoder_gflops=encoder)
            out.append(base)
        return out

    modes: dict = {}
    for k in depths:
        modes[f"depth_{k}"] = ([by_depth[k][i] for i in order],
                               {"kind": "fixed", "beta": None, "gate_objective": None, "controls": None})
    quality = np.array([[by_depth[k][i].quality for k in exits] for i in order])
    for beta in oracle_betas:
        modes[f"oracle_beta_{beta:g}"] = (pick(ideal_depths(quality, exits, beta), gate=False),
                                          {"kind": "oracle", "beta": float(beta), "gate_objective": None,
                                           "controls": None})
    for name, spec in specs.items():
        outputs = np.stack([gate_outputs[name][i] for i in order])
        for beta in spec.betas:
            mode = spec.mode_name(name, beta)
            chosen = spec.depths(outputs, exits, beta)
            trained_beta = beta if beta is not None else spec.label_beta
            modes[mode] = (pick(chosen, gate=True), {"kind": "gate", "beta": trained_beta,
                                                     "gate_objective": spec.objective, "controls": None})
            if random_routing_controls:
                shuffled = random_routing(chosen, seed=routing_seed)
                modes[f"random_{mode}"] = (pick(shuffled, gate=False),
                                           {"kind": "random_routing", "beta": trained_beta,
                                            "gate_objective": spec.objective, "controls": mode})
    return modes


__all__ = [
    "BatchEvaluator",
    "GFlopsTable",
    "ImageRecord",
    "ModeAccumulator",
    "coco_mask_ap",
    "evaluate_modes",
    "forward_at_depth",
    "panoptic_from_counts",
    "GateSpec",
    "exit_outputs",
    "summarize_mode",
]
