"""Benchmark: ecom2f's vectorised PQ against torchmetrics' PanopticQuality on the same inputs, in one run.

Inputs: ``--images`` (100) validation images of ``--size`` (512) px from the procedural data set, and predictions
in ``post_process_panoptic_segmentation`` form derived from the ground truth with realistic errors (dropped,
shifted and relabelled segments, spurious segments, stuff split in two, void holes), plus crowd regions.

Timed: ecom2f ``panoptic_quality`` (protocol "torchmetrics", so the numbers must be identical; and "coco"),
``per_image_panoptic_quality``, and torchmetrics ``PanopticQuality.update`` + ``compute``. torchmetrics gets its
``(B, H, W, 2)`` tensors prepared outside the timer; ecom2f's timer includes reading the processor-style dicts.
Also reported: mIoU (ecom2f vs torchmetrics ``MeanIoU``, same inputs) and the time to generate 1,000 256x256
images of the data set. Writes ``benchmarks/results/metrics.json`` and ``metrics.md``.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_metrics.py [--images 100] [--size 512] [--skip-generator]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


from modeling_ecom2f.data import (  # noqa: E402
    SyntheticPanopticConfig,
    make_synthetic_panoptic_dataset,
    panoptic_reference,
)
from modeling_ecom2f.metrics import mean_iou, panoptic_quality, per_image_panoptic_quality  # noqa: E402


def make_prediction(reference: dict, rng: np.random.Generator, *, num_labels: int) -> dict:
    """A plausible panoptic prediction for ``reference`` (the processor's output form)."""
    gt = reference["segmentation"].numpy()
    pred = np.zeros_like(gt)
    info, next_id = [], 1
    for s in reference["segments_info"]:
        mask = gt == s["id"]
        if rng.random() < 0.1:
            continue  # missed
        if rng.random() < 0.5:
            mask = np.roll(mask, tuple(int(v) for v in rng.integers(-4, 5, size=2)), axis=(0, 1))
        label = s["category_id"] if rng.random() > 0.1 else int(rng.integers(num_labels))
        pred[mask] = next_id
        info.append({"id": next_id, "label_id": label, "was_fused": False, "score": float(rng.uniform(0.5, 1))})
        next_id += 1
    h, w = gt.shape
    for _ in range(int(rng.integers(0, 4))):  # spurious segments
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, 20)
        pred[max(0, y - r) : y + r, max(0, x - r) : x + r] = next_id
        info.append({"id": next_id, "label_id": int(rng.integers(num_labels)), "was_fused": False, "score": 0.6})
        next_id += 1
    for _ in range(int(rng.integers(0, 3))):  # void holes
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 40)
        pred[max(0, y - r) : y + r, max(0, x - r) : x + r] = 0
    present = set(np.unique(pred).tolist())
    info = [s for s in info if s["id"] in present]
    return {"segmentation": torch.from_numpy(pred.astype(np.int32)), "segments_info": info}


def to_torchmetrics(entry: dict, *, void_category: int) -> torch.Tensor:
    """``(H, W, 2)`` (category, instance); void and crowd -> an unknown category (torchmetrics has no crowd)."""
    seg = entry["segmentation"].numpy().astype(np.int64)
    out = np.zeros(seg.shape + (2,), np.int64)
    out[..., 0] = void_category
    for s in entry["segments_info"]:
        if s.get("iscrowd", 0):
            continue
        mask = seg == s["id"]
        out[mask, 0] = s.get("label_id", s.get("category_id"))
        out[mask, 1] = s["id"]
    return torch.from_numpy(out)


