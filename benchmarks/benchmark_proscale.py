"""GFLOPs and latency of PRO-SCALE token-length configurations and the combined (gated-depth) model vs stock.

Swin-T-sized models with random weights (`bench_common.swin_t_kwargs`); each PRO-SCALE configuration is its own
random-init model (FLOPs and latency do not depend on the weight values). GFLOPs (fvcore convention, deformable
sampling not counted) at `--flops_size` for (1,1,1), (2,2,2), (1,1,4), (3,3,3), each without TRC/LPE, with TRC,
with LPE, and with both, next to the analytic pixel-decoder reductions (`ANALYTIC_REDUCTION`, PRO-SCALE
arXiv 2404.14657); and for the combined model ((3,3,3)+TRC+LPE with early exit) at every exit. Latency at `--latency_size`, batch 1, interleaved
round-robin like benchmark_depth.py: stock, (3,3,3) plain, (3,3,3)+TRC+LPE, and the combined model at every exit,
all with the default (`auto`) deformable-attention core, plus (3,3,3)+TRC+LPE with the reference core.

    python benchmarks/benchmark_proscale.py --flops_size 1024 --latency_size 800 --repeats 5

Writes `proscale.json` and `proscale.md` under `--out`. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import bench_common as common  # noqa: E402
import torch  # noqa: E402
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation  # noqa: E402

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.ecom2f_flops import count_gflops  # noqa: E402

STAGES = [(1, 1, 1), (2, 2, 2), (1, 1, 4), (3, 3, 3)]
OPTIONS = {"plain": {}, "TRC": {"token_recalibration": True}, "LPE": {"light_pixel_embedding": True},
           "TRC+LPE": {"token_recalibration": True, "light_pixel_embedding": True}}
# Analytic pixel-decoder reduction vs stock (with LPE, without LPE), Swin-T at 1024x1024, derived from the fvcore
# per-layer cost of `ecom2f_flops.deformable_layer_gflops`; PRO-SCALE (arXiv 2404.14657) and its README
# (abhishekaich27/proscale-pytorch) claim a 50-75% encoder reduction, which (3,3,3)..(1,1,1) with LPE span.
ANALYTIC_REDUCTION = {(1, 1, 1): (-80.4, -52.9), (2, 2, 2): (-66.1, -38.6), (1, 1, 4): (-46.8, -19.3),
                      (3, 3, 3): (-51.9, -24.4)}


def proscale_model(stages: tuple[int, ...], options: dict, *, seed: int, **extra) -> EcoMask2FormerForUniversalSegmentation:
    torch.manual_seed(seed)
    config = EcoMask2FormerConfig(
        **common.swin_t_kwargs(), encoder_layers=sum(stages), token_scaling_layers=list(stages), **options, **extra
    )
    return EcoMask2FormerForUniversalSegmentation(config).eval()


def flops_rows(*, size: int, seed: int) -> list[dict]:
    x = torch.randn(1, 3, size, size)
    torch.manual_seed(seed)
    stock = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**common.swin_t_kwargs())).eval()
    base = count_gflops(stock, x)
    rows = [{"model": "stock Mask2Former", "stages": None, "options": "-", "depth": 6, "gflops": base.as_dict()}]
    for stages in STAGES:
        for name, options in OPTIONS.items():
            model = proscale_model(stages, options, seed=seed)
            g = count_gflops(model, x, num_encoder_layers=sum(stages))
            rows.append({"model": "PRO-SCALE", "stages": stages, "options": name, "depth": sum(stages),
                         "gflops": g.as_dict()})
            print(f"[flops {size}] {stages} {name}: pixel decoder {g.pixel_decoder:.2f}, total {g.total:.2f}", flush=True)
    combined = proscale_model((3, 3, 3), OPTIONS["TRC+LPE"], seed=seed)
    for depth in combined.config.exit_layers:
        g = count_gflops(combined, x, num_encoder_layers=depth)
        rows.append({"model": "combined", "stages": (3, 3, 3), "options": "TRC+LPE", "depth": depth, "gflops": g.as_dict()})
    gate = count_gflops(combined, x, num_encoder_layers=9, output_gate_logits=True).gate
    for row in rows:
        g = row["gflops"]
        row["pixel_decoder_ratio"] = g["pixel_decoder"] / base.pixel_decoder
        row["total_ratio"] = g["total"] / base.total
        if row["model"] == "PRO-SCALE" and row["options"] in ("LPE", "plain"):
            row["analytic_pixel_decoder_change_pct"] = ANALYTIC_REDUCTION[row["stages"]][row["options"] == "plain"]
    rows[-1]["gate_gflops_when_run"] = gate
    return rows


def latency_rows(*, size: int, seed: int, repeats: int, warmup: int) -> list[dict]:
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    stock = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**common.swin_t_kwargs())).eval()
    plain = proscale_model((3, 3, 3), {}, seed=seed)
    full = proscale_model((3, 3, 3), OPTIONS["TRC+LPE"], seed=seed)
    reference = proscale_model((3, 3, 3), OPTIONS["TRC+LPE"], seed=seed, deformable_attention_implementation="reference")
    variants = {"stock Mask2Former": lambda: stock(pixel_values=x),
                "(3,3,3)": lambda: plain(pixel_values=x),
                "(3,3,3)+TRC+LPE": lambda: full(pixel_values=x),
                "(3,3,3)+TRC+LPE, reference MSDA": lambda: reference(pixel_values=x)}
    for depth in full.config.exit_layers:
        variants[f"combined exit {depth}"] = lambda depth=depth: full(pixel_values=x, num_encoder_layers=depth)
    def progress(rep: int, _: dict) -> None:
        print(f"[latency {size}] round {rep + 1}/{warmup + repeats} load {os.getloadavg()[0]:.2f}", flush=True)

    with torch.inference_mode():
        times = common.interleaved(variants, repeats=repeats, warmup=warmup, after_round=progress)
    stock_median = common.latency_stats(times["stock Mask2Former"])["median_ms"]
    rows = []
    for name in variants:
        stats = common.latency_stats(times[name])
        rows.append({"variant": name, "latency": stats, "latency_ratio_to_stock": stats["median_ms"] / stock_median})
    return rows


def write_markdown(path: Path, meta: dict, flops: list[dict], latency: list[dict]) -> None:
    env = meta["env"]
    lines = [
        "# PRO-SCALE and the combined model vs stock Mask2Former (Swin-T, random weights)", "",
        f"CPU: {env['cpu_model']}, {env['threads']} threads; torch {env['torch']}. GFLOPs at "
        f"{meta['flops_size']}x{meta['flops_size']} (fvcore convention); "
        + (
            f"latency at {meta['latency_size']}x{meta['latency_size']}, batch 1, {meta['repeats']} timed rounds "
            f"after {meta['warmup']} warm-up, interleaved."
            if latency
            else "latency not measured in this run (--skip_latency)."
        ),
        "", "## GFLOPs", "",
        "| model | stages | options | depth | pixel decoder | encoder layers | total | pixel decoder / stock | "
        "total / stock | analytic pixel-decoder change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in flops:
        g = r["gflops"]
        analytic = r.get("analytic_pixel_decoder_change_pct")
        lines.append(
            f"| {r['model']} | {r['stages'] or '-'} | {r['options']} | {r['depth']} | {g['pixel_decoder']:.2f} | "
            f"{g['encoder']:.2f} | {g['total']:.2f} | {r['pixel_decoder_ratio']:.3f} | {r['total_ratio']:.3f} | "
            f"{'' if analytic is None else f'{analytic:+.1f}%'} |"
        )
    if latency:
        lines += ["", "## Latency", "", "| variant | median ms (IQR) | latency / stock |", "|---|---|---|"]
    for r in latency:
        lat = r["latency"]
        lines.append(f"| {r['variant']} | {lat['median_ms']:.0f} ({lat['iqr_ms']:.0f}) | {r['latency_ratio_to_stock']:.3f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flops_size", type=int, default=1024)
    parser.add_argument("--latency_size", type=int, default=800)
    common.add_timing_arguments(parser, repeats=5, warmup=1)
    parser.add_argument("--skip_latency", action="store_true", help="GFLOPs only (they do not depend on machine load)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"env": common.environment(torch.get_num_threads()), **{k: v for k, v in vars(args).items() if k != "out"}}
    flops = flops_rows(size=args.flops_size, seed=args.seed)
    latency = [] if args.skip_latency else latency_rows(
        size=args.latency_size, seed=args.seed, repeats=args.repeats, warmup=args.warmup
    )
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "flops": flops, "latency": latency}
    (args.out / "proscale.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    write_markdown(args.out / "proscale.md", meta, flops, latency)
    print((args.out / "proscale.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
