"""The main job's results page: wall time, the plan, the trade-off table (PQ / encoder GFLOPs / mean depth per fixed
depth, gate and oracle), the acceptance check of the gates, the full metrics table and the plot, written to
`OUTPUT_DIR/results_main_job.{md,json}` and, for the default preset, to `docs/`.

The acceptance figures are checked as stated, on the validation split, without tuning anything: the gate at the
smallest beta must stay within 1 PQ point of full depth using at most 75% of the full-depth encoder GFLOPs, and the
gate at the largest beta must use at most 50% of them.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

from .reporting import full_depth_mode, results_table
from .runtime import write_json


def acceptance(report: dict, betas: list[float]) -> dict:
    """The two acceptance checks (None where a gate or the full depth was not evaluated)."""
    full = full_depth_mode(report)
    if full is None:
        return {}
    base = report["modes"][full]
    checks = {}
    small, large = min(betas), max(betas)
    for beta, rule in ((small, "small"), (large, "large")):
        gate = report["modes"].get(f"gate_beta{beta:g}")
        if gate is None:
            continue
        share = gate["gflops"]["encoder_mean"] / base["gflops"]["encoder_mean"]
        delta = 100 * (gate["pq"] - base["pq"])
        if rule == "small":
            passed = delta >= -1.0 and share <= 0.75
            text = "within 1 PQ of full depth at <= 75% of full-depth encoder GFLOPs"
        else:
            passed = share <= 0.50
            text = "<= 50% of full-depth encoder GFLOPs"
        checks[f"beta={beta:g}"] = {"rule": text, "delta_pq_points": round(delta, 3),
                                    "encoder_gflops_share": round(share, 4), "passed": bool(passed)}
    return checks


def tradeoff_rows(report: dict) -> str:
    """Markdown: PQ, encoder GFLOPs (mean, % of full) and mean depth per mode."""
    full = full_depth_mode(report)
    base = report["modes"][full]["gflops"]["encoder_mean"] if full else None
    lines = ["| mode | PQ | encoder GFLOPs / image | % of full-depth encoder | total GFLOPs / image | mean depth |",
             "|---|---|---|---|---|---|"]
    for name, r in report["modes"].items():
        share = f"{100 * r['gflops']['encoder_mean'] / base:.1f}%" if base else "n/a"
        lines.append(f"| {name} | {100 * r['pq']:.2f} | {r['gflops']['encoder_mean']:.4f} | {share} | "
                     f"{r['gflops']['total_mean']:.4f} | {r['mean_depth']:.2f} |")
    return "\n".join(lines)


def publish_results(summary: dict, *, paths, args: argparse.Namespace) -> None:
    """Write the results page and plot (only when the evaluation ran in this invocation)."""
    report_file = paths.eval / "evaluation.json"
    if "eval" not in summary.get("steps", []) or not report_file.is_file():
        return
    report = json.loads(report_file.read_text(encoding="utf-8"))
    checks = acceptance(report, list(args.betas))
    summary["acceptance"] = checks
    result = {
        "command": "python examples/run_eco_m2f.py" + ("" if args.preset == "default" else f" --preset {args.preset}"),
        "wall_seconds": summary.get("wall_seconds"), "timings_s": summary.get("timings_s"),
        "plan": summary.get("plan"), "preset": summary.get("preset_values"), "betas": args.betas,
        "machine": {"cpu_count": _cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "validation_images": report["num_images"], "modes": report["modes"], "acceptance": checks,
        "derived_label_histograms": (summary.get("step2") or {}).get("label_histograms"),
        "gates": {beta: {k: v for k, v in (s or {}).items() if k in ("train", "holdout", "label_histogram")}
                  for beta, s in (summary.get("step3") or {}).items()},
    }
    lines = [
        "# ECO-M2F main job: results",
        "",
        f"Command: `{result['command']}`; wall time **{summary.get('wall_seconds', 0) / 60:.1f} min** on "
        f"{_cpu_count()} CPU cores (step timings in seconds: {summary.get('timings_s')}).",
        "",
        f"Validation split of the synthetic data set ({report['num_images']} images). PQ in points; GFLOPs per image "
        "in the papers' convention (one multiply-add = one FLOP, deformable sampling not counted); the encoder is "
        "the pixel decoder's deformable transformer encoder. Oracle = per image the derived label "
        "argmax_k(PQ_k - beta k) of its own per-image PQ.",
        "",
        tradeoff_rows(report),
        "",
        "## Acceptance",
        "",
    ]
    full = full_depth_mode(report)
    if full and report["modes"][full]["pq"] < 0.10:
        lines.append(f"- note: full-depth PQ is only {100 * report['modes'][full]['pq']:.2f}: the model is too weakly "
                     "trained for these checks to say much")
    for name, check in checks.items():
        lines.append(f"- gate {name}: {check['rule']}: dPQ = {check['delta_pq_points']:+.2f} points, encoder GFLOPs "
                     f"= {100 * check['encoder_gflops_share']:.1f}% of full depth -> "
                     f"**{'met' if check['passed'] else 'NOT met'}**")
    lines += ["", "## All metrics", "", results_table(report), "", "![trade-off](tradeoff.png)", ""]
    if summary.get("plan"):
        lines += ["## Plan (measured speeds and step-1 sizing)", "", "```", json.dumps(summary["plan"], indent=1), "```",
                  ""]
    text = "\n".join(lines)
    targets = [paths.root]
    docs = args.docs_dir if args.docs_dir is not None else ("docs" if args.preset == "default" else "")
    if docs:
        targets.append(Path(docs))
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results_main_job.md").write_text(text, encoding="utf-8")
        write_json(folder / "results_main_job.json", result)
        shutil.copyfile(paths.eval / "tradeoff.png", folder / "tradeoff.png")
    print(text, flush=True)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["acceptance", "publish_results", "tradeoff_rows"]
