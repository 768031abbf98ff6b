"""Latency and GFLOPs of EcoMask2Former at every encoder exit depth against stock transformers Mask2Former.

A Swin-T-sized model (random weights, `--seed`), Mask2Former defaults otherwise (6 encoder layers, 10 decoder layers,
100 queries, 133 labels). The stock `transformers.Mask2FormerForUniversalSegmentation` gets the SAME weights (the
ecom2f state dict without the gate). Batch 1, `model.eval()`, `torch.inference_mode()`. The ecom2f model is timed
with each deformable-attention sampling core in `--msda` (`reference` = transformers' grid_sample core, the one stock
runs, so depth alone differs; `embedding_bag` = the fused CPU core that `auto` picks on CPU). All variants are
interleaved round-robin, the starting variant rotated every round, so machine drift hits all of them equally.
GFLOPs: `modeling_ecom2f.ecom2f_flops.count_gflops` (fvcore convention: 1 multiply-add = 1 FLOP, deformable sampling
not counted, hence the same for both cores).

    python benchmarks/benchmark_depth.py --sizes 512 800 --repeats 7 --warmup 2 --out benchmarks/results

Writes `depth_latency.json`, `.md` and `.png` under `--out` (`depth_latency_<tag>.*` with `--tag`). Not a test.
Each run's process CPU time is recorded next to its wall time: on a shared machine wall time includes time the cores
spent on other processes (the Markdown reports a CPU/wall contention check); with `--threads 1` the CPU time is the
model's own work, with more threads it also includes OpenMP spin-waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import bench_common as common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.ecom2f_flops import count_gflops, deformable_encoder_tokens, deformable_layer_gflops  # noqa: E402

STOCK = "stock"
ECO = "ecom2f"
Variant = tuple[str, str, int]  # (model, sampling core, encoder depth)


def set_msda_core(eco: EcoMask2FormerForUniversalSegmentation, core: str) -> None:
    """Switch every deformable attention of the ecom2f encoder to `core` (its `implementation` attribute)."""
    modules = [m for m in eco.model.pixel_level_module.decoder.encoder.modules() if hasattr(m, "implementation")]
    if not modules:
        raise RuntimeError("the ecom2f encoder exposes no `implementation` attribute to select the MSDA core")
    for module in modules:
        module.implementation = core


def run_variant(eco, stock, variant: Variant, x: torch.Tensor):
    """One forward of `variant`; the ecom2f sampling core is selected first (a few attribute writes)."""
    name, core, depth = variant
    if name == STOCK:
        return stock(pixel_values=x)
    set_msda_core(eco, core)
    return eco(pixel_values=x, num_encoder_layers=depth)


def benchmark_size(eco, stock, *, size: int, cores: list[str], repeats: int, warmup: int, seed: int) -> list[dict]:
    """All variants at one input size: GFLOPs once per depth, then interleaved warm-up and timed repetitions."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    depths = list(eco.config.exit_layers)
    base: Variant = (STOCK, "reference", stock.config.encoder_layers)
    variants = [base] + [(ECO, core, k) for core in cores for k in depths]

    diffs = {}
    with torch.inference_mode():  # sanity: full depth gives the stock outputs on the same weights
        reference = run_variant(eco, stock, base, x).masks_queries_logits
        for core in cores:
            out = run_variant(eco, stock, (ECO, core, depths[-1]), x).masks_queries_logits
            diffs[core] = (out - reference).abs().max().item()
    print(f"[{size}] max |ecom2f@{depths[-1]} - stock| mask logits per core: {diffs}", flush=True)

    set_msda_core(eco, cores[0])
    gflops = {STOCK: count_gflops(stock, x)} | {k: count_gflops(eco, x, num_encoder_layers=k) for k in depths}
    for key, g in gflops.items():
        print(f"[{size}] GFLOPs {key}: total {g.total:.2f}, pixel decoder {g.pixel_decoder:.2f}, "
              f"encoder {g.encoder:.2f}", flush=True)
    gate = count_gflops(eco, x, num_encoder_layers=depths[-1], output_gate_logits=True).gate

    def progress(rep: int, this_round: dict) -> None:
        print(f"[{size}] {'warm-up' if rep < warmup else 'timed'} round {rep + 1}/{warmup + repeats} (ms): "
              + " ".join(f"{n}[{c[:3]}]@{d}={this_round[(n, c, d)][0]:.0f}" for n, c, d in variants)
              + f" | load {os.getloadavg()[0]:.2f}", flush=True)

    load_before = os.getloadavg()
    with torch.inference_mode():
        runs = {variant: (lambda variant=variant: run_variant(eco, stock, variant, x)) for variant in variants}
        times = common.interleaved(runs, repeats=repeats, warmup=warmup, after_round=progress)

    stock_stats = common.latency_stats(times[base])
    per_layer = deformable_layer_gflops(num_tokens=deformable_encoder_tokens(height=size, width=size))
    rows = []
    for variant in variants:
        name, core, depth = variant
        g = gflops[STOCK] if name == STOCK else gflops[depth]
        stats = common.latency_stats(times[variant])
        rows.append({
            "size": size, "variant": name, "msda_core": core, "depth": depth, "gflops": g.as_dict(),
            "latency": stats, "latency_ratio_to_stock": stats["median_ms"] / stock_stats["median_ms"],
            "min_latency_ratio_to_stock": stats["min_ms"] / stock_stats["min_ms"],
            "cpu_time_ratio_to_stock": stats["cpu_median_ms"] / stock_stats["cpu_median_ms"],
            "gflops_ratio_to_stock": g.total / gflops[STOCK].total,
            "analytic_encoder_layer_gflops": per_layer, "gate_gflops_when_run": gate,
            "max_abs_diff_full_depth_vs_stock": diffs.get(core) if name == ECO else 0.0,
            "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
        })
    return rows


