"""Does a trained parent's encoder depth matter per image? Reads an evaluation folder of `examples/evaluate_model.py`
(every fixed depth and the oracle on a validation split) and the data set it ran on, and writes
`parent_depth_analysis.{json,md}` into the evaluation folder:

- PQ, PQ things and PQ stuff per fixed depth (the evaluation's own figures);
- the per-image PQ gain of full depth over the shallowest exit: mean, std, share of images that gain, and its
  Spearman correlation with every per-image difficulty column of the data (analysis only);
- the mean gain per value of one column (e.g. rooms) and the oracle's gain over the fixed-depth frontier with its
  bootstrap standard error.

    python benchmarks/parent_depth_analysis.py --evaluation runs/maze_parent_eval --data runs/maze_parent/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from modeling_ecom2f.experiments.report_statistics import bootstrap_gains, difficulty_statistics, per_image_series
from modeling_ecom2f.recipe.mode_evaluation import PER_EXIT_COUNTS_FILE, load_per_exit_counts
from modeling_ecom2f.recipe.reporting import mode_rows

COLUMNS = ("difficulty", "hops", "mean_hops", "rooms", "cells", "nearest_marker_accuracy")


def analyse(evaluation: Path, data: Path, *, split: str = "validation", group_by: str = "rooms",
            resamples: int = 1000) -> dict:
    import datasets

    report = json.loads((evaluation / "evaluation.json").read_text(encoding="utf-8"))
    per_image = json.loads((evaluation / "per_image.json").read_text(encoding="utf-8"))
    rows = mode_rows(report)
    rows_split = datasets.load_from_disk(str(data))[split]
    columns = {name: np.asarray(rows_split[name], dtype=np.float64) for name in COLUMNS
               if name in rows_split.column_names}
    fixed = [r for r in rows if r["kind"] == "fixed"]
    out = {"images": report["num_images"],
           "fixed": {r["name"]: {k: r[k] for k in ("pq", "pq_things", "pq_stuff", "miou")} for r in fixed},
           "spearman_gain": {name: difficulty_statistics(per_image, rows, column, difficulty_name=name)[
               "spearman_gain_vs_difficulty"] for name, column in columns.items()}}
    first = next(iter(columns.values()))
    stats = difficulty_statistics(per_image, rows, first, difficulty_name=next(iter(columns)))
    out["gain"], out["gain_definition"] = stats["gain"], stats["gain_definition"]
    if group_by in columns:
        series = per_image_series(per_image, rows, columns[group_by])
        out["mean_gain_by"] = {"column": group_by, "groups": {
            f"{value:g}": {"images": int((series["difficulty"] == value).sum()),
                           "mean_gain": float(series["gain"][series["difficulty"] == value].mean())}
            for value in np.unique(series["difficulty"])}}
    errors = bootstrap_gains(load_per_exit_counts(evaluation / PER_EXIT_COUNTS_FILE), per_image, rows,
                             resamples=resamples)
    out["oracle"] = {r["name"]: {"pq": r["pq"], "mean_depth": r["mean_depth"], "frontier_pq": r["frontier_pq"],
                                 "gain_over_frontier": r["gain_over_frontier"],
                                 "gain_over_frontier_se": errors[r["name"]]["gain_over_frontier_se"]}
                     for r in rows if r["kind"] == "oracle"}
    return out


def markdown(result: dict) -> str:
    lines = ["| depth | PQ | PQ things | PQ stuff | mIoU |", "|---|---|---|---|---|"]
    for name, r in result["fixed"].items():
        lines.append(f"| {name} | {r['pq']:.2f} | {r['pq_things']:.2f} | {r['pq_stuff']:.2f} | "
                     f"{'' if r['miou'] is None else format(r['miou'], '.2f')} |")
    gain = result["gain"]
    lines += ["", f"Per-image gain ({result['gain_definition']}): mean {gain['mean']:+.2f}, std {gain['std']:.2f}, "
                  f"{100 * gain['share_positive']:.0f}% of images gain. Spearman with "
                  + ", ".join(f"{k} {'n/a' if v is None else format(v, '+.3f')}"
                              for k, v in result["spearman_gain"].items()) + "."]
    if "mean_gain_by" in result:
        lines.append(f"Mean gain by {result['mean_gain_by']['column']}: " + ", ".join(
            f"{k}: {v['mean_gain']:+.2f} ({v['images']} images)" for k, v in result["mean_gain_by"]["groups"].items()))
    for name, r in result["oracle"].items():
        lines.append(f"{name}: PQ {r['pq']:.2f} at mean depth {r['mean_depth']:.2f}, frontier {r['frontier_pq']:.2f}, "
                     f"gain {r['gain_over_frontier']:+.2f} (SE {r['gain_over_frontier_se']:.2f}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluation", type=Path, required=True, help="output folder of examples/evaluate_model.py")
    parser.add_argument("--data", type=Path, required=True, help="the save_to_disk data set it evaluated")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--group_by", default="rooms")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    result = analyse(args.evaluation, args.data, split=args.split, group_by=args.group_by, resamples=args.resamples)
    (args.evaluation / "parent_depth_analysis.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    text = markdown(result)
    (args.evaluation / "parent_depth_analysis.md").write_text(text, encoding="utf-8")
    print(text)
    return result


if __name__ == "__main__":
    main()
