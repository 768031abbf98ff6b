"""Evaluation pieces of the detection task: per-image box AP records, the data-set COCO box AP, step 2's rows, and
the report table. The mode loop itself (fixed depths, gates, oracle, sharding and gathering) is the shared
`mode_evaluation.evaluate_modes`.

Per-image quality (step 2, the oracle): `metrics.per_image_box_ap`, COCO box AP@[.5:.95] computed on that image
alone (equal to pycocotools' COCOeval restricted to the image: maxDets 100, area "all", 101-point interpolated
precision, averaged over the categories present in the image's ground truth). Why: it is the metric the data-set
figure is reported in, restricted to one image, so `argmax_k(AP_k - beta * k)` trades exactly what the evaluation
measures; its ten IoU thresholds reward the better localisation a deeper encoder brings, not just finding the
object (AP50 alone saturates on easy images), and it is insensitive to how many low-scored extra detections there
are as long as they rank below the true ones. An image without ground-truth boxes has no COCO AP: it scores 1 when
nothing scores at least `--empty_image_score_threshold`, else 0, which makes its ideal depth the shallowest exit
unless a deeper one removes a confident false alarm (rule and reasons in `metrics/box_ap.py`).

Data-set figures: COCO box AP (pycocotools COCOeval "bbox" over all images; AP, AP50, AP75, APs/m/l, AR), the mean
of the per-image APs, GFLOPs (`ecom2f_detr_flops.count_detection_gflops`, per image at its processed size and
depth; "encoder" is the deformable encoder's layers) and the depth histogram.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from ..ecom2f_detr_flops import count_detection_gflops
from ..ecom2f_size_groups import image_extents
from ..metrics import coco_summary, per_image_box_ap
from .data import inference_dataloader, shard_indices
from .detection import EcoDeformableDetrCollator
from .segmentation_evaluation import GFlopsTable, exit_outputs, spread
from .reporting import mode_table, percent, points_delta
from .runtime import RecipeError, progress_bar

#: Per-exit list columns of step 2's table (box AP first: the quality the labels use).
DERIVED_COLUMNS = ("box_ap", "ap50", "ap75")


@dataclass
class DetectionRecord:
    """One image evaluated in one mode. `coco` is `(annotations, detections, (height, width))` for the data-set AP."""

    index: int
    image_id: str
    depth: int
    box_ap: float
    ap50: float
    ap75: float
    has_ground_truth: bool
    num_ground_truth: int
    gflops: float
    encoder_gflops: float
    coco: tuple | None = None
    processed_size: tuple[int, int] | None = None  # unpadded (height, width) the model saw

    @property
    def quality(self) -> float:
        """Per-image box AP: what the oracle and the gate labels use."""
        return self.box_ap


class DetectionBatchEvaluator:
    """Turns detector outputs for a collated batch into `DetectionRecord`s (post-processing + per-image box AP).

    `with_ap` and `with_miou` (segmentation flags) are accepted and ignored: box AP is always computed.
    `keep_detections=False` (step 2) skips keeping the detections for the data-set AP.
    """

    def __init__(self, *, model, processor, label_info, args, with_ap: bool = True, with_miou: bool = False,
                 with_gflops: bool = True, keep_detections: bool = True) -> None:
        self.processor = processor
        self.label_info = label_info
        self.threshold = float(getattr(args, "detection_threshold", 0.0))
        self.empty_threshold = float(getattr(args, "empty_image_score_threshold", 0.5))
        self.gflops = GFlopsTable(model, counter=count_detection_gflops)
        self.with_gflops = with_gflops
        self.keep_detections = keep_detections

    def predictions(self, outputs, batch) -> list[dict]:
        """`post_process_object_detection` in original-image pixels (top 100 per image, float32 on the CPU).

        The stock processor normalises training boxes by the padded batch canvas, so predicted boxes are relative to
        it: each image's scale is its original size times padded / processed size (the original size when the
        batch needs no padding, as with equal-sized images)."""
        light = SimpleNamespace(logits=outputs.logits.float().cpu(), pred_boxes=outputs.pred_boxes.float().cpu(),
                                encoder_layers_used=outputs.encoder_layers_used.cpu())
        padded_h, padded_w = batch["pixel_mask"].shape[-2:]
        scales = [(h0 * padded_h / h, w0 * padded_w / w)
                  for (h0, w0), (h, w) in zip(batch["target_sizes"], image_extents(batch["pixel_mask"]))]
        return self.processor.post_process_object_detection(light, threshold=self.threshold, target_sizes=scales)

    def records(self, outputs, batch, *, gate: bool) -> list[DetectionRecord]:
        predictions = self.predictions(outputs, batch)
        depths = outputs.encoder_layers_used.tolist()
        sizes = image_extents(batch["pixel_mask"])
        records = []
        for i, (index, prediction, reference) in enumerate(zip(batch["indices"].tolist(), predictions,
                                                                 batch["references"])):
            score = per_image_box_ap(prediction, reference, score_threshold=self.empty_threshold)
            total, encoder = (self.gflops(sizes[i][0], sizes[i][1], int(depths[i]), gate) if self.with_gflops
                              else (0.0, 0.0))
            record = DetectionRecord(index=int(index), image_id=str(batch["image_ids"][i]), depth=int(depths[i]),
                                     box_ap=score.ap, ap50=score.ap50, ap75=score.ap75,
                                     has_ground_truth=score.has_ground_truth,
                                     num_ground_truth=score.num_ground_truth, gflops=total, encoder_gflops=encoder,
                                     processed_size=sizes[i])
            if self.keep_detections:
                boxes = prediction["boxes"].tolist()
                detections = [{"category_id": int(label), "score": float(s), "bbox": [b[0], b[1], b[2] - b[0],
                                                                                       b[3] - b[1]]}
                              for s, label, b in zip(prediction["scores"].tolist(), prediction["labels"].tolist(),
                                                     boxes)]
                record.coco = (reference["annotations"], detections, tuple(reference["size"]))
            records.append(record)
        return records


class DetectionAccumulator:
    """One mode's per-image rows and detections (small enough to gather across processes)."""

    def __init__(self) -> None:
        self.coco: dict[int, tuple] = {}
        self.rows: list[dict] = []

    def add(self, record: DetectionRecord) -> None:
        if record.coco is not None:
            self.coco[record.index] = record.coco
        self.rows.append({"index": record.index, "image_id": record.image_id, "depth": record.depth,
                          "box_ap": record.box_ap, "ap50": record.ap50, "ap75": record.ap75,
                          "has_ground_truth": record.has_ground_truth, "gflops": record.gflops,
                          "encoder_gflops": record.encoder_gflops})

    def merge(self, other: "DetectionAccumulator") -> None:
        self.coco.update(other.coco)
        self.rows.extend(other.rows)