def timed(fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-generator", action="store_true", help="skip the 1,000-image generation timing")
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    from torchmetrics.detection import PanopticQuality
    from torchmetrics.segmentation import MeanIoU

    config = SyntheticPanopticConfig(
        height=args.size,
        width=args.size,
        num_train_images=0,
        num_validation_images=args.images,
        seed=args.seed,
        crowd_probability=0.3,
    )
    gen_time, (dataset, info) = timed(lambda: make_synthetic_panoptic_dataset(config=config))
    rows = dataset["validation"]
    refs = [panoptic_reference(rows[i]) for i in range(len(rows))]
    rng = np.random.default_rng(args.seed)
    preds = [make_prediction(r, rng, num_labels=info.num_labels) for r in refs]
    things, stuff = list(info.thing_ids), list(info.stuff_ids)
    segments = sum(len(r["segments_info"]) for r in refs)
    crowd = sum(s["iscrowd"] for r in refs for s in r["segments_info"])
    print(
        f"{args.images} images {args.size}x{args.size}, {segments} GT segments ({crowd} crowd), "
        f"generated in {gen_time:.1f} s"
    )

    t_ours_tm, ours_tm = timed(
        lambda: panoptic_quality(preds, refs, thing_ids=things, stuff_ids=stuff, protocol="torchmetrics"), repeat=3
    )
    t_ours_coco, ours_coco = timed(lambda: panoptic_quality(preds, refs, thing_ids=things, stuff_ids=stuff), repeat=3)
    t_per_image, per_image = timed(
        lambda: per_image_panoptic_quality(preds, refs, thing_ids=things, stuff_ids=stuff), repeat=3
    )
    print(
        f"ecom2f PQ: {t_ours_tm:.3f} s (torchmetrics protocol), {t_ours_coco:.3f} s (coco), "
        f"per-image {t_per_image:.3f} s"
    )

    void_category = max(things + stuff) + 1
    tm_preds = [to_torchmetrics(p, void_category=void_category) for p in preds]
    tm_refs = [to_torchmetrics(r, void_category=void_category) for r in refs]

    def run_torchmetrics():
        metric = PanopticQuality(
            things=set(things), stuffs=set(stuff), return_sq_and_rq=True, allow_unknown_preds_category=True
        )
        for start in range(0, len(tm_preds), 10):
            metric.update(torch.stack(tm_preds[start : start + 10]), torch.stack(tm_refs[start : start + 10]))
        return metric.compute().double().numpy()

    t_tm, tm_values = timed(run_torchmetrics)
    print(f"torchmetrics PQ: {t_tm:.1f} s")
    ours_values = np.array([ours_tm.pq, ours_tm.sq, ours_tm.rq])
    max_diff = float(np.abs(ours_values - tm_values).max())
    assert max_diff < 1e-6, (ours_values, tm_values)  # torchmetrics divides in float32

    sem_preds = [torch.zeros(p["segmentation"].shape, dtype=torch.int64) for p in preds]
    for sem, p in zip(sem_preds, preds):  # semantic prediction = category of each predicted segment (void -> 0)
        seg = p["segmentation"].numpy()
        for s in p["segments_info"]:
            sem[torch.from_numpy(seg == s["id"])] = s["label_id"]
    sem_refs = []
    for r in refs:
        seg = r["segmentation"].numpy()
        m = np.full(seg.shape, 255, np.int64)
        for s in r["segments_info"]:
            m[seg == s["id"]] = s["category_id"]
        sem_refs.append(torch.from_numpy(m))
    c = info.num_labels
    t_miou, miou = timed(lambda: mean_iou(sem_preds, sem_refs, num_labels=c, reduction="image"), repeat=3)

    def one_hot(maps, refs_):
        out = torch.nn.functional.one_hot(torch.stack(maps).clamp(0, c - 1), c).permute(0, 3, 1, 2).bool()
        out &= (torch.stack(refs_) != 255)[:, None]
        return out

    hot_preds, hot_refs = one_hot(sem_preds, sem_refs), one_hot(sem_refs, sem_refs)

    def run_tm_miou():
        metric = MeanIoU(num_classes=c, input_format="one-hot")
        metric.update(hot_preds, hot_refs)
        return float(metric.compute())

    t_tm_miou, tm_miou = timed(run_tm_miou, repeat=3)
    assert abs(tm_miou - miou.mean_iou) < 1e-5, (tm_miou, miou.mean_iou)
    print(f"mIoU: ecom2f {t_miou:.3f} s, torchmetrics {t_tm_miou:.3f} s")

    generator = None
    if not args.skip_generator:
        gen_config = SyntheticPanopticConfig(num_train_images=800, num_validation_images=200, seed=args.seed)
        t_gen, _ = timed(lambda: make_synthetic_panoptic_dataset(config=gen_config))
        generator = {"images": 1000, "size": "256x256", "seconds": round(t_gen, 2)}
        print(f"generator: 1000 images of 256x256 in {t_gen:.1f} s")

    import torchmetrics

    result = {
        "machine": {
            "load_average_1_5_15min_at_end": [round(v, 2) for v in os.getloadavg()],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "torchmetrics": torchmetrics.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "inputs": {
            "images": args.images,
            "size": args.size,
            "gt_segments": segments,
            "crowd_segments": crowd,
            "categories": info.num_labels,
            "seed": args.seed,
        },
        "panoptic_quality": {
            "ecom2f_seconds_torchmetrics_protocol": round(t_ours_tm, 4),
            "ecom2f_seconds_coco_protocol": round(t_ours_coco, 4),
            "ecom2f_seconds_per_image_pq": round(t_per_image, 4),
            "torchmetrics_seconds": round(t_tm, 2),
            "speedup": round(t_tm / t_ours_tm, 1),
            "ecom2f_ms_per_image": round(1000 * t_ours_tm / args.images, 2),
            "torchmetrics_ms_per_image": round(1000 * t_tm / args.images, 1),
            "pq_sq_rq_ecom2f": [float(v) for v in ours_values],
            "pq_sq_rq_torchmetrics": [float(v) for v in tm_values],
            "max_abs_difference": max_diff,
            "pq_coco_protocol": ours_coco.pq,
            "mean_per_image_pq": float(per_image.pq.mean()),
        },
        "mean_iou": {
            "ecom2f_seconds": round(t_miou, 4),
            "torchmetrics_seconds": round(t_tm_miou, 4),
            "value": miou.mean_iou,
            "torchmetrics_value": tm_miou,
        },
        "generator": generator,
    }
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    pq = result["panoptic_quality"]
    lines = [
        "# Metrics benchmark",
        "",
        f"`HF_HUB_OFFLINE=1 python benchmarks/bench_metrics.py --images {args.images} --size {args.size}` on "
        f"{result['machine']['cpus']} CPUs ({result['machine']['platform']}), torch {torch.__version__}, "
        f"torchmetrics {torchmetrics.__version__}, one run (machine shared with other jobs: load average "
        f"{os.getloadavg()[0]:.1f} at the end).",
        "",
        f"Inputs: {args.images} procedural validation images of {args.size}x{args.size}, {segments} ground-truth "
        f"segments ({crowd} crowd), predictions with dropped/shifted/relabelled/spurious segments and void holes.",
        "",
        "| Metric | ecom2f | torchmetrics | speed-up |",
        "|---|---|---|---|",
        f"| PQ, {args.images} images (torchmetrics protocol) | {pq['ecom2f_seconds_torchmetrics_protocol']:.3f} s | "
        f"{pq['torchmetrics_seconds']:.1f} s | {pq['speedup']:.0f}x |",
        f"| PQ, COCO panopticapi protocol | {pq['ecom2f_seconds_coco_protocol']:.3f} s | - | - |",
        f"| per-image PQ (all {args.images}) | {pq['ecom2f_seconds_per_image_pq']:.3f} s | - | - |",
        f"| mIoU (per-image reduction) | {t_miou:.3f} s | {t_tm_miou:.3f} s | {t_tm_miou / t_miou:.1f}x |",
        "",
        f"PQ / SQ / RQ: ecom2f {', '.join(f'{v:.6f}' for v in ours_values)}; torchmetrics "
        f"{', '.join(f'{v:.6f}' for v in tm_values)} (max |diff| {max_diff:.1e}: torchmetrics divides in "
        f"float32). COCO-protocol PQ "
        f"{ours_coco.pq:.6f}; mean per-image PQ {per_image.pq.mean():.6f}.",
        "",
        "ecom2f times are the best of 3 and include reading the processor-style dicts; torchmetrics gets its "
        "`(B, H, W, 2)` tensors prepared outside the timer.",
    ]
    if generator:
        lines += [
            "",
            f"Generating the procedural data set: 1,000 images of 256x256 (PNG-encoded into a "
            f"`datasets.DatasetDict`) in {generator['seconds']:.1f} s.",
        ]
    (out_dir / "metrics.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'metrics.md'}")


if __name__ == "__main__":
    main()
