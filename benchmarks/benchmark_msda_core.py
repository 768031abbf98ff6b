"""The deformable-attention sampling core: transformers' grid_sample reference vs the fused embedding-bag core.

Two measurements, each written to its own table under `--out`:

- `core` (default): the core function alone, forward only (inference), at one image size: shapes of the
  Mask2Former pixel-decoder encoder at `--size` (levels at strides 32, 16, 8 of a square image; 8 heads, 32 channels
  per head, 4 points; every token is a query), random values, locations and weights (`--seed`). Both cores get the
  same inputs. Also reports the max relative difference of the outputs. -> `msda_core.json` / `.md`.
- `train`: `EcoMultiscaleDeformableAttention` alone (projections, softmax, core), forward (inference, no graph)
  and forward + backward (a loss on the output, gradients of the input and every parameter), at each `--cases` entry
  `size:d_model:batch:heads` (default: the stock speed table's sizes plus the recipe's parent, d_model 64 with 4 heads),
  for the reference core, the embedding-bag core (its hand-written backward) and `auto`, all with the same weights
  and inputs. Also reports the largest gradient difference between the two cores. -> `msda_core_train.json` / `.md`.

Variants are interleaved round-robin, the starting one rotated each round, `--repeats` timed rounds after
`--warmup`. Not a test.

    python benchmarks/benchmark_msda_core.py --size 800 --repeats 9
    python benchmarks/benchmark_msda_core.py --measure train --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import sys

import bench_common as common  # noqa: E402
import benchmark_report as report  # noqa: E402
import torch  # noqa: E402
from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention  # noqa: E402

from modeling_ecom2f.ecom2f_msda import (  # noqa: E402
    EcoMultiscaleDeformableAttention,
    init_deformable_attention_,
    multi_scale_deformable_attention_embedding_bag,
    resolve_msda_implementation,
)

STRIDES = (32, 16, 8)
#: (image size, d_model, batch, heads): the stock speed table's sizes (8 heads) and the recipe's parent (64 channels, 4 heads).
DEFAULT_CASES = ["128:64:16:8", "128:256:8:8", "512:256:2:8", "800:256:1:8", "128:64:8:4"]
CORES = ("reference", "embedding_bag", "auto")


def level_shapes(size: int) -> list[tuple[int, int]]:
    return [(math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]


def core_inputs(*, size: int, batch: int, heads: int, head_dim: int, points: int, strides: tuple[int, ...], seed: int):
    shapes = [(math.ceil(size / s), math.ceil(size / s)) for s in strides]
    tokens = sum(h * w for h, w in shapes)
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, tokens, heads, head_dim, generator=g)
    locations = torch.rand(batch, tokens, heads, len(shapes), points, 2, generator=g)
    weights = torch.rand(batch, tokens, heads, len(shapes), points, generator=g)
    weights = weights / weights.sum(dim=(-1, -2), keepdim=True)
    return value, shapes, locations, weights


def measure_core(args: argparse.Namespace) -> None:
    value, shapes, locations, weights = core_inputs(size=args.size, batch=args.batch, heads=8, head_dim=32, points=4,
                                                    strides=STRIDES, seed=args.seed)
    cores = {
        "reference (transformers grid_sample)": lambda: multi_scale_deformable_attention(value, shapes, locations,
                                                                                         weights),
        "embedding_bag (ecom2f fast)": lambda: multi_scale_deformable_attention_embedding_bag(value, shapes, locations,
                                                                                              weights),
    }
    with torch.inference_mode():
        outputs = {name: fn() for name, fn in cores.items()}
        ref, fast = outputs.values()
        max_rel = ((fast - ref).abs().max() / ref.abs().max()).item()
        times = common.interleaved(cores, repeats=args.repeats, warmup=args.warmup)
    names = list(cores)
    rows = {name: report.stats([wall for wall, _ in t]) for name, t in times.items()}
    ref_ms, fast_ms = (rows[n]["median_ms"] for n in names)
    env = common.environment(torch.get_num_threads())
    payload = {"meta": {"env": env, **meta_args(args), "level_shapes": shapes, "queries": value.shape[1]},
               "results": rows, "speedup": ref_ms / fast_ms, "max_relative_difference": max_rel}
    lines = [
        "# Deformable-attention sampling core alone", "",
        f"CPU {env['cpu_model']}, {env['threads']} threads, torch {env['torch']}; {env['date_utc']}. Level shapes "
        f"{shapes} ({args.size}x{args.size} image), {value.shape[1]} queries, batch {args.batch}, 8 heads x 32 "
        f"channels, 4 points; {args.repeats} timed runs after {args.warmup} warm-up, interleaved.", "",
        "| core | median ms (IQR) | min ms |", "|---|---|---|",
        *[f"| {n} | {r['median_ms']:.1f} ({r['iqr_ms']:.1f}) | {r['min_ms']:.1f} |" for n, r in rows.items()],
        "", f"Speed-up of the fused core: {ref_ms / fast_ms:.2f}x; max relative output difference {max_rel:.1e}.",
    ]
    write(args, "msda_core", payload, lines)


def _module_case(case: str, seed: int):
    size, d_model, batch, heads = (int(v) for v in case.split(":"))
    shapes = level_shapes(size)
    tokens = sum(h * w for h, w in shapes)
    torch.manual_seed(seed)
    module = EcoMultiscaleDeformableAttention(embed_dim=d_model, num_heads=heads, n_levels=len(shapes), n_points=4,
                                              implementation="reference")
    init_deformable_attention_(module)
    with torch.no_grad():  # offsets that reach a few pixels around each token, as a trained model's do
        module.sampling_offsets.weight.normal_(0.0, 0.02)
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, tokens, d_model, generator=g)
    reference_points = torch.rand(batch, tokens, len(shapes), 2, generator=g)
    probe = torch.randn(batch, tokens, d_model, generator=g)  # loss = <output, probe>
    return (size, d_model, batch, heads), module, shapes, hidden, reference_points, probe


def measure_train(args: argparse.Namespace) -> None:
    rows, checks = [], {}
    for case in args.cases:
        (size, d_model, batch, heads), module, shapes, hidden, reference_points, probe = _module_case(case, args.seed)
        x = hidden.clone().requires_grad_(True)

        def call(core: str, backward: bool):
            module.implementation = core
            module.zero_grad(set_to_none=True)
            x.grad = None
            with torch.set_grad_enabled(backward):  # forward alone: inference, no graph
                out, _ = module(hidden_states=x, encoder_hidden_states=x, reference_points=reference_points,
                                spatial_shapes_list=shapes)
            if backward:
                (out * probe).sum().backward()
            return out

        grads = {}
        for core in ("reference", "embedding_bag"):
            call(core, True)
            grads[core] = [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]
        checks[case] = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                           for a, b in zip(grads["embedding_bag"], grads["reference"]))
        runs = {(core, backward): (lambda c=core, b=backward: call(c, b)) for core in CORES for backward in (False, True)}
        times = common.interleaved(runs, repeats=args.repeats, warmup=args.warmup,
                                   after_round=lambda r, t: print(f"[{case}] round {r + 1}: " + " ".join(
                                       f"{c}{'+bwd' if b else ''}={v[0]:.0f}" for (c, b), v in t.items()), flush=True))
        used = resolve_msda_implementation("auto", torch.device("cpu"), head_dim=d_model // heads, needs_grad=True)
        for (core, backward), t in times.items():
            rows.append({"case": case, "size": size, "d_model": d_model, "batch": batch, "heads": heads,
                         "head_dim": d_model // heads, "core": core, "auto_training_core": used,
                         "pass": "forward + backward" if backward else "forward",
                         "wall": report.stats([w for w, _ in t]), "cpu": report.stats([c for _, c in t])})
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["pass"] == row["pass"] and r["core"] == "reference")
        row["speedup_vs_reference"] = base["wall"]["median_ms"] / row["wall"]["median_ms"]
    env = common.environment(torch.get_num_threads())
    payload = {"meta": {"env": env, **meta_args(args)}, "results": rows, "max_relative_gradient_difference": checks}
    lines = [
        "# Deformable attention module alone: forward and forward + backward, per core", "",
        f"CPU {env['cpu_model']}, {env['threads']} thread(s), torch {env['torch']}; {env['date_utc']}. "
        f"`EcoMultiscaleDeformableAttention` (3 levels at strides 32/16/8, 4 points, every token a query), the same "
        f"weights and inputs for every core; {args.repeats} timed rounds after {args.warmup} warm-up, the "
        f"{len(CORES) * 2} variants of a case interleaved. Wall ms, median (IQR); speed-up = reference / core. "
        f"`auto` is what the model runs on CPU (for training it picks by channels per head).", "",
        "| image, d_model, batch, heads | pass | reference ms | embedding_bag ms | speed-up | auto ms (core) | "
        "speed-up |", "|---|---|---|---|---|---|---|",
    ]
    for case in args.cases:
        for pass_ in ("forward", "forward + backward"):
            by = {r["core"]: r for r in rows if r["case"] == case and r["pass"] == pass_}
            auto_core = by["auto"]["auto_training_core"] if pass_ != "forward" else "embedding_bag"
            s, d, b, h = case.split(":")
            lines.append(
                f"| {s} px, {d}, {b}, {h} | {pass_} | {_cell(by['reference'])} | {_cell(by['embedding_bag'])} | "
                f"{by['embedding_bag']['speedup_vs_reference']:.2f} | {_cell(by['auto'])} ({auto_core}) | "
                f"{by['auto']['speedup_vs_reference']:.2f} |")
    lines += ["", "Largest relative gradient difference between the cores (input and every parameter): "
              + ", ".join(f"{c}: {v:.1e}" for c, v in checks.items()) + "."]
    write(args, "msda_core_train", payload, lines)


def _cell(row: dict) -> str:
    return f"{row['wall']['median_ms']:.1f} ({row['wall']['iqr_ms']:.1f})"


def meta_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "out"} | {"command": " ".join(["benchmarks/benchmark_msda_core.py",
                                                                                      *sys.argv[1:]])}


def write(args: argparse.Namespace, stem: str, payload: dict, lines: list[str]) -> None:
    common.write_results(args.out, stem, payload, lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=("core", "train"), default="core")
    parser.add_argument("--size", type=int, default=800, help="core: image size")
    parser.add_argument("--batch", type=int, default=1, help="core: batch")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="train: size:d_model:batch:heads entries")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. what else ran on the machine)")
    common.add_timing_arguments(parser, repeats=9, warmup=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    (measure_train if args.measure == "train" else measure_core)(args)


if __name__ == "__main__":
    main()
