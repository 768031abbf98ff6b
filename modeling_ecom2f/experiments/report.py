"""The main job's results page: the trade-off table (every fixed depth, the classification gate, the utility gate at
each beta, the random-routing control of every gate mode, the oracle), each gate's gain over the fixed-depth frontier
and over its control, the acceptance checks as measured, and the plot; written to
`OUTPUT_DIR/results_main_job.{md,json}` and, for the default preset, to `docs/` (a benchmark other than the default
one adds its name to the file names: `results_main_job_maze.*`).

Each routed mode's gains carry bootstrap standard errors (`report_statistics.bootstrap_gains`: validation images
resampled, every term recomputed), and `per_image` relates the per-image gain of depth and each gate's depth to the
generator's recorded difficulty (a diagnostic: no model or gate input reads it).

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

import numpy as np

from ..recipe.mode_evaluation import PER_EXIT_COUNTS_FILE, load_per_exit_counts
from ..recipe.reporting import mode_rows, results_table, save_plot, tradeoff_table
from ..recipe.runtime import write_json
from .report_statistics import DEFAULT_RESAMPLES, bootstrap_gains, difficulty_statistics, per_image_series

#: Margins of the acceptance checks, in PQ points.
MIN_GAIN_POINTS = 0.5
MAX_LOSS_POINTS = 0.5
MAX_ENCODER_FRACTION = 0.70
MIN_THINGS_PQ = 45.0
MIN_DEPTH_SPREAD_POINTS = 1.0
MIN_VALIDATION_IMAGES = 500
#: A gate passes at a beta when both gains exceed this many bootstrap standard errors.
MIN_STANDARD_ERRORS = 2.0
#: Distinct gate points (betas giving different routings) that must pass.
MIN_PASSING_BETAS = 2


def add_standard_errors(rows: list[dict], errors: dict[str, dict]) -> list[dict]:
    """Put `bootstrap_gains`'s `*_se` fields into the mode rows (in place); returns the rows."""
    for row in rows:
        row.update({k: v for k, v in errors.get(row["name"], {}).items() if k.endswith("_se")})
    return rows


def passes(row: dict) -> bool:
    """Whether a gate mode is above the frontier and above its random control by more than `MIN_STANDARD_ERRORS`
    bootstrap standard errors (False without standard errors)."""
    frontier_se, random_se = row.get("gain_over_frontier_se"), row.get("gain_over_random_se")
    if frontier_se is None or random_se is None or row.get("gain_over_random") is None:
        return False
    return (row["gain_over_frontier"] > MIN_STANDARD_ERRORS * frontier_se
            and row["gain_over_random"] > MIN_STANDARD_ERRORS * random_se)


def checks(rows: list[dict], *, validation_images: int | None = None) -> dict:
    """The acceptance figures on this run, each with its value and whether it is met."""
    fixed = sorted((row for row in rows if row["kind"] == "fixed"), key=lambda row: row["mean_depth"])
    full, shallow = fixed[-1], fixed[0]
    utility = [row for row in rows if row["kind"] == "gate" and row["gate_objective"] == "utility"]
    passing = [row for row in utility if passes(row)]
    # two betas that route every image alike are one gate point: count distinct routings
    distinct = {(round(row["pq"], 9), round(row["encoder_gflops_fraction"], 9)) for row in passing}
    close = [row["name"] for row in rows if row["kind"] == "gate" and row["pq"] >= full["pq"] - MAX_LOSS_POINTS
             and row["encoder_gflops_fraction"] <= MAX_ENCODER_FRACTION]
    best = max(utility, key=lambda row: row["gain_over_frontier"], default=None)
    figures = {}
    if validation_images is not None:
        figures["validation_images"] = {"value": validation_images, "target": f">= {MIN_VALIDATION_IMAGES}",
                                        "met": validation_images >= MIN_VALIDATION_IMAGES}
    figures.update({
        "full_depth_pq_things": {"value": full["pq_things"], "target": f">= {MIN_THINGS_PQ}",
                                 "met": full["pq_things"] >= MIN_THINGS_PQ},
        "depth_spread": {"value": full["pq"] - shallow["pq"], "target": f"PQ(depth {int(full['mean_depth'])}) - "
                         f"PQ(depth {int(shallow['mean_depth'])}) >= {MIN_DEPTH_SPREAD_POINTS}",
                         "met": full["pq"] - shallow["pq"] >= MIN_DEPTH_SPREAD_POINTS},
        "utility_gate_beats_frontier_and_random": {
            "value": [row["name"] for row in passing], "distinct_points": len(distinct),
            "target": f">= {MIN_PASSING_BETAS} betas (distinct routings) with a utility gate above the frontier and "
                      f"above its random control by > {MIN_STANDARD_ERRORS:g} bootstrap SE (aim: +{MIN_GAIN_POINTS} PQ)",
            "best_gain_over_frontier": None if best is None else best["gain_over_frontier"],
            "best_gain_over_frontier_se": None if best is None else best.get("gain_over_frontier_se"),
            "best_gain_mode": None if best is None else best["name"], "met": len(distinct) >= MIN_PASSING_BETAS},
        "gate_near_full_depth_at_70pct": {
            "value": close, "target": f"a gate within {MAX_LOSS_POINTS} PQ of full depth at <= "
                                      f"{100 * MAX_ENCODER_FRACTION:.0f}% of its encoder GFLOPs", "met": bool(close)},
    })
    return figures