def coco_box_ap(parts: Sequence[tuple], thing_ids: Sequence[int]) -> dict:
    """pycocotools COCOeval ("bbox") over per-image `(annotations, detections, (height, width))` parts."""
    images, annotations, detections = [], [], []
    for image_id, (anns, dets, (height, width)) in enumerate(parts, start=1):
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for ann in anns:  # COCO category ids start at 1 here: label id + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ann["category_id"] + 1,
                                "bbox": list(ann["bbox"]), "area": float(ann["area"]), "iscrowd": int(ann["iscrowd"])})
        for det in dets:
            detections.append({"id": len(detections) + 1, "image_id": image_id, "category_id": det["category_id"] + 1,
                               "bbox": list(det["bbox"]), "score": float(det["score"]), "iscrowd": 0,
                               "area": float(det["bbox"][2] * det["bbox"][3])})
    return coco_summary(images, annotations, detections, thing_ids, iou_type="bbox")


def summarize_detection_mode(acc: DetectionAccumulator, *, label_info, exit_layers) -> dict:
    """The figures of one mode from its merged accumulator."""
    rows = sorted(acc.rows, key=lambda r: r["index"])
    if not rows:
        raise RecipeError("no image was evaluated")
    depths = np.array([r["depth"] for r in rows])
    result: dict = {}
    if acc.coco:
        stats = coco_box_ap([acc.coco[r["index"]] for r in rows], label_info.thing_ids)
        result.update({"box_ap": stats["AP"], "ap50": stats["AP50"], "ap75": stats["AP75"], "coco": stats})
    else:
        result.update({"box_ap": float("nan"), "ap50": float("nan"), "ap75": float("nan")})
    result["mean_per_image_ap"] = float(np.mean([r["box_ap"] for r in rows]))
    result["images_with_ground_truth"] = int(sum(bool(r["has_ground_truth"]) for r in rows))
    result["gflops"] = {**spread(np.array([r["gflops"] for r in rows]), "total"),
                        **spread(np.array([r["encoder_gflops"] for r in rows]), "encoder")}
    result["depth_histogram"] = {str(k): int((depths == k).sum()) for k in exit_layers}
    result["mean_depth"] = float(depths.mean())
    result["num_images"] = len(rows)
    return result


