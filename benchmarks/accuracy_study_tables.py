"""The Markdown table, checks, budget recommendations, plot and the merge of the two training modes of
`accuracy_study.py` (from its JSON rows; every row has `training`: `"fine_tuned"` or `"from_scratch"`)."""

from __future__ import annotations

from pathlib import Path

from modeling_ecom2f.recipe.routing import frontier_quality

#: Pixel-decoder budgets (fraction of stock's GFLOPs, Swin-T at 1024x1024) of the recommendation table.
BUDGETS = (1.0, 0.75, 0.6, 0.5, 0.4, 0.1)
REFERENCE_PROSCALE = "proscale_333_trc_lpe"
TRAININGS = ("fine_tuned", "from_scratch")
#: What a row's `training` means, for the tables.
TRAINING_LABEL = {"fine_tuned": "fine-tuned from the parent", "from_scratch": "from scratch"}


def training_of(row: dict) -> str:
    """A row's training mode (rows written before the field existed are the fine-tuned study's)."""
    return row.get("training", "fine_tuned")


def same_model(a: dict, b: dict) -> bool:
    return a["name"] == b["name"] and training_of(a) == training_of(b)


def add_frontier_gains(rows: list[dict]) -> None:
    """Give every gate row its PQ gain over the upper concave envelope of its own model's fixed exits at the same
    mean pixel-decoder GFLOPs of the trained config (random mixing of fixed exits reaches that envelope)."""
    for row in rows:
        if row["depth"] is not None:
            continue
        fixed = [(r["trained_pixel_decoder_gflops_ratio"], r["pq"]) for r in rows
                 if same_model(r, row) and r["depth"] is not None]
        frontier = frontier_quality(fixed, row["trained_pixel_decoder_gflops_ratio"])
        row["frontier_pq"] = round(frontier, 2)
        row["gain_over_frontier"] = round(row["pq"] - frontier, 2)
        if row.get("random_routing_pq") is not None:
            row["gain_over_random_routing"] = round(row["pq"] - row["random_routing_pq"], 2)