def acceptance(rows: list[dict]) -> dict:
    """The acceptance figures per size and sampling core, reported as measured (nothing is tuned to meet them)."""
    out = {}
    for size in sorted({r["size"] for r in rows}):
        for core in sorted({r["msda_core"] for r in rows if r["variant"] == ECO}):
            eco = {r["depth"]: r for r in rows if r["size"] == size and r["variant"] == ECO and r["msda_core"] == core}
            full, shallow = eco[max(eco)], eco[min(eco)]
            totals = [eco[k]["gflops"]["total"] for k in sorted(eco)]
            steps = [b - a for a, b in zip(totals, totals[1:])]
            layer = full["analytic_encoder_layer_gflops"]
            out[f"{size}/{core}"] = {
                "full_depth_latency_ratio": full["latency_ratio_to_stock"],
                "full_depth_within_3pct": abs(full["latency_ratio_to_stock"] - 1) <= 0.03,
                "full_depth_min_latency_ratio": full["min_latency_ratio_to_stock"],
                "full_depth_cpu_time_ratio": full["cpu_time_ratio_to_stock"],
                "shallowest_depth": min(eco),
                "shallowest_latency_ratio": shallow["latency_ratio_to_stock"],
                "shallowest_at_most_0.60": shallow["latency_ratio_to_stock"] <= 0.60,
                "shallowest_min_latency_ratio": shallow["min_latency_ratio_to_stock"],
                "shallowest_cpu_time_ratio": shallow["cpu_time_ratio_to_stock"],
                "gflops_steps": steps,
                "analytic_layer_gflops": layer,
                "steps_equal_one_layer": all(abs(s - layer) <= 1e-6 * layer for s in steps),
            }
    return out