def derive_detection_rows(*, accelerator, model, processor, dataset, label_info, args) -> list[dict]:
    """Step 2, this process's block of rows: per image the box AP, AP50 and AP75 at every exit."""
    exits = list(model.config.exit_layers)
    evaluator = DetectionBatchEvaluator(model=model, processor=processor, label_info=label_info, args=args,
                                        with_gflops=False, keep_detections=False)
    indices = shard_indices(len(dataset), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = inference_dataloader(dataset, label_info, processor, indices=indices,
                                  batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
                                  make_collator=EcoDeformableDetrCollator)
    rows = []
    for batch in progress_bar(accelerator, iterable=loader, total=len(loader), desc="step 2 (derive, box AP)"):
        columns = {name: [[] for _ in batch["image_ids"]] for name in DERIVED_COLUMNS}
        ground_truth = [0] * len(batch["image_ids"])
        for _, outputs in exit_outputs(model, batch, accelerator, exits):
            for i, record in enumerate(evaluator.records(outputs, batch, gate=False)):
                for name in DERIVED_COLUMNS:
                    columns[name][i].append(float(getattr(record, name)))
                ground_truth[i] = record.num_ground_truth
        for i, (index, image_id) in enumerate(zip(batch["indices"].tolist(), batch["image_ids"])):
            rows.append({"index": int(index), "image_id": str(image_id), "num_ground_truth": int(ground_truth[i]),
                         **{name: values[i] for name, values in columns.items()}})
    return rows


def detection_results_table(report: dict) -> str:
    """A Markdown table: one row per mode, box AP (points) against encoder GFLOPs per image."""

    def cells(r: dict, base_ap) -> list[str]:
        return [percent(r["box_ap"]), points_delta(r["box_ap"], base_ap), percent(r["ap50"]), percent(r["ap75"]),
                percent(r["mean_per_image_ap"])]

    return mode_table(report, quality="box_ap", columns=["box AP", "dAP vs full", "AP50", "AP75",
                                                          "mean per-image AP"], cells=cells)


def detection_compact_summary(report: dict) -> dict:
    """Per mode: box AP, AP50, mean per-image AP, mean encoder/total GFLOPs and mean depth."""
    return {name: {"box_ap": r["box_ap"], "ap50": r["ap50"], "mean_per_image_ap": r["mean_per_image_ap"],
                   "encoder_gflops": r["gflops"]["encoder_mean"], "total_gflops": r["gflops"]["total_mean"],
                   "mean_depth": r["mean_depth"]}
            for name, r in report["modes"].items()}


__all__ = [
    "DERIVED_COLUMNS",
    "DetectionAccumulator",
    "DetectionBatchEvaluator",
    "DetectionRecord",
    "coco_box_ap",
    "derive_detection_rows",
    "detection_compact_summary",
    "detection_results_table",
    "summarize_detection_mode",
]
