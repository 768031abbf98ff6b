"""Statistics, acceptance figures, Markdown table and plot for `benchmark.py` (kept apart from the measuring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def median(values: list[float]) -> float:
    return float(np.median(values))


def stats(values: list[float]) -> dict:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return {"median_ms": float(q50), "q25_ms": float(q25), "q75_ms": float(q75), "iqr_ms": float(q75 - q25),
            "min_ms": float(min(values)), "max_ms": float(max(values)), "runs_ms": [round(v, 2) for v in values]}


def add_ratios(rows: list[dict], gflops: dict) -> None:
    """Latency and encoder-time ratios to the stock row of the same (size, batch, mode); GFLOPs per image."""
    stock = {(r["size"], r["batch"], r["mode"]): r for r in rows if r["family"] == "stock"}
    for r in rows:
        g = gflops[r["size"]][r["variant"]]
        r["gflops_per_image"] = g
        r["gflops_ratio_to_stock"] = g["total"] / gflops[r["size"]]["stock"]["total"]
        base = stock.get((r["size"], r["batch"], r["mode"]))
        r["latency_ratio_to_stock"] = r["latency"]["median_ms"] / base["latency"]["median_ms"] if base else None
        r["speedup_vs_stock"] = base["latency"]["median_ms"] / r["latency"]["median_ms"] if base else None
        enc, base_enc = r.get("encoder_latency"), base and base.get("encoder_latency")
        r["encoder_speedup_vs_stock"] = base_enc["median_ms"] / enc["median_ms"] if enc and base_enc else None


def acceptance(rows: list[dict], checks: dict) -> dict:
    """The speed figures, as measured: full-depth ecom2f (fast core) vs stock at batch 1, eager, each size."""
    out = {}
    for r in rows:
        if r["variant"] == "ecom2f@6" and r["batch"] == 1 and r["mode"] == "eager":
            diff = checks[r["size"]]["fast"]
            out[str(r["size"])] = {
                "speedup": r["speedup_vs_stock"], "speedup_at_least_1.3": r["speedup_vs_stock"] >= 1.3,
                "encoder_speedup": r["encoder_speedup_vs_stock"],
                "encoder_speedup_at_least_2": r["encoder_speedup_vs_stock"] >= 2.0,
                "max_abs_diff": max(diff.values()), "outputs_within_1e-4": max(diff.values()) <= 1e-4,
            }
    return out


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def write_markdown(path: Path, payload: dict) -> None:
    meta, env = payload["meta"], payload["meta"]["env"]
    device = meta["gpu"] or f"CPU {env['cpu_model']}, {env['threads']} threads"
    lines = [
        "# ecom2f vs stock transformers Mask2Former: GFLOPs, latency, memory (Swin-T, random weights)", "",
        f"Device: {device}; torch {env['torch']}, transformers {env['transformers']}; {env['date_utc']}. "
        f"Command: `{meta['command']}` ({meta['wall_s'] / 60:.0f} min). {meta['repeats']} timed runs after "
        f"{meta['warmup']} warm-up round(s), eager variants interleaved round-robin (compiled ones timed alone after their compile). GFLOPs per image, fvcore convention "
        "(1 multiply-add = 1 FLOP, deformable sampling not counted). `fast` = the `auto` core (fused embedding-bag "
        "sampling on CPU); `[reference]` = transformers' grid_sample core, the one stock runs. Encoder = the "
        "deformable encoder module alone. `[stock decoder]` = transformers' masked cross-attention and mask predictor "
        "instead of ecom2f's stand-ins (`ecom2f_decoder`). Peak MiB = peak live tensor memory of one forward, weights "
        "included (MemTracker on CPU, allocator on CUDA). " + (meta.get("note") or ""), "",
        "## Acceptance (full-depth ecom2f, fast core, vs stock; batch 1, eager)", "",
    ]
    for size, a in payload["acceptance"].items():
        lines.append(f"- {size}x{size}: {a['speedup']:.2f}x faster end to end (>= 1.3: {a['speedup_at_least_1.3']}), "
                     f"encoder {a['encoder_speedup']:.2f}x faster (>= 2: {a['encoder_speedup_at_least_2']}), max abs "
                     f"output difference {a['max_abs_diff']:.2e} (<= 1e-4: {a['outputs_within_1e-4']})")
    for size, info in payload["compile"].items():
        for name, c in info.items():
            status = f"compiled in {c['compile_s']:.0f} s" if c["error"] is None else f"failed: {c['error']}"
            lines.append(f"- torch.compile {name} at {size}: {status}")
    lines += ["", "## Latency", "",
              "| size | batch | mode | variant | depth | latency median ms (IQR) | speed-up vs stock | encoder ms "
              "| encoder speed-up | peak MiB | GFLOPs/img total | pixel decoder | encoder | GFLOPs / stock |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        lat, enc, g = r["latency"], r["encoder_latency"], r["gflops_per_image"]
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['mode']} | {r['variant']} | {r['depth']} | {lat['median_ms']:.0f} "
            f"({lat['iqr_ms']:.0f}) | {_fmt(r['speedup_vs_stock'])} | {_fmt(enc and enc['median_ms'], '.0f')} | "
            f"{_fmt(r['encoder_speedup_vs_stock'])} | {_fmt(r['peak_memory_mib'], '.0f')} | {g['total']:.2f} | "
            f"{g['pixel_decoder']:.2f} | {g['encoder']:.2f} | {r['gflops_ratio_to_stock']:.3f} |")
    ratios = [r["cpu_median_ms"] / r["latency"]["median_ms"] for r in payload["results"] if r["mode"] == "eager"]
    lines += ["", f"Contention check: median CPU time / wall time over eager rows = {median(ratios):.2f} "
              f"(about {env['threads']} when the cores are the benchmark's alone)."]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, payload: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in payload["results"] if r["batch"] == 1 and r["mode"] == "eager"]
    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(2, len(sizes), figsize=(6 * len(sizes), 8), squeeze=False)
    for col, size in enumerate(sizes):
        here = [r for r in rows if r["size"] == size]
        stock = next(r for r in here if r["family"] == "stock")
        for row_index, (key, ylabel) in enumerate((("latency", "latency ms (median, IQR)"), ("gflops", "GFLOPs"))):
            ax = axes[row_index, col]
            for family, marker in (("ecom2f", "o"), ("combined", "s"), ("proscale", "^")):
                pts = sorted((r for r in here if r["family"] == family and r["core"] == "fast"
                              and r.get("decoder", "fast") == "fast"), key=lambda r: r["depth"])
                if not pts:
                    continue
                depth = [r["depth"] for r in pts]
                if key == "latency":
                    med = np.array([r["latency"]["median_ms"] for r in pts])
                    err = np.array([[m - r["latency"]["q25_ms"], r["latency"]["q75_ms"] - m] for m, r in zip(med, pts)]).T
                    ax.errorbar(depth, med, yerr=err, marker=marker, capsize=3, ls="-" if family != "proscale" else "",
                                label=f"{family} (fast core)")
                else:
                    ax.plot(depth, [r["gflops_per_image"]["total"] for r in pts], marker=marker,
                            ls="-" if family != "proscale" else "", label=f"{family} total")
            for r in here:
                if (r["core"] == "reference" and r["family"] != "stock" and key == "latency"
                        and r.get("decoder", "fast") == "fast"):
                    ax.plot([r["depth"]], [r["latency"]["median_ms"]], "kx", ms=9)
            ref = stock["latency"]["median_ms"] if key == "latency" else stock["gflops_per_image"]["total"]
            ax.axhline(ref, color="k", ls="--", label="stock Mask2Former")
            ax.set(title=f"{size}x{size}, batch 1", xlabel="encoder layers run", ylabel=ylabel, ylim=(0, None))
            ax.legend(fontsize=8, title="x = reference core" if key == "latency" else None, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
