"""GFLOPs, latency and the published table of `accuracy_study.py` (run after every variant is trained and evaluated).

- Quality (PQ, PQ things/stuff, mIoU, mask AP) comes from each variant's `evaluation/evaluation.json` (the project's
  `evaluate_model`, every fixed exit and the utility gate at several betas, on the same validation images).
- GFLOPs (fvcore convention, `ecom2f_flops.count_gflops`) of every exit of the trained config at the training size,
  and of the same variant built on Swin-T at `flops_size` (1024x1024, the papers' reporting size); ratios are against
  the stock transformers Mask2Former of the same size. A gate's GFLOPs are the mean over validation images of its
  chosen exit's GFLOPs (its depth histogram), plus the gate.
- Latency: CPU, one thread, batch 1 at the training size; the stock transformers Mask2Former holding the trained
  stock variant's weights (from scratch: the shipped parent's) and every (variant, exit) timed interleaved
  round-robin in this process, median of the repeats. A gate's latency is its depth histogram applied to the
  measured exits (not timed as a whole).
- The rows of one run (one `training` mode) are merged into the JSON already in an output folder: rows of the other
  mode are kept exactly as written (nothing of theirs is re-measured), rows of this mode are replaced.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import stock_twin


def variant_depths(variant, model) -> list[int]:
    """The fixed depths of a variant that are measured: its own `depths`, else every exit of the trained model."""
    return list(variant.depths or model.config.exit_layers)


#: Fields of a trained config that the Swin-T twin of a variant copies (its encoder structure and exits).
STRUCTURE = ("encoder_layers", "exit_layers", "token_scaling_layers", "token_recalibration", "light_pixel_embedding",
             "gate_hidden_size", "gate_pooling", "gate_input_level", "gate_objective")


def swin_t_model(trained, *, seed: int):
    """The trained model's structure (encoder, exits, PRO-SCALE, gate) on the Swin-T Mask2Former config."""
    from bench_common import swin_t_kwargs

    from modeling_ecom2f import (
        EcoMask2FormerConfig,
        EcoMask2FormerForUniversalSegmentation,
    )

    torch.manual_seed(seed)
    fields = {name: getattr(trained.config, name) for name in STRUCTURE if hasattr(trained.config, name)}
    return EcoMask2FormerForUniversalSegmentation(EcoMask2FormerConfig(**swin_t_kwargs(), **fields)).eval()


def gflops_tables(variants, models: dict, stock, *, image_size: int, flops_size: int, seed: int) -> dict:
    """{variant name: {"trained": {depth: GFLOPs dict}, "swin_t": {depth: GFLOPs dict}}, "stock_ref": ...}."""
    from bench_common import swin_t_kwargs
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    from modeling_ecom2f.ecom2f_flops import count_gflops

    small = torch.zeros(1, 3, image_size, image_size)
    large = torch.zeros(1, 3, flops_size, flops_size)
    torch.manual_seed(seed)
    reference = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**swin_t_kwargs())).eval()
    out = {"stock_ref": {"trained": count_gflops(stock, small).as_dict(),
                         "swin_t": count_gflops(reference, large).as_dict()}}
    del reference
    for variant in variants:
        model = models[variant.name]
        big = swin_t_model(model, seed=seed)
        out[variant.name] = {"trained": {}, "swin_t": {}}
        for depth in variant_depths(variant, model):
            out[variant.name]["trained"][depth] = count_gflops(model, small, num_encoder_layers=depth).as_dict()
            out[variant.name]["swin_t"][depth] = count_gflops(big, large, num_encoder_layers=depth).as_dict()
        if variant.gate:
            out[variant.name]["gate_swin_t"] = count_gflops(big, large, output_gate_logits=True).as_dict()["gate"]
            out[variant.name]["gate_trained"] = count_gflops(model, small, output_gate_logits=True).as_dict()["gate"]
        print(f"[accuracy_study] GFLOPs of {variant.name} done", flush=True)
    return out


