"""The main job's results page: the trade-off table (every fixed depth, the classification gate, the utility gate at
each beta, the random-routing control of every gate mode, the oracle), each gate's gain over the fixed-depth frontier
and over its control, the checks of the issue as measured, and the plot; written to
`OUTPUT_DIR/results_main_job.{md,json}` and, for the default preset, to `docs/`.

Cost axis: the mean per-image deformable-encoder GFLOPs as a fraction of full depth's. The fixed-depth frontier is
the monotone upper concave envelope of the fixed-depth points (`routing.frontier_quality`): what mixing fixed depths
at random reaches at the same mean cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

from .reporting import full_depth_mode, results_table, save_plot
from .routing import frontier_quality
from .runtime import write_json

#: Margins of the issue's checks, in PQ points.
MIN_GAIN_POINTS = 0.5
MAX_LOSS_POINTS = 0.5
MAX_ENCODER_FRACTION = 0.70
MIN_THINGS_PQ = 45.0
MIN_DEPTH_SPREAD_POINTS = 2.0


def mode_rows(report: dict) -> list[dict]:
    """The modes of an evaluation report in the `results_main_job.json` contract, with frontier/control gains."""
    full = full_depth_mode(report)
    base = report["modes"][full]["gflops"]["encoder_mean"]
    rows = []
    for name, r in report["modes"].items():
        rows.append({
            "name": name, "kind": r.get("kind", name.split("_", 1)[0]), "pq": 100 * r["pq"],
            "pq_things": 100 * r["pq_things"], "pq_stuff": 100 * r["pq_stuff"],
            "miou": None if r.get("miou") is None else 100 * r["miou"],
            "mask_ap": None if not r.get("mask_ap") else 100 * r["mask_ap"]["AP"],
            "encoder_gflops_fraction": r["gflops"]["encoder_mean"] / base, "encoder_gflops": r["gflops"]["encoder_mean"],
            "total_gflops": r["gflops"]["total_mean"], "mean_depth": r["mean_depth"],
            "depth_histogram": r["depth_histogram"], "beta": r.get("beta"), "gate_objective": r.get("gate_objective"),
            "controls": r.get("controls"),
        })
    points = [(row["encoder_gflops_fraction"], row["pq"]) for row in rows if row["kind"] == "fixed"]
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        if row["kind"] in ("gate", "random_routing", "oracle"):
            row["frontier_pq"] = frontier_quality(points, row["encoder_gflops_fraction"])
            row["gain_over_frontier"] = row["pq"] - row["frontier_pq"]
        if row["kind"] == "gate":
            control = by_name.get(f"random_{row['name']}")
            row["gain_over_random"] = None if control is None else row["pq"] - control["pq"]
    return rows


def checks(rows: list[dict]) -> dict:
    """The issue's done-when figures on this run, each with its value and whether it is met."""
    fixed = sorted((row for row in rows if row["kind"] == "fixed"), key=lambda row: row["mean_depth"])
    full, shallow = fixed[-1], fixed[0]
    utility = [row for row in rows if row["kind"] == "gate" and row["gate_objective"] == "utility"]
    beating = [row["name"] for row in utility if row["gain_over_frontier"] >= MIN_GAIN_POINTS
               and (row.get("gain_over_random") or 0.0) >= MIN_GAIN_POINTS]
    close = [row["name"] for row in rows if row["kind"] == "gate" and row["pq"] >= full["pq"] - MAX_LOSS_POINTS
             and row["encoder_gflops_fraction"] <= MAX_ENCODER_FRACTION]
    best = max(utility, key=lambda row: row["gain_over_frontier"], default=None)
    return {
        "full_depth_pq_things": {"value": full["pq_things"], "target": f">= {MIN_THINGS_PQ}",
                                 "met": full["pq_things"] >= MIN_THINGS_PQ},
        "depth_spread": {"value": full["pq"] - shallow["pq"], "target": f"PQ(depth {int(full['mean_depth'])}) - "
                         f"PQ(depth {int(shallow['mean_depth'])}) >= {MIN_DEPTH_SPREAD_POINTS}",
                         "met": full["pq"] - shallow["pq"] >= MIN_DEPTH_SPREAD_POINTS},
        "utility_gate_beats_frontier_and_random": {
            "value": beating, "target": f">= 2 betas with >= {MIN_GAIN_POINTS} PQ over the frontier and over random",
            "best_gain_over_frontier": None if best is None else best["gain_over_frontier"],
            "best_gain_mode": None if best is None else best["name"], "met": len(beating) >= 2},
        "gate_near_full_depth_at_70pct": {
            "value": close, "target": f"a gate within {MAX_LOSS_POINTS} PQ of full depth at <= "
                                      f"{100 * MAX_ENCODER_FRACTION:.0f}% of its encoder GFLOPs", "met": bool(close)},
    }


