"""The Markdown table, checks, budget recommendations and plot of `accuracy_study.py` (from its JSON rows)."""

from __future__ import annotations

from pathlib import Path

from modeling_ecom2f.recipe.routing import frontier_quality

#: Pixel-decoder budgets (fraction of stock's GFLOPs, Swin-T at 1024x1024) of the recommendation table.
BUDGETS = (1.0, 0.75, 0.6, 0.5, 0.4)
REFERENCE_PROSCALE = "proscale_333_trc_lpe"


def add_frontier_gains(rows: list[dict]) -> None:
    """Give every gate row its PQ gain over the upper concave envelope of its own model's fixed exits at the same
    mean pixel-decoder GFLOPs of the trained config (random mixing of fixed exits reaches that envelope)."""
    for row in rows:
        if row["depth"] is not None:
            continue
        fixed = [(r["trained_pixel_decoder_gflops_ratio"], r["pq"]) for r in rows
                 if r["name"] == row["name"] and r["depth"] is not None]
        frontier = frontier_quality(fixed, row["trained_pixel_decoder_gflops_ratio"])
        row["frontier_pq"] = round(frontier, 2)
        row["gain_over_frontier"] = round(row["pq"] - frontier, 2)
        if row.get("random_routing_pq") is not None:
            row["gain_over_random_routing"] = round(row["pq"] - row["random_routing_pq"], 2)


def checks(rows: list[dict]) -> dict:
    """The issue's acceptance checks, as measured."""
    full = {r["name"]: r for r in rows if r["depth"] is not None and r["depth"] == max(
        x["depth"] for x in rows if x["name"] == r["name"] and x["depth"] is not None)}
    out = {}
    stock = full.get("stock")
    ref = full.get(REFERENCE_PROSCALE)
    if stock and ref:
        delta = round(ref["pq"] - stock["pq"], 2)
        out["proscale_vs_stock"] = {
            "pq_difference": delta, "pixel_decoder_gflops_ratio": ref["pixel_decoder_gflops_ratio"],
            "target": "PQ within 1.0 of stock at <= 0.5x its pixel-decoder GFLOPs",
            "met": delta >= -1.0 and ref["pixel_decoder_gflops_ratio"] <= 0.5}
    gates = [r for r in rows if r["family"] == "combined" and r["depth"] is None]
    if gates:
        best = max(gates, key=lambda r: r["gain_over_frontier"])
        out["combined_gate_vs_frontier"] = {
            "best_gain_over_frontier": best["gain_over_frontier"], "mode": best["mode"],
            "gains": {r["mode"]: r["gain_over_frontier"] for r in gates},
            "target": "the combined model's gate above PRO-SCALE's own fixed-depth frontier",
            "met": best["gain_over_frontier"] > 0}
    return out


def recommendations(rows: list[dict]) -> list[dict]:
    """For each pixel-decoder budget, the measured row with the best PQ that fits it."""
    out = []
    for budget in BUDGETS:
        fitting = [r for r in rows if r["pixel_decoder_gflops_ratio"] <= budget + 1e-9]
        if fitting:
            best = max(fitting, key=lambda r: r["pq"])
            out.append({"budget": budget, "name": best["name"], "mode": best["mode"], "pq": best["pq"],
                        "pixel_decoder_gflops_ratio": best["pixel_decoder_gflops_ratio"],
                        "latency_ratio": best["latency_ratio"]})
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _setting(row: dict) -> str:
    if row["depth"] is not None:
        return f"depth {row['depth']}"
    return f"gate beta {row['beta']:g}" + (" (calibrated)" if row.get("calibrated") else "")


