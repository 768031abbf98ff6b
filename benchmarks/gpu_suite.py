"""The speed table, the training step and the deformable-attention core on one device (made for CUDA), one run.

1. speed: stock transformers Mask2Former vs ecom2f at full depth with each sampling core forced (`reference`:
   transformers' grid_sample core; `embedding_bag`: the fused core), same weights (`speed_protocol.build`) and
   input, batch 1 and 4 at each `--sizes`, eager, inference mode; the logits' max |diff| to stock.
2. train step: one optimizer step (`benchmark_train_step.Stepper`: forward + loss, backward, AdamW) of stock and
   ecom2f with each core forced, per `--train-settings` (`benchmark_train_step.SETTINGS`).
3. core: the sampling core alone (`benchmark_msda_core.core_inputs`, Mask2Former's encoder shapes at `--core-size`),
   each core.

Variants are interleaved round-robin (`bench_common.interleaved`), `--rounds` after `--warmup`, the device
synchronised around every timed call. `--device cpu --model tiny` is the quick check the tests run.

    python benchmarks/gpu_suite.py --device cuda
    python benchmarks/gpu_suite.py --device cpu --model tiny --sizes 64 --train-settings recipe --core-size 64

Writes `gpu_suite_<device>.json` and `.md` under `--out`. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_common as common
import benchmark_msda_core as msda_core
import benchmark_train_step as train_step
import speed_protocol as protocol
import torch
from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention

from modeling_ecom2f.ecom2f_msda import multi_scale_deformable_attention_embedding_bag

CORES = ("reference", "embedding_bag")


def synced(fn, device: torch.device):
    """`fn` followed by a device synchronisation (so that the wall time covers the device work)."""
    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def time_runs(runs: dict, device: torch.device, args: argparse.Namespace) -> dict:
    times = common.interleaved({k: synced(v, device) for k, v in runs.items()}, repeats=args.rounds,
                               warmup=args.warmup)
    return {k: common.latency_stats(v) for k, v in times.items()}


def with_core(model: torch.nn.Module, core: str) -> torch.nn.Module:
    train_step.set_core(model, core)
    return model


def speed(args: argparse.Namespace, device: torch.device) -> list[dict]:
    models = {name: m.to(device) for name, m in protocol.build(args.model, seed=args.seed).items()}
    eco = models["ecom2f"]
    rows = []
    for size in args.sizes:
        for batch in (1, 4):
            x = protocol.images(batch, size, args.seed).to(device)
            runs = {"stock": lambda: models["stock"](pixel_values=x)}
            runs |= {f"ecom2f[{core}]": (lambda c=core: with_core(eco, c)(pixel_values=x)) for core in CORES}
            with torch.inference_mode():
                reference = models["stock"](pixel_values=x).masks_queries_logits
                diffs = {f"ecom2f[{c}]": float((with_core(eco, c)(pixel_values=x).masks_queries_logits - reference)
                                               .abs().max()) for c in CORES}
                stats = time_runs(runs, device, args)
            for name, s in stats.items():
                rows.append({"size": size, "batch": batch, "variant": name, **s,
                             "speedup_vs_stock": stats["stock"]["median_ms"] / s["median_ms"],
                             "mask_logits_max_abs_diff": diffs.get(name, 0.0)})
            print(f"[speed {size} batch {batch}] " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in
                                                               stats.items()), flush=True)
    with_core(eco, "auto")
    return rows


def to_device(inputs: dict, device: torch.device) -> dict:
    return {k: [t.to(device) for t in v] if isinstance(v, list) else v.to(device) for k, v in inputs.items()}


def train(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for setting in args.train_settings:
        eco, inputs = train_step.build_setting(setting, seed=args.seed)
        inputs = to_device(inputs, device)
        stock = common.stock_twin(eco).to(device)
        steppers = {"stock": train_step.Stepper(stock, inputs, core=None, seed=args.seed)}
        for core in CORES:
            model = train_step.EcoMask2FormerForUniversalSegmentation(eco.config)
            model.load_state_dict(eco.state_dict())
            steppers[f"ecom2f[{core}]"] = train_step.Stepper(model.to(device), inputs, core=core, seed=args.seed)
        checks = train_step.check_equivalence(steppers)
        stats = time_runs(steppers, device, args)
        for name, s in stats.items():
            rows.append({"setting": setting, **train_step.SETTINGS[setting], "variant": name, **s,
                         "speedup_vs_stock": stats["stock"]["median_ms"] / s["median_ms"], "check": checks[name]})
        print(f"[train {setting}] " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in stats.items()), flush=True)
    return rows


def core(args: argparse.Namespace, device: torch.device) -> dict:
    value, shapes, locations, weights = (
        t.to(device) if isinstance(t, torch.Tensor) else t
        for t in msda_core.core_inputs(size=args.core_size, batch=1, heads=8, head_dim=32, points=4,
                                       strides=msda_core.STRIDES, seed=args.seed)
    )
    runs = {"reference": lambda: multi_scale_deformable_attention(value, shapes, locations, weights),
            "embedding_bag": lambda: multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights)}
    with torch.inference_mode():
        outputs = {k: f() for k, f in runs.items()}
        stats = time_runs(runs, device, args)
    diff = float((outputs["embedding_bag"] - outputs["reference"]).abs().max() / outputs["reference"].abs().max())
    return {"size": args.core_size, "level_shapes": shapes, "cores": stats, "max_relative_difference": diff,
            "speedup": stats["reference"]["median_ms"] / stats["embedding_bag"]["median_ms"]}


def markdown(payload: dict) -> list[str]:
    meta = payload["meta"]
    lines = [f"# Speed, training step and sampling core on {meta['device_name']}", "",
             f"torch {meta['env']['torch']}, transformers {meta['env']['transformers']}; {meta['env']['date_utc']}; "
             f"model `{meta['model']}`; {meta['rounds']} interleaved rounds after {meta['warmup']} warm-up; median "
             f"(min) ms. Command: `{meta['command']}`.", "", "## Inference (full depth)", "",
             "| size | batch | variant | ms | speed-up vs stock | mask logits max diff |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['batch']} | {r['variant']} | {r['median_ms']:.1f} ({r['min_ms']:.1f}) | "
              f"{r['speedup_vs_stock']:.2f} | {r['mask_logits_max_abs_diff']:.1e} |" for r in payload["speed"]]
    lines += ["", "## Training step", "", "| setting | variant | ms | speed-up vs stock | loss diff to stock |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} ({r['size']} px, batch {r['batch']}) | {r['variant']} | {r['median_ms']:.1f} "
              f"({r['min_ms']:.1f}) | {r['speedup_vs_stock']:.2f} | {r['check']['loss_difference_to_stock']:.1e} |"
              for r in payload["train"]]
    c = payload["core"]
    lines += ["", f"## Sampling core alone ({c['size']}x{c['size']} image, shapes {c['level_shapes']})", "",
              "| core | ms |", "|---|---|",
              *[f"| {k} | {v['median_ms']:.2f} ({v['min_ms']:.2f}) |" for k, v in c["cores"].items()], "",
              f"Speed-up {c['speedup']:.2f}x; max relative difference {c['max_relative_difference']:.1e}."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=("swin-t", "tiny"), default="swin-t")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    parser.add_argument("--train-settings", nargs="*", choices=sorted(train_step.SETTINGS),
                        default=list(train_step.SETTINGS))
    parser.add_argument("--core-size", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    payload = {"speed": speed(args, device), "train": train(args, device), "core": core(args, device)}
    payload["meta"] = {
        "env": common.environment(torch.get_num_threads()), "wall_s": time.perf_counter() - started,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else common.environment(1)[
            "cpu_model"],
        "command": " ".join(["python benchmarks/gpu_suite.py", *(argv if argv is not None else sys.argv[1:])]),
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    common.write_results(args.out, f"gpu_suite_{device.type}", payload, markdown(payload))
    return payload


if __name__ == "__main__":
    main()
