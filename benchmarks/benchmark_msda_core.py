"""The deformable-attention sampling core alone: transformers' grid_sample reference vs the fused embedding-bag core.

Shapes of the Mask2Former pixel-decoder encoder at `--size` (levels at strides 32, 16, 8 of a square image; 8 heads,
32 channels per head, 4 points; every token is a query), random values, locations and weights (`--seed`). Both cores
get the same inputs; the two are interleaved round-robin, `--repeats` timed runs after `--warmup`. Also reports the
max relative difference of the outputs. Not a test.

    python benchmarks/benchmark_msda_core.py --size 800 --repeats 9

Writes `msda_core.json` and `msda_core.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as common  # noqa: E402
import benchmark_report as report  # noqa: E402
import torch  # noqa: E402
from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention  # noqa: E402

from modeling_ecom2f.ecom2f_msda import multi_scale_deformable_attention_embedding_bag  # noqa: E402


def core_inputs(*, size: int, batch: int, heads: int, head_dim: int, points: int, strides: tuple[int, ...], seed: int):
    shapes = [(math.ceil(size / s), math.ceil(size / s)) for s in strides]
    tokens = sum(h * w for h, w in shapes)
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, tokens, heads, head_dim, generator=g)
    locations = torch.rand(batch, tokens, heads, len(shapes), points, 2, generator=g)
    weights = torch.rand(batch, tokens, heads, len(shapes), points, generator=g)
    weights = weights / weights.sum(dim=(-1, -2), keepdim=True)
    return value, shapes, locations, weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--batch", type=int, default=1)
    common.add_timing_arguments(parser, repeats=9, warmup=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    value, shapes, locations, weights = core_inputs(size=args.size, batch=args.batch, heads=8, head_dim=32, points=4,
                                                    strides=(32, 16, 8), seed=args.seed)
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
    payload = {"meta": {"env": env, **{k: v for k, v in vars(args).items() if k != "out"}, "level_shapes": shapes,
                        "queries": value.shape[1]},
               "results": rows, "speedup": ref_ms / fast_ms, "max_relative_difference": max_rel}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "msda_core.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Deformable-attention sampling core alone", "",
        f"CPU {env['cpu_model']}, {env['threads']} threads, torch {env['torch']}; {env['date_utc']}. Level shapes "
        f"{shapes} ({args.size}x{args.size} image), {value.shape[1]} queries, batch {args.batch}, 8 heads x 32 "
        f"channels, 4 points; {args.repeats} timed runs after {args.warmup} warm-up, interleaved.", "",
        "| core | median ms (IQR) | min ms |", "|---|---|---|",
        *[f"| {n} | {r['median_ms']:.1f} ({r['iqr_ms']:.1f}) | {r['min_ms']:.1f} |" for n, r in rows.items()],
        "", f"Speed-up of the fused core: {ref_ms / fast_ms:.2f}x; max relative output difference {max_rel:.1e}.",
    ]
    (args.out / "msda_core.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