def tradeoff_table(rows: list[dict]) -> str:
    lines = ["| mode | kind | beta | PQ | PQ things | PQ stuff | encoder GFLOPs (% of full) | mean depth | "
             "gain over frontier | gain over random |", "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(value, spec="+.2f"):
        return "" if value is None else format(value, spec)

    for row in rows:
        lines.append(f"| {row['name']} | {row['kind']} | {fmt(row['beta'], 'g')} | {row['pq']:.2f} | "
                     f"{row['pq_things']:.2f} | {row['pq_stuff']:.2f} | {100 * row['encoder_gflops_fraction']:.1f}% | "
                     f"{row['mean_depth']:.2f} | {fmt(row.get('gain_over_frontier'))} | "
                     f"{fmt(row.get('gain_over_random'))} |")
    return "\n".join(lines)


def tradeoff_plot(rows: list[dict], path: Path, *, title: str) -> Path:
    """PQ against mean encoder GFLOPs (% of full depth): the fixed-depth curve and its frontier, the utility gate's
    curve over beta, the classification gate, every random-routing control and the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.0), dpi=130)
    x = lambda row: 100 * row["encoder_gflops_fraction"]  # noqa: E731
    fixed = sorted((r for r in rows if r["kind"] == "fixed"), key=x)
    ax.plot([x(r) for r in fixed], [r["pq"] for r in fixed], "o-", color="tab:blue", label="fixed depth", zorder=3)
    for r in fixed:
        ax.annotate(f"k={int(r['mean_depth'])}", (x(r), r["pq"]), textcoords="offset points", xytext=(0, -14),
                    ha="center", fontsize=8, color="tab:blue")
    controls = [r for r in rows if r["kind"] == "random_routing"]
    ax.plot([x(r) for r in controls], [r["pq"] for r in controls], "x", color="0.45", markersize=6,
            label="random routing (each gate's depths shuffled)", zorder=2)
    utility = sorted((r for r in rows if r["kind"] == "gate" and r["gate_objective"] == "utility"), key=x)
    if utility:
        ax.plot([x(r) for r in utility], [r["pq"] for r in utility], "*-", color="tab:red", markersize=10,
                label="utility gate (one gate, beta varied)", zorder=4)
        places: dict[tuple, list] = {}  # several betas may give the same routing: one label per point
        for r in utility:
            places.setdefault((round(x(r), 2), round(r["pq"], 3)), []).append(r["beta"])
        for (px, py), betas in places.items():
            text = f"beta={betas[0]:g}" if len(betas) == 1 else f"beta={min(betas):g}..{max(betas):g}"
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(6, 6), fontsize=8, color="tab:red")
    for r in rows:
        if r["kind"] == "gate" and r["gate_objective"] == "classification":
            ax.plot(x(r), r["pq"], "P", color="tab:purple", markersize=10, zorder=4,
                    label=f"classification gate (paper), beta={r['beta']:g}" if r["beta"] is not None else
                    "classification gate (paper)")
        if r["kind"] == "oracle":
            ax.plot(x(r), r["pq"], "D", color="tab:green", markersize=7, zorder=4,
                    label=f"oracle, beta={r['beta']:g}")
    return save_plot(fig, ax, path, xlabel="deformable-encoder GFLOPs per image (mean, % of full depth)",
                     ylabel="PQ", title=title, legend_loc="below")


def publish_results(summary: dict, *, paths, args: argparse.Namespace) -> None:
    """Write the results page, JSON and plot (only when the evaluation ran in this invocation)."""
    report_file = paths.eval / "evaluation.json"
    if "eval" not in summary.get("steps", []) or not report_file.is_file():
        return
    report = json.loads(report_file.read_text(encoding="utf-8"))
    rows = mode_rows(report)
    figures = checks(rows)
    summary["checks"] = figures
    command = "python examples/run_eco_m2f.py" + ("" if args.preset == "default" else f" --preset {args.preset}")
    result = {
        "command": command, "wall_seconds": summary.get("wall_seconds"), "timings_s": summary.get("timings_s"),
        "validation_images": report["num_images"], "modes": rows, "checks": figures,
        "calibrated_beta": summary.get("calibrated_beta"), "target_encoder_fraction": args.target_encoder_fraction,
        "parent": summary.get("parent"), "preset": summary.get("preset_values"),
        "machine": {"cpu_count": _cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "derived_label_histograms": (summary.get("step2") or {}).get("label_histograms"),
        "gates": {name: {k: v for k, v in (s or {}).items() if k in ("train", "holdout", "label_histogram",
                                                                      "calibration", "beta")}
                  for name, s in (summary.get("step3") or {}).items()},
    }
    plot = tradeoff_plot(rows, paths.root / "tradeoff.png",
                         title=f"ECO-M2F on the synthetic depth benchmark ({report['num_images']} validation images)")
    lines = [
        "# ECO-M2F main job: results",
        "",
        f"Command: `{command}`; wall time **{(summary.get('wall_seconds') or 0) / 60:.1f} min** on {_cpu_count()} CPU "
        f"cores (step timings in seconds: {summary.get('timings_s')}).",
        "",
        f"Validation split of the synthetic depth benchmark ({report['num_images']} images, never seen in training). "
        "PQ in points; cost = mean per-image deformable-encoder GFLOPs (papers' convention) as a share of full depth. "
        "Frontier = the upper concave envelope of the fixed depths (what mixing fixed depths at random reaches at "
        "that cost). Random routing = the gate's own depth decisions shuffled across images (same histogram, same "
        "cost). Oracle = per image argmax_k(PQ_k - beta k) of its own per-image PQ.",
        "",
        tradeoff_table(rows),
        "",
        "## Checks (as measured on this run)",
        "",
    ]
    for name, check in figures.items():
        value = check["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else (", ".join(value) if value else "none")
        lines.append(f"- {name}: {shown} (target {check['target']}) -> **{'met' if check['met'] else 'NOT met'}**")
    lines += ["", "![trade-off](tradeoff.png)", "", "## All metrics", "", results_table(report), ""]
    text = "\n".join(lines)
    targets = [paths.root]
    docs = args.docs_dir if args.docs_dir is not None else ("docs" if args.preset == "default" else "")
    if docs:
        targets.append(Path(docs))
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results_main_job.md").write_text(text, encoding="utf-8")
        write_json(folder / "results_main_job.json", result)
        if Path(folder) != paths.root:
            shutil.copyfile(plot, folder / "tradeoff.png")
    print(text, flush=True)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["checks", "mode_rows", "publish_results", "tradeoff_plot", "tradeoff_table"]