def full_depth_rows(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """{(name, training): the row of the model's deepest evaluated fixed depth}."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["name"], training_of(r))
        if r["depth"] is not None and (key not in out or r["depth"] > out[key]["depth"]):
            out[key] = r
    return out


def checks(rows: list[dict]) -> dict:
    """The study's acceptance checks, as measured, per training mode (`_from_scratch` keys for the second mode)."""
    full = full_depth_rows(rows)
    out = {}
    for training in TRAININGS:
        suffix = "" if training == "fine_tuned" else f"_{training}"
        stock = next((r for (name, t), r in full.items() if t == training and r["family"] == "stock"), None)
        ref = full.get((REFERENCE_PROSCALE, training))
        if stock and ref:
            delta = round(ref["pq"] - stock["pq"], 2)
            out[f"proscale_vs_stock{suffix}"] = {
                "pq_difference": delta, "pixel_decoder_gflops_ratio": ref["pixel_decoder_gflops_ratio"],
                "baseline": stock["name"],
                "target": "PQ within 1.0 of stock at <= 0.5x its pixel-decoder GFLOPs",
                "met": delta >= -1.0 and ref["pixel_decoder_gflops_ratio"] <= 0.5}
        gates = [r for r in rows if r["family"] == "combined" and r["depth"] is None and training_of(r) == training]
        if gates:
            best = max(gates, key=lambda r: r["gain_over_frontier"])
            out[f"combined_gate_vs_frontier{suffix}"] = {
                "best_gain_over_frontier": best["gain_over_frontier"], "mode": best["mode"],
                "gains": {r["mode"]: r["gain_over_frontier"] for r in gates},
                "target": "the combined model's gate above PRO-SCALE's own fixed-depth frontier",
                "met": best["gain_over_frontier"] > 0}
    return out


def recommendations(rows: list[dict]) -> list[dict]:
    """For each pixel-decoder budget, the measured row with the best PQ that fits it (either training mode)."""
    out = []
    for budget in BUDGETS:
        fitting = [r for r in rows if r["pixel_decoder_gflops_ratio"] <= budget + 1e-9]
        if fitting:
            best = max(fitting, key=lambda r: r["pq"])
            out.append({"budget": budget, "name": best["name"], "training": training_of(best), "mode": best["mode"],
                        "pq": best["pq"], "pixel_decoder_gflops_ratio": best["pixel_decoder_gflops_ratio"],
                        "latency_ratio": best["latency_ratio"]})
    return out


RUN_KEYS = ("command", "wall_seconds", "validation_images", "setup")


def merge_result(existing: dict | None, *, training: str, run: dict, rows: list[dict]) -> dict:
    """The published result with this run's rows (`training`) in place of that mode's old ones; the other mode's rows
    and run record are kept as written. Top-level `command`/`wall_seconds`/`setup` stay the fine-tuned run's (the
    original contract); `runs` holds each mode's. Both modes must have evaluated the same number of images."""
    runs: dict = {}
    kept: list[dict] = []
    if existing:
        runs = dict(existing.get("runs") or {"fine_tuned": {k: existing[k] for k in RUN_KEYS if k in existing}})
        kept = [{**r, "training": training_of(r)} for r in existing["variants"] if training_of(r) != training]
        others = {t: v["validation_images"] for t, v in runs.items() if t != training}
        if any(n != run["validation_images"] for n in others.values()):
            raise SystemExit(f"cannot merge {run['validation_images']} validation images of {training} with the "
                             f"{others} already in the output folder: use another --docs_dir/--output_dir")
    runs[training] = run
    merged_rows = sorted(kept + rows, key=lambda r: TRAININGS.index(training_of(r)))  # stable: row order kept
    primary = runs.get("fine_tuned", run)
    return {**{k: primary[k] for k in RUN_KEYS}, "variants": merged_rows, "checks": checks(merged_rows),
            "recommendations": recommendations(merged_rows), "runs": {t: runs[t] for t in TRAININGS if t in runs}}


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _setting(row: dict) -> str:
    if row["depth"] is not None:
        return f"depth {row['depth']}"
    return f"gate beta {row['beta']:g}" + (" (calibrated)" if row.get("calibrated") else "")


def _run_paragraph(training: str, run: dict) -> str:
    setup, preset = run["setup"], run["setup"]["preset"]
    machine = setup["machine"]
    head = (f"**{TRAINING_LABEL[training].capitalize()}.** Command: `{run['command']}`; wall time "
            f"{run['wall_seconds'] / 60:.1f} min on {machine['cpu_count']} CPU cores ({machine['platform']}, torch "
            f"{machine['torch']}). ")
    if training == "fine_tuned":
        body = (f"Every variant fine-tunes the same parent for {preset['steps']} steps (batch {preset['batch_size']}, "
                f"AdamW lr {preset['learning_rate']:g}, seed {setup['seed']}) on {preset['train_images']} training "
                f"images of the synthetic depth benchmark ({preset['image_size']}x{preset['image_size']}). ")
    else:
        recipe = setup.get("recipe", {})
        models = setup.get("models", {})
        listed = "; ".join(f"{name}{' (shipped)' if m.get('shipped') else ''}: `{m['train_command']}`"
                           for name, m in models.items())
        base = setup["baseline"]
        body = (f"Every model is trained from scratch by the command of the shipped parent ({recipe.get('summary', '')}), "
                f"only the encoder flags differing; the baseline `{base}` is "
                f"{'the shipped parent' if models.get(base, {}).get('shipped') else 'the parent command'}'s model at "
                f"full depth. Trained models: {listed}. ")
    return head + body + (f"Latency: {setup['latency']}, against the stock transformers Mask2Former holding the "
                          f"`{setup.get('baseline', 'stock')}` weights of this run ({setup['stock_latency_ms']:.1f} ms).")


def write_markdown(path: Path, result: dict) -> None:
    rows = result["variants"]
    runs = result.get("runs") or {"fine_tuned": {k: result[k] for k in RUN_KEYS}}
    preset = next(iter(runs.values()))["setup"]["preset"]
    lines = ["# Accuracy study: stock Mask2Former, ECO-M2F, PRO-SCALE and the combined model on the same data", ""]
    for training, run in runs.items():
        lines += [_run_paragraph(training, run), ""]
    lines += [
        f"Validation: the same {result['validation_images']} images of the synthetic depth benchmark for every row. "
        f"GFLOPs ratios: the same variant built on Swin-T at {preset['flops_size']}x{preset['flops_size']} against "
        f"stock Mask2Former (fvcore convention; `trained` columns: the trained {preset['image_size']}x"
        f"{preset['image_size']} config). A gate's latency and GFLOPs are its depth histogram applied to its exits. "
        "Gains of a gate: over the upper concave envelope of its own model's fixed exits (at equal trained "
        "pixel-decoder GFLOPs) and over random routing with the gate's depth histogram. Latency ratios are against "
        "the stock model timed in the same run as the row.",
        "",
        "| variant | training | setting | PQ | PQ th | PQ st | mIoU | mask AP | pixel-dec. GFLOPs | total GFLOPs | "
        "trained pixel-dec. | latency | mean depth | gain vs frontier | gain vs random |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {training_of(r).replace('_', ' ')} | {_setting(r)} | {r['pq']:.2f} | "
            f"{_fmt(r['pq_things'])} | {_fmt(r['pq_stuff'])} | "
            f"{_fmt(r['miou'])} | {_fmt(r['mask_ap'])} | {r['pixel_decoder_gflops_ratio']:.3f}x | "
            f"{r['total_gflops_ratio']:.3f}x | {r['trained_pixel_decoder_gflops_ratio']:.3f}x | "
            f"{r['latency_ratio']:.3f}x | {r['mean_depth']:.2f} | {_fmt(r.get('gain_over_frontier'))} | "
            f"{_fmt(r.get('gain_over_random_routing'))} |")
    lines += ["", "## Checks", ""]
    for name, check in result.get("checks", {}).items():
        detail = ", ".join(f"{k} {v}" for k, v in check.items() if k not in ("target", "met", "gains"))
        lines.append(f"- **{name}** ({check['target']}): {'met' if check['met'] else 'NOT met'}; {detail}")
    lines += ["", "## Best measured PQ per pixel-decoder budget (Swin-T, 1024x1024)", "",
              "| budget | variant | training | setting | PQ | pixel-dec. GFLOPs | latency |",
              "|---|---|---|---|---|---|---|"]
    for rec in result.get("recommendations", []):
        lines.append(f"| <= {rec['budget']:.2f}x | {rec['name']} | {rec.get('training', 'fine_tuned').replace('_', ' ')} "
                     f"| {rec['mode']} | {rec['pq']:.2f} | {rec['pixel_decoder_gflops_ratio']:.3f}x | "
                     f"{rec['latency_ratio']:.3f}x |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["variants"]
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    models = list(dict.fromkeys((r["name"], training_of(r)) for r in rows))
    colors = plt.get_cmap("tab10")
    for index, (name, training) in enumerate(models):
        mine = [r for r in rows if r["name"] == name and training_of(r) == training]
        fixed = sorted((r for r in mine if r["depth"] is not None), key=lambda r: r["pixel_decoder_gflops_ratio"])
        gates = [r for r in mine if r["depth"] is None]
        color = colors(index % 10)
        scratch = training == "from_scratch"  # filled markers and solid lines; fine-tuned: hollow, dashed
        label = name + (" (from scratch)" if scratch else "")
        xs, ys = [r["pixel_decoder_gflops_ratio"] for r in fixed], [r["pq"] for r in fixed]
        ax.plot(xs, ys, marker="s" if scratch else "o", linestyle=("-" if scratch else "--") if len(fixed) > 1 else "",
                color=color, markerfacecolor=color if scratch else "white", label=f"{label} (fixed exits)"
                if len(fixed) > 1 else label, markersize=7 if fixed and fixed[0]["family"] == "stock" else 5)
        if gates:
            ax.scatter([r["pixel_decoder_gflops_ratio"] for r in gates], [r["pq"] for r in gates], marker="*", s=110,
                       color=color, edgecolor="black", linewidth=0.5, zorder=3, label=f"{label} gate (betas)")
    ax.set_xlabel("pixel-decoder GFLOPs / stock (Swin-T, 1024x1024)")
    ax.set_ylabel(f"PQ ({result['validation_images']} validation images)")
    trainings = {training_of(r) for r in rows}
    ax.set_title("Quality vs pixel-decoder cost" + (" (hollow: fine-tuned from the parent; squares: from scratch)"
                                                    if len(trainings) > 1 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