def write_markdown(path: Path, result: dict) -> None:
    rows = result["variants"]
    setup = result["setup"]
    preset = setup["preset"]
    lines = [
        "# Accuracy study: stock Mask2Former, ECO-M2F, PRO-SCALE and the combined model on the same data",
        "",
        f"Command: `{result['command']}`; wall time {result['wall_seconds'] / 60:.1f} min on "
        f"{setup['machine']['cpu_count']} CPU cores ({setup['machine']['platform']}, torch {setup['machine']['torch']}).",
        f"Every variant fine-tunes the same parent for {preset['steps']} steps (batch {preset['batch_size']}, AdamW "
        f"lr {preset['learning_rate']:g}, seed {setup['seed']}) on {preset['train_images']} training images of the "
        f"synthetic depth benchmark ({preset['image_size']}x{preset['image_size']}); validation: "
        f"{result['validation_images']} images. GFLOPs ratios: the same variant built on Swin-T at "
        f"{preset['flops_size']}x{preset['flops_size']} against stock Mask2Former (fvcore convention; `trained` "
        f"columns: the trained {preset['image_size']}x{preset['image_size']} config). Latency: "
        f"{setup['latency']}, against the stock transformers Mask2Former holding the stock variant's weights "
        f"({setup['stock_latency_ms']:.1f} ms); a gate's latency and GFLOPs are its depth histogram applied to its "
        "exits. Gains of a gate: over the upper concave envelope of its own model's fixed exits (at equal trained "
        "pixel-decoder GFLOPs) and over random routing with the gate's depth histogram.",
        "",
        "| variant | setting | PQ | PQ th | PQ st | mIoU | mask AP | pixel-dec. GFLOPs | total GFLOPs | trained pixel-dec. | "
        "latency | mean depth | gain vs frontier | gain vs random |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {_setting(r)} | {r['pq']:.2f} | {_fmt(r['pq_things'])} | {_fmt(r['pq_stuff'])} | "
            f"{_fmt(r['miou'])} | {_fmt(r['mask_ap'])} | {r['pixel_decoder_gflops_ratio']:.3f}x | "
            f"{r['total_gflops_ratio']:.3f}x | {r['trained_pixel_decoder_gflops_ratio']:.3f}x | "
            f"{r['latency_ratio']:.3f}x | {r['mean_depth']:.2f} | {_fmt(r.get('gain_over_frontier'))} | "
            f"{_fmt(r.get('gain_over_random_routing'))} |")
    lines += ["", "## Checks", ""]
    for name, check in result.get("checks", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in check.items() if k not in ("target", "met", "gains"))
        lines.append(f"- **{name}** ({check['target']}): {'met' if check['met'] else 'NOT met'}; {detail}")
    lines += ["", "## Best measured PQ per pixel-decoder budget (Swin-T, 1024x1024)", "",
              "| budget | variant | setting | PQ | pixel-dec. GFLOPs | latency |", "|---|---|---|---|---|---|"]
    for rec in result.get("recommendations", []):
        lines.append(f"| <= {rec['budget']:.2f}x | {rec['name']} | {rec['mode']} | {rec['pq']:.2f} | "
                     f"{rec['pixel_decoder_gflops_ratio']:.3f}x | {rec['latency_ratio']:.3f}x |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["variants"]
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    names = list(dict.fromkeys(r["name"] for r in rows))
    colors = plt.get_cmap("tab10")
    for index, name in enumerate(names):
        fixed = sorted((r for r in rows if r["name"] == name and r["depth"] is not None),
                       key=lambda r: r["pixel_decoder_gflops_ratio"])
        gates = [r for r in rows if r["name"] == name and r["depth"] is None]
        color = colors(index % 10)
        xs, ys = [r["pixel_decoder_gflops_ratio"] for r in fixed], [r["pq"] for r in fixed]
        ax.plot(xs, ys, "o-" if len(fixed) > 1 else "o", color=color, label=f"{name} (fixed exits)" if len(fixed) > 1
                else name, markersize=7 if name == "stock" else 5)
        if gates:
            ax.scatter([r["pixel_decoder_gflops_ratio"] for r in gates], [r["pq"] for r in gates], marker="*", s=110,
                       color=color, edgecolor="black", linewidth=0.5, zorder=3, label=f"{name} gate (betas)")
    ax.set_xlabel("pixel-decoder GFLOPs / stock (Swin-T, 1024x1024)")
    ax.set_ylabel(f"PQ ({result['validation_images']} validation images)")
    ax.set_title("Quality vs pixel-decoder cost")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