#: Smallest distance (percentage points of encoder cost) between two beta labels of the trade-off plot.
LABEL_GAP = 5.0


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
        last = None  # labels at least LABEL_GAP points of cost apart, so that they do not overlap
        for (px, py), betas in sorted(places.items()):
            if last is not None and px - last < LABEL_GAP:
                continue
            last = px
            text = f"beta={betas[0]:g}" if len(betas) == 1 else f"beta={min(betas):g}..{max(betas):g}"
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(-4, 8), fontsize=8, color="tab:red",
                        rotation=30)
    for r in rows:
        if r["kind"] == "gate" and r["gate_objective"] == "classification":
            ax.plot(x(r), r["pq"], "P", color="tab:purple", markersize=10, zorder=4,
                    label=f"classification gate (paper), beta={r['beta']:g}" if r["beta"] is not None else
                    "classification gate (paper)")
        if r["kind"] == "oracle":
            ax.plot(x(r), r["pq"], "D", color="tab:green", markersize=7, zorder=4,
                    label=f"oracle, beta={r['beta']:g}")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.06 * (high - low))  # headroom for the rotated beta labels
    return save_plot(fig, ax, path, xlabel="deformable-encoder GFLOPs per image (mean, % of full depth)",
                     ylabel="PQ", title=title, legend_loc="below")


def _groups(level: np.ndarray, bins: int) -> list[np.ndarray]:
    """Image groups along a column: one per value for a column of few values (e.g. rooms), else `bins` quantiles."""
    values = np.unique(level)
    if len(values) <= 2 * bins:
        return [np.flatnonzero(level == value) for value in values]
    return np.array_split(np.argsort(level, kind="stable"), bins)


def per_image_plot(series: dict[str, dict], path: Path, *, title: str, bins: int = 5) -> Path:
    """One row of two panels per column (`series`: column label -> `report_statistics.per_image_series`): the
    per-image PQ gain of full depth over the shallowest (points, with its mean per group of images) and each gate
    mode's mean chosen depth per group (groups: one per value of a column of few values, else quintiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 2, figsize=(13, 4.6 * len(series)), dpi=110, squeeze=False)
    for (label, one), (left, right) in zip(series.items(), axes):
        level, gain = one["difficulty"], one["gain"]
        groups = _groups(level, bins)
        centres = [float(level[g].mean()) for g in groups]
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, size=level.shape) * (np.ptp(level) / 20 or 1.0)
        left.scatter(level + jitter, gain, s=6, alpha=0.35, color="tab:blue", label="one validation image")
        left.errorbar(centres, [gain[g].mean() for g in groups],
                      yerr=[gain[g].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else 0.0 for g in groups],
                      fmt="o-", color="tab:red", label="mean per group of images (+- SE)")
        left.axhline(0.0, color="0.5", linewidth=0.8)
        left.set_xlabel(label)
        left.set_ylabel(f"per-image PQ gain, {one['full']} - {one['shallow']} (points)")
        left.grid(alpha=0.3)
        left.legend(fontsize=8)
        seen: set[tuple] = set()  # gate modes that route every image alike are drawn once
        gates = list(one["gate_depths"].items())
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(gates), 1)))
        for (name, depths), colour in zip(gates, colours):
            if tuple(depths.tolist()) in seen:
                continue
            seen.add(tuple(depths.tolist()))
            utility = "utility" in name
            right.plot(centres, [depths[g].mean() for g in groups], "o-" if utility else "s--", markersize=4,
                       color=colour if utility else "tab:red", label=name)
        right.set_xlabel(label)
        right.set_ylabel("mean chosen encoder depth")
        right.grid(alpha=0.3)
        right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def validation_columns(data_dir: Path, names) -> dict[str, np.ndarray]:
    """The per-image columns `names` of the job's validation split (by row) that it has; empty without data."""
    import datasets

    if not (Path(data_dir) / "dataset_dict.json").is_file():
        return {}
    split = datasets.load_from_disk(str(data_dir))["validation"]
    return {name: np.asarray(split[name], dtype=np.float64) for name in names if name in split.column_names}