def latencies(variants, models: dict, stock, *, image_size: int, repeats: int, seed: int, warmup: int = 2) -> dict:
    """Median CPU milliseconds (one thread, batch 1) of the stock twin and of every (variant, exit), interleaved."""
    torch.set_num_threads(1)
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    runs = [("stock_transformers", None, stock)] + [
        (v.name, depth, models[v.name]) for v in variants for depth in variant_depths(v, models[v.name])]
    times: dict[tuple, list[float]] = {(name, depth): [] for name, depth, _ in runs}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            shift = round_index % len(runs)
            for name, depth, model in runs[shift:] + runs[:shift]:
                start = time.perf_counter()
                model(pixel_values=x) if depth is None else model(pixel_values=x, num_encoder_layers=depth)
                if round_index >= warmup:
                    times[(name, depth)].append((time.perf_counter() - start) * 1e3)
    return {key: float(np.median(value)) for key, value in times.items()}


def metric_of(result: dict | None, key: str) -> float | None:
    return None if not result or result.get(key) is None else round(100 * float(result[key]), 2)


def histogram_mean(histogram: dict, values: dict) -> float:
    total = sum(histogram.values())
    return sum(count * values[int(depth)] for depth, count in histogram.items()) / total


def rows_of(variant, evaluation: dict, flops: dict, latency: dict, stock_latency: float, calibrated) -> list[dict]:
    """The published entries of one variant: every fixed exit and the utility gate at each evaluated beta."""
    ref_small, ref_large = flops["stock_ref"]["trained"], flops["stock_ref"]["swin_t"]
    own = flops[variant.name]
    per_depth = {
        "pd": {d: g["pixel_decoder"] for d, g in own["swin_t"].items()},
        "total": {d: g["total"] for d, g in own["swin_t"].items()},
        "pd_small": {d: g["pixel_decoder"] for d, g in own["trained"].items()},
        "total_small": {d: g["total"] for d, g in own["trained"].items()},
        "latency": {d: latency[(variant.name, d)] for d in own["swin_t"]},
    }
    base = {"name": variant.name, "family": variant.family, "training": variant.training,
            "token_scaling_layers": list(variant.stages) if variant.stages else None,
            "token_recalibration": variant.token_recalibration,
            "light_pixel_embedding": variant.light_pixel_embedding}
    rows = []
    for mode, result in evaluation["modes"].items():
        kind = result.get("kind")
        if kind not in ("fixed", "gate"):
            continue
        if kind == "fixed":
            depth = int(mode.split("_")[-1])  # "depth_<k>"
            hist, gate_large, gate_small = {str(depth): 1}, 0.0, 0.0
        else:
            depth, hist = None, result["depth_histogram"]
            gate_large, gate_small = own.get("gate_swin_t", 0.0), own.get("gate_trained", 0.0)
        mask_ap = (result.get("mask_ap") or {}).get("AP")
        pd_large = histogram_mean(hist, per_depth["pd"]) + gate_large
        rows.append({
            **base, "mode": mode, "depth": depth, "beta": result.get("beta"),
            "calibrated": kind == "gate" and calibrated is not None and result.get("beta") == round(calibrated, 6),
            "pq": metric_of(result, "pq"), "pq_things": metric_of(result, "pq_things"),
            "pq_stuff": metric_of(result, "pq_stuff"), "miou": metric_of(result, "miou"), "mask_ap": None if mask_ap is None else round(100 * mask_ap, 2),
            "mean_depth": round(float(result["mean_depth"]), 3), "depth_histogram": hist,
            "pixel_decoder_gflops_ratio": round(pd_large / ref_large["pixel_decoder"], 4),
            "total_gflops_ratio": round((histogram_mean(hist, per_depth["total"]) + gate_large) / ref_large["total"], 4),
            "trained_pixel_decoder_gflops_ratio": round(
                (histogram_mean(hist, per_depth["pd_small"]) + gate_small) / ref_small["pixel_decoder"], 4),
            "trained_total_gflops_ratio": round(
                (histogram_mean(hist, per_depth["total_small"]) + gate_small) / ref_small["total"], 4),
            "latency_ratio": round(histogram_mean(hist, per_depth["latency"]) / stock_latency, 4),
            "latency_ms": round(histogram_mean(hist, per_depth["latency"]), 2),
            "random_routing_pq": metric_of(evaluation["modes"].get(f"random_{mode}"), "pq"),
        })
    return rows


