"""Markdown tables and one four-panel figure of a depth-probe run (`depth_probe.py`'s `results.json`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def markdown(result: dict) -> str:
    s = result["settings"]
    columns = s["gate_exits"]
    lines = [f"## Depth probe: {s['source']} ({s['backbone']}, {s['layers']} layers, d={s['d_model']}, "
             f"{s['points']} points, {s['steps']} steps; gate level {s.get('gate_level', 0)})", "",
             f"Settings: `{ {k: v for k, v in s.items()} }`", "",
             f"Training {result['training']['seconds']:.0f} s, whole run {result['seconds']:.0f} s "
             f"({s['threads']} thread).", "",
             "| exit | data-set mIoU | mean per-image mIoU |", "|---|---|---|"]
    for k, (d, m) in enumerate(zip(result["dataset_miou"], result["mean_image_miou"])):
        lines.append(f"| {k}{' (control: no encoder layer)' if k == 0 else ''} | {_points(d)} | {_points(m)} |")
    g = result["gain"]
    lines += ["", f"Per-image gain ({g['definition']}), points: mean {100 * g['mean']:+.2f}, std "
              f"{100 * g['std']:.2f}, median {100 * g['median']:+.2f}, share > 0 {g['share_positive']:.2f}.", "",
              "Spearman of the gain with each difficulty column: "
              + ", ".join(f"{k} {v:+.2f}" for k, v in g["spearman"].items() if v is not None) + "."]
    if "by_quantile" in g:
        q = g["by_quantile"]
        lines += ["", f"Mean gain by {q['column']} quintile (easiest to hardest): "
                  + ", ".join(f"{100 * m:+.2f} ({d:.2f})" for m, d in zip(q["mean_gain"], q["mean_difficulty"]))]
    pixel = result["pixel_accuracy_by_difficulty"]
    counts = np.asarray(pixel["counts"])
    if counts.sum() > 0:
        shown = [v for v in range(len(counts)) if counts[v] > 0][:25]
        lines += ["", "Pixel accuracy by per-pixel difficulty (columns: value, pixels):", "",
                  "| exit | " + " | ".join(str(v) for v in shown) + " |", "|---" * (len(shown) + 1) + "|",
                  "| pixels | " + " | ".join(str(int(counts[v])) for v in shown) + " |"]
        for k, row in enumerate(pixel["accuracy"]):
            lines.append(f"| {k} | " + " | ".join("" if row[v] is None else f"{100 * row[v]:.1f}" for v in shown)
                         + " |")
    lines += ["", f"Oracle over exits {columns} (per-image argmax of mIoU - beta * depth), against the fixed-exit "
              "envelope and random exits with the oracle's depth histogram:", "",
              "| beta | mean depth | quality | envelope | random | over envelope | over random |",
              "|---|---|---|---|---|---|---|"]
    for row in result["oracle"]:
        lines.append(f"| {row['beta']:g} | {row['mean_cost']:.2f} | {_points(row['quality'])} | "
                     f"{_points(row['frontier'])} | {_points(row['random'])} | {100 * row['gain_over_frontier']:+.2f}"
                     f" | {100 * row['gain_over_random']:+.2f} |")
    known = result.get("difficulty_routing")
    if known:
        b = known["best"]
        lines += ["", f"A gate that knew `{known['column']}` (diagnostic bound, not a real gate): the harder half "
                  f"({known['hard_images']} images) at exit {b['hard_exit']:g}, the easier at exit {b['easy_exit']:g} "
                  f"(the best pair): mean depth {b['mean_cost']:.2f}, {100 * b['gain_over_frontier']:+.2f} "
                  f"({100 * b['gain_over_frontier_se']:.2f}) over the envelope, {100 * b['gain_over_random']:+.2f} "
                  f"({100 * b['gain_over_random_se']:.2f}) over random; {known['passing_pairs']} exit pairs pass."]
    for name, gate in result["gates"].items():
        lines += ["", f"Utility gate ({name}): fit on {gate['gate']['fit_images']} images, beta calibrated on "
                  f"{gate['gate']['calibration_images']}; MSE of predicted gains on validation "
                  f"{gate['eval_mse']:.5f} (a constant: {gate['eval_constant_mse']:.5f}); Spearman of predicted and "
                  f"true gain of the deepest exit {_signed(gate['eval_spearman_predicted_vs_true_gain'])}.", "",
                  "| budget | beta | mean depth | quality | envelope | random | over envelope (se) | over random (se) |"
                  " passes |", "|---|---|---|---|---|---|---|---|---|"]
        for row in gate["budgets"]:
            lines.append(f"| {row['target_fraction']:.2f} | {row['beta']:.4g} | {row['mean_cost']:.2f} | "
                         f"{_points(row['quality'])} | {_points(row['frontier'])} | {_points(row['random'])} | "
                         f"{100 * row['gain_over_frontier']:+.2f} ({100 * row['gain_over_frontier_se']:.2f}) | "
                         f"{100 * row['gain_over_random']:+.2f} ({100 * row['gain_over_random_se']:.2f}) | "
                         f"{'yes' if row['passes'] else 'no'} |")
    go = result["go"]
    lines += ["", f"**Go criterion**: deepest gate exit {go['depth_gain_points']:+.2f} points over the shallowest "
              f"({'>=' if go['depth_gain_ok'] else '<'} 1); best gate ({go['best_gate']}) passes at "
              f"{go['passing_budgets']} budgets ({'>=' if go['gate_ok'] else '<'} 2): "
              f"**{'GO' if go['go'] else 'NO-GO'}**.", ""]
    return "\n".join(lines)


def figure(result: dict, *, difficulty: np.ndarray, difficulty_name: str, val_quality: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = result["settings"]["gate_exits"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    exits = result["exits"]
    axes[0].plot(exits, 100 * np.asarray(result["dataset_miou"]), "o-", label="data-set mIoU")
    axes[0].plot(exits, 100 * np.asarray(result["mean_image_miou"]), "s-", label="mean per-image mIoU")
    axes[0].set(xlabel="exit (encoder layers; 0 = control)", ylabel="mIoU", title="quality per exit")
    axes[0].legend()
    pixel = result["pixel_accuracy_by_difficulty"]
    counts = np.asarray(pixel["counts"])
    if counts.sum() > 0:
        values = np.flatnonzero(counts)
        for k, row in enumerate(pixel["accuracy"]):
            axes[1].plot(values, [100 * row[v] for v in values], "-", color=plt.cm.viridis(k / max(1, len(exits) - 1)),
                         label=f"exit {k}")
        axes[1].set(xlabel="per-pixel difficulty (hops)", ylabel="pixel accuracy", title="accuracy by pixel difficulty")
        axes[1].legend(fontsize=7)
    else:
        axes[1].hist(100 * (val_quality[:, columns[-1]] - val_quality[:, columns[0]]), bins=40)
        axes[1].set(xlabel=f"gain exit {columns[-1]} - exit {columns[0]} (points)", ylabel="images",
                    title="per-image gain")
    gain = 100 * (val_quality[:, columns[-1]] - val_quality[:, columns[0]])
    axes[2].scatter(difficulty, gain, s=6, alpha=0.5)
    axes[2].axhline(0, color="grey", lw=0.8)
    rho = result["gain"]["spearman"].get(difficulty_name) or float("nan")
    axes[2].set(xlabel=difficulty_name, ylabel=f"gain exit {columns[-1]} - {columns[0]} (points)",
                title=f"per-image gain vs difficulty (Spearman {rho:+.2f})")
    fixed = 100 * np.asarray(result["mean_image_miou"])[columns]
    axes[3].plot(columns, fixed, "ko-", label="fixed exits")
    oracle = result["oracle"]
    axes[3].plot([r["mean_cost"] for r in oracle], [100 * r["quality"] for r in oracle], "g^--", label="oracle")
    for i, (name, gate) in enumerate(result["gates"].items()):
        rows = gate["budgets"]
        axes[3].errorbar([r["mean_cost"] for r in rows], [100 * r["quality"] for r in rows],
                         yerr=[100 * r["gain_over_frontier_se"] for r in rows], fmt="o", color=f"C{i}",
                         label=f"gate {name}")
        axes[3].plot([r["mean_cost"] for r in rows], [100 * r["random"] for r in rows], "x", color=f"C{i}",
                     label=f"random routing ({name})")
    axes[3].set(xlabel="mean encoder depth", ylabel="mean per-image mIoU", title="gates vs fixed exits")
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(result: dict, *, validation, val_quality: np.ndarray, run_dir: Path, tag: str = "") -> None:
    """`results{tag}.md` and `results{tag}.png` in `run_dir`."""
    name = result["gain"].get("by_quantile", {}).get("column") or next(iter(validation.difficulty), None)
    difficulty = validation.difficulty[name] if name else np.zeros(len(val_quality))
    (Path(run_dir) / f"results{tag}.md").write_text(markdown(result))
    figure(result, difficulty=difficulty, difficulty_name=name or "none", val_quality=val_quality,
           path=Path(run_dir) / f"results{tag}.png")


__all__ = ["figure", "markdown", "write_report"]