def per_image_analysis(paths, rows: list[dict], benchmark: dict, *, resamples: int,
                       suffix: str = "") -> tuple[dict | None, dict]:
    """`(per_image diagnostics or None, bootstrap errors by mode)` from the evaluation's per-image files."""
    per_image_file, counts_file = paths.eval / "per_image.json", paths.eval / PER_EXIT_COUNTS_FILE
    if not (per_image_file.is_file() and counts_file.is_file()):
        return None, {}
    per_image = json.loads(per_image_file.read_text(encoding="utf-8"))
    errors = bootstrap_gains(load_per_exit_counts(counts_file), per_image, rows, resamples=resamples)
    extra = tuple(benchmark.get("analysis_columns", ()))
    columns = validation_columns(paths.data, ("difficulty",) + extra)
    if "difficulty" not in columns:
        return None, errors
    stats = difficulty_statistics(per_image, rows, columns["difficulty"], difficulty_name=benchmark["difficulty"])
    stats["other_columns"] = {}
    for name in extra:
        if name in columns:
            other = difficulty_statistics(per_image, rows, columns[name], difficulty_name=name)
            stats["other_columns"][name] = {k: other[k] for k in ("spearman_gain_vs_difficulty",
                                                                  "spearman_gate_depth_vs_difficulty")}
    label = benchmark["difficulty"].split(":")[0]
    series = {label: per_image_series(per_image, rows, columns["difficulty"])}
    series.update({name: per_image_series(per_image, rows, columns[name]) for name in extra if name in columns})
    per_image_plot(series, paths.root / f"per_image_difficulty{suffix}.png",
                   title=f"{benchmark['title']}: per-image gain of depth and each gate's depth against difficulty "
                         "(analysis only: no model or gate input reads it)")
    return stats, errors


def _gate_form_line(form: dict) -> str:
    """One sentence on the utility gate's form (`UtilityGateForm` fields)."""
    hidden = f"one hidden layer of {form['hidden_size']}" if form.get("hidden_size") else "a single linear layer"
    return (f"Utility gate: `{form['pooling']}` pooling of input-projected level {form['input_level']} (0 = the "
            f"coarsest, 1/32), {hidden}; the classification gate is the paper's (mean of 1/32, linear).")