def write_markdown(path: Path, meta: dict, rows: list[dict], checks: dict) -> None:
    env = meta["env"]
    lines = [
        "# EcoMask2Former exit depth vs stock Mask2Former (Swin-T, random weights)", "",
        f"CPU: {env['cpu_model']}, {env['threads']} threads; torch {env['torch']}, transformers "
        f"{env['transformers']}. Batch 1, eval, `torch.inference_mode()`; {meta['repeats']} timed runs after "
        f"{meta['warmup']} warm-up rounds, variants interleaved round-robin. GFLOPs: fvcore convention (1 multiply-add "
        "= 1 FLOP, deformable sampling not counted). MSDA core: `reference` = transformers' grid_sample (as stock), "
        "`embedding_bag` = the fused CPU core.", "",
        "| size | variant | MSDA core | depth | GFLOPs total | pixel decoder | encoder layers | latency median ms "
        "(IQR) | latency / stock (median) | (min) | CPU time / stock | GFLOPs / stock |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, lat = r["gflops"], r["latency"]
        lines.append(
            f"| {r['size']} | {r['variant']} | {r['msda_core']} | {r['depth']} | {g['total']:.2f} | "
            f"{g['pixel_decoder']:.2f} | {g['encoder']:.2f} | {lat['median_ms']:.0f} ({lat['iqr_ms']:.0f}) | "
            f"{r['latency_ratio_to_stock']:.3f} | {r['min_latency_ratio_to_stock']:.3f} | "
            f"{r['cpu_time_ratio_to_stock']:.3f} | {r['gflops_ratio_to_stock']:.3f} |"
        )
    ratios = [c / w for r in rows for w, c in zip(r["latency"]["runs_ms"], r["latency"]["runs_cpu_ms"])]
    loads = [r[k][0] for r in rows for k in ("loadavg_1_5_15_before", "loadavg_1_5_15_after")]
    lines += [
        "", f"Contention check: median process-CPU / wall time over all timed runs = {np.median(ratios):.2f} (about "
        f"{env['threads']} when the cores were ours alone); 1-min load average {min(loads):.2f}-{max(loads):.2f} on "
        f"{env['os_cpu_count']} cores.", "", "Acceptance figures (as measured; latency ratios are medians):", "",
    ]
    for key, c in checks.items():
        lines.append(
            f"- {key}: full depth / stock = {c['full_depth_latency_ratio']:.3f} (within 3%: "
            f"{c['full_depth_within_3pct']}; min {c['full_depth_min_latency_ratio']:.3f}, CPU "
            f"{c['full_depth_cpu_time_ratio']:.3f}); depth {c['shallowest_depth']} / stock = "
            f"{c['shallowest_latency_ratio']:.3f} (at most 0.60: {c['shallowest_at_most_0.60']}; min "
            f"{c['shallowest_min_latency_ratio']:.3f}, CPU {c['shallowest_cpu_time_ratio']:.3f}); GFLOPs steps "
            f"{', '.join(f'{s:.3f}' for s in c['gflops_steps'])} vs one layer {c['analytic_layer_gflops']:.3f} "
            f"(equal: {c['steps_equal_one_layer']})"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(2, len(sizes), figsize=(5.5 * len(sizes), 7.5), squeeze=False)
    for col, size in enumerate(sizes):
        stock = next(r for r in rows if r["size"] == size and r["variant"] == STOCK)
        ax = axes[0, col]
        for core in sorted({r["msda_core"] for r in rows if r["variant"] == ECO}):
            eco = sorted((r for r in rows if r["size"] == size and r["variant"] == ECO and r["msda_core"] == core),
                         key=lambda r: r["depth"])
            med = np.array([r["latency"]["median_ms"] for r in eco])
            err = np.array([[m - r["latency"]["q25_ms"], r["latency"]["q75_ms"] - m] for m, r in zip(med, eco)]).T
            ax.errorbar([r["depth"] for r in eco], med, yerr=err, marker="o", capsize=3, label=f"ecom2f, {core}")
        depths = [r["depth"] for r in eco]
        ax.axhline(stock["latency"]["median_ms"], color="k", ls="--", label="stock Mask2Former")
        ax.set(title=f"{size}x{size}: latency (median, IQR)", xlabel="encoder depth", ylabel="ms", xticks=depths,
               ylim=(0, None))
        ax.legend()
        ax = axes[1, col]
        ax.plot(depths, [r["gflops"]["total"] for r in eco], marker="o", label="ecom2f total")
        ax.plot(depths, [r["gflops"]["pixel_decoder"] for r in eco], marker="s", label="ecom2f pixel decoder")
        ax.axhline(stock["gflops"]["total"], color="k", ls="--", label="stock total")
        ax.axhline(stock["gflops"]["pixel_decoder"], color="gray", ls=":", label="stock pixel decoder")
        ax.set(title=f"{size}x{size}: GFLOPs", xlabel="encoder depth", ylabel="GFLOPs", xticks=depths, ylim=(0, None))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    common.add_timing_arguments(parser, repeats=7, warmup=2)
    parser.add_argument("--msda", nargs="+", default=["reference", "embedding_bag"], help="ecom2f sampling cores")
    parser.add_argument("--tag", default="", help="suffix of the output names: depth_latency_<tag>.*")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (median and IQR)")

    torch.set_num_threads(args.threads)
    meta = {"env": common.environment(torch.get_num_threads()), "repeats": args.repeats, "warmup": args.warmup,
            "sizes": args.sizes, "msda_cores": args.msda, "seed": args.seed, "batch_size": 1,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    print(f"threads={torch.get_num_threads()} cpu={meta['env']['cpu_model']} torch={torch.__version__}", flush=True)
    eco, stock = common.build_models(seed=args.seed)
    meta["config"] = {k: getattr(eco.config, k) for k in ("encoder_layers", "decoder_layers", "num_queries",
                                                          "num_labels", "feature_size", "exit_layers")}
    rows = []
    for size in args.sizes:
        rows += benchmark_size(eco, stock, size=size, cores=args.msda, repeats=args.repeats, warmup=args.warmup,
                               seed=args.seed)
    checks = acceptance(rows)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"depth_latency_{args.tag}" if args.tag else "depth_latency"
    payload = {"meta": meta, "results": rows, "acceptance": checks}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    write_markdown(args.out / f"{stem}.md", meta, rows, checks)
    plot(args.out / f"{stem}.png", rows)
    print((args.out / f"{stem}.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