def machine() -> dict:
    import os

    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def trained_models(variants, root: Path) -> dict:
    """Each variant's evaluated model (a gated variant: its step-3 folder, the step-1 weights plus the trained utility
    gate), as its `variant.json` records it."""
    from modeling_ecom2f.recipe.modeling import load_trained_model

    models = {}
    for v in variants:
        record = json.loads((root / v.name / "variant.json").read_text(encoding="utf-8"))
        folder = record.get("model_folder") or root / v.name / ("gate_utility" if v.gate else "train")
        models[v.name] = load_trained_model(Path(folder))
    return models


def measure_and_report(*, variants, preset, root: Path, docs_dir: Path | None, command: str, start: float,
                       seed: int, training: str = "fine_tuned") -> dict:
    from accuracy_study_tables import add_frontier_gains, merge_result, write_markdown, write_plot
    from accuracy_study_variants import baseline_name

    models = trained_models(variants, root)
    stock = stock_twin(models[baseline_name(variants)])  # the stock transformers model: GFLOPs and latency reference
    flops = gflops_tables(variants, models, stock, image_size=preset.image_size, flops_size=preset.flops_size,
                          seed=seed)
    latency = latencies(variants, models, stock, image_size=preset.image_size, repeats=preset.latency_repeats,
                        seed=seed)
    stock_latency = latency[("stock_transformers", None)]
    rows, timings, provenance = [], {}, {}
    for variant in variants:
        evaluation = json.loads((root / variant.name / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))
        record = json.loads((root / variant.name / "variant.json").read_text(encoding="utf-8"))
        timings[variant.name] = record["timings_s"]
        provenance[variant.name] = {k: record[k] for k in ("train_command", "train_folder", "shipped") if k in record}
        rows += rows_of(variant, evaluation, flops, latency, stock_latency, record["calibrated_beta"])
    add_frontier_gains(rows)
    validation = json.loads((root / variants[0].name / "evaluation" / "evaluation.json").read_text(
        encoding="utf-8"))["modes"]
    run = {
        "command": command, "wall_seconds": round(time.perf_counter() - start, 1),
        "validation_images": next(iter(validation.values()))["num_images"],
        "setup": {"preset": {k: v for k, v in preset.__dict__.items()}, "seed": seed, "machine": machine(),
                  "training": training, "baseline": baseline_name(variants),
                  "stock_latency_ms": round(stock_latency, 2), "latency": "CPU, 1 thread, batch 1, "
                  f"{preset.image_size}x{preset.image_size}, median of {preset.latency_repeats} interleaved runs",
                  "gflops_reference": {"swin_t_size": preset.flops_size, **flops["stock_ref"]["swin_t"]},
                  "stage_seconds": timings},
    }
    if training == "from_scratch":
        from accuracy_study_scratch import recipe_record

        run["setup"].update(models=provenance, recipe=recipe_record(preset))
    result = None
    for folder in filter(None, (root, docs_dir)):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "accuracy_study.json"
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        merged = merge_result(existing, training=training, run=run, rows=rows)
        path.write_text(json.dumps(merged, indent=2), encoding="utf-8")
        write_markdown(folder / "accuracy_study.md", merged)
        write_plot(folder / "accuracy_study.png", merged)
        result = merged if result is None or folder == docs_dir else result
    print((root / "accuracy_study.md").read_text(encoding="utf-8"), flush=True)
    return result