def publish_results(summary: dict, *, paths, args: argparse.Namespace) -> None:
    """Write the results page, JSON and plots (only when the evaluation ran in this invocation)."""
    report_file = paths.eval / "evaluation.json"
    if "eval" not in summary.get("steps", []) or not report_file.is_file():
        return
    report = json.loads(report_file.read_text(encoding="utf-8"))
    benchmark = summary.get("benchmark") or {"name": "synthetic", "title": "the synthetic benchmark",
                                             "difficulty": "difficulty", "suffix": ""}
    rows, suffix = mode_rows(report), benchmark["suffix"]
    resamples = getattr(args, "bootstrap_resamples", DEFAULT_RESAMPLES)
    per_image, errors = per_image_analysis(paths, rows, benchmark, resamples=resamples, suffix=suffix)
    add_standard_errors(rows, errors)
    figures = checks(rows, validation_images=report["num_images"])
    summary["checks"] = figures
    command = "python examples/run_eco_m2f.py" + ("" if args.preset == "default" else f" --preset {args.preset}")
    command += "" if not benchmark["suffix"] else f" --benchmark {benchmark['name']}"
    result = {
        "command": command, "benchmark": benchmark["name"], "benchmark_description": benchmark["title"],
        "wall_seconds": summary.get("wall_seconds"), "timings_s": summary.get("timings_s"),
        "validation_images": report["num_images"], "modes": rows, "checks": figures, "per_image": per_image,
        "bootstrap": {"resamples": resamples, "unit": "validation images, drawn with replacement"} if errors else None,
        "calibrated_beta": summary.get("calibrated_beta"), "target_encoder_fraction": args.target_encoder_fraction,
        "parent": summary.get("parent"), "preset": summary.get("preset_values"),
        "machine": {"cpu_count": _cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "derived_label_histograms": (summary.get("step2") or {}).get("label_histograms"),
        "utility_gate_form": summary.get("utility_gate"),
        "gates": {name: {k: v for k, v in (s or {}).items() if k in ("train", "holdout", "label_histogram",
                                                                      "calibration", "beta")}
                  for name, s in (summary.get("step3") or {}).items()},
    }
    plot = tradeoff_plot(rows, paths.root / f"tradeoff{suffix}.png",
                         title=f"ECO-M2F on {benchmark['title']} ({report['num_images']} validation images)")
    lines = [
        "# ECO-M2F main job: results" + (f" ({benchmark['name']})" if suffix else ""),
        "",
        f"Command: `{command}`; wall time **{(summary.get('wall_seconds') or 0) / 60:.1f} min** on {_cpu_count()} CPU "
        f"cores (step timings in seconds: {summary.get('timings_s')}).",
        "",
        f"Validation split of {benchmark['title']} ({report['num_images']} images, never seen in training). "
        "PQ in points; cost = mean per-image deformable-encoder GFLOPs (papers' convention) as a share of full depth. "
        "Frontier = the upper concave envelope of the fixed depths (what mixing fixed depths at random reaches at "
        "that cost). Random routing = the gate's own depth decisions shuffled across images (same histogram, same "
        "cost). Oracle = per image argmax_k(PQ_k - beta k) of its own per-image PQ. SE = bootstrap standard error "
        f"({resamples} resamples of the validation images, every term recomputed).",
        "",
        *([_gate_form_line(summary["utility_gate"]), ""] if summary.get("utility_gate") else []),
        tradeoff_table(rows),
        "",
        "## Checks (as measured on this run)",
        "",
    ]
    for name, check in figures.items():
        value = check["value"]
        shown = (f"{value:.2f}" if isinstance(value, float) else str(value) if isinstance(value, int)
                 else (", ".join(value) if value else "none"))
        lines.append(f"- {name}: {shown} (target {check['target']}) -> **{'met' if check['met'] else 'NOT met'}**")
    lines += ["", f"![trade-off](tradeoff{suffix}.png)", ""]
    if per_image:
        rho = per_image["spearman_gain_vs_difficulty"]
        lines += ["## Per image against the difficulty (a diagnostic; no model or gate input reads it)", "",
                  f"Difficulty: {per_image['difficulty']}. Gain: {per_image['gain_definition']}: mean "
                  f"{per_image['gain']['mean']:+.2f}, std {per_image['gain']['std']:.2f}, "
                  f"{100 * per_image['gain']['share_positive']:.0f}% of images gain; Spearman with the difficulty "
                  f"{'n/a' if rho is None else format(rho, '+.3f')}.", "",
                  "| gate mode | Spearman of its chosen depth with the difficulty |", "|---|---|"]
        lines += [f"| {name} | {'n/a (constant)' if value is None else format(value, '+.3f')} |"
                  for name, value in per_image["spearman_gate_depth_vs_difficulty"].items()]
        for name, other in per_image.get("other_columns", {}).items():
            rho = other["spearman_gain_vs_difficulty"]
            lines += ["", f"Against `{name}` (another column the generator records): Spearman of the gain "
                          f"{'n/a' if rho is None else format(rho, '+.3f')}; of each gate's depth: " + ", ".join(
                              f"{mode} {'n/a' if v is None else format(v, '+.3f')}"
                              for mode, v in other["spearman_gate_depth_vs_difficulty"].items()) + "."]
        lines += ["", f"![per image](per_image_difficulty{suffix}.png)", ""]
    lines += ["## All metrics", "", results_table(report), ""]
    text = "\n".join(lines)
    _write(text, result, plot, paths=paths, args=args, suffix=suffix, with_per_image=bool(per_image))
    print(text, flush=True)


def _write(text: str, result: dict, plot: Path, *, paths, args, suffix: str, with_per_image: bool) -> None:
    targets = [paths.root]
    docs = args.docs_dir if args.docs_dir is not None else ("docs" if args.preset == "default" else "")
    if docs:
        targets.append(Path(docs))
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"results_main_job{suffix}.md").write_text(text, encoding="utf-8")
        write_json(folder / f"results_main_job{suffix}.json", result)
        if Path(folder) != paths.root:
            for name in [plot.name] + ([f"per_image_difficulty{suffix}.png"] if with_per_image else []):
                shutil.copyfile(paths.root / name, folder / name)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["add_standard_errors", "checks", "passes", "per_image_plot", "publish_results", "tradeoff_plot"]
