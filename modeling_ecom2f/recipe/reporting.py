"""Tables, the PQ-against-GFLOPs trade-off plot and the Hub evaluation-results dict, from an evaluation report
(`mode_evaluation.evaluate_modes`). PQ is shown in points (x 100); GFLOPs are per image, papers' convention."""

from __future__ import annotations

import math
from pathlib import Path

from .routing import frontier_quality


def _mode_kind(name: str) -> str:
    return name.split("_", 1)[0]  # depth / gate / oracle


def percent(value) -> str:
    """A fraction in points with two decimals (`0.5123` -> `"51.23"`); `"n/a"` for None or NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def full_depth_mode(report: dict) -> str | None:
    """The name of the deepest fixed-depth mode of a report (None if no fixed depth was evaluated)."""
    depths = [int(n.split("_")[1]) for n in report["modes"] if _mode_kind(n) == "depth"]
    return f"depth_{max(depths)}" if depths else None


def points_delta(value, base) -> str:
    """`value - base` in points with a sign (`"+1.25"`); `"n/a"` when either is None or NaN."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (value, base)):
        return "n/a"
    return f"{100 * (value - base):+.2f}"


def mode_table(report: dict, *, quality: str, columns: list[str], cells) -> str:
    """A Markdown table of an evaluation report, one row per mode: its name, the task's `columns` (the cells
    `cells(figures, full_depth_quality)` gives, `full_depth_quality` being the deepest fixed depth's `quality` or
    None), then the GFLOPs (mean +- std, encoder share of full depth) and depth columns every task shares."""
    full = full_depth_mode(report)
    base = report["modes"][full]["gflops"]["encoder_mean"] if full else None
    base_quality = report["modes"][full][quality] if full else None
    header = ["mode", *columns, "encoder GFLOPs (mean +- std)", "% of full encoder", "total GFLOPs (mean +- std)",
              "mean depth", "depth histogram"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in report["modes"].items():
        g = r["gflops"]
        share = f"{100 * g['encoder_mean'] / base:.1f}" if base else "n/a"
        hist = " ".join(f"{k}:{v}" for k, v in r["depth_histogram"].items())
        row = [name, *cells(r, base_quality), f"{g['encoder_mean']:.4f} +- {g['encoder_std']:.4f}", share,
               f"{g['total_mean']:.4f} +- {g['total_std']:.4f}", f"{r['mean_depth']:.2f}", hist]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results_table(report: dict) -> str:
    """A Markdown table: one row per mode, with PQ/SQ/RQ, mIoU, mask AP, GFLOPs (mean +- std) and depths."""

    def cells(r: dict, base_pq) -> list[str]:
        ap = r["mask_ap"].get("AP") if r.get("mask_ap") else None
        return [percent(r["pq"]), points_delta(r["pq"], base_pq), percent(r["sq"]), percent(r["rq"]),
                percent(r["pq_things"]), percent(r["pq_stuff"]), percent(r.get("miou")), percent(ap)]

    return mode_table(report, quality="pq", columns=["PQ", "dPQ vs full", "SQ", "RQ", "PQ th", "PQ st", "mIoU",
                                                      "mask AP"], cells=cells)


def tradeoff_plot(report: dict, path: str | Path, *, title: str, metric: str = "pq", metric_label: str = "PQ") -> Path:
    """`metric` (PQ, or box AP for detection; in points) against mean encoder GFLOPs per image: fixed depths (line),
    gates (stars), oracles (diamonds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=120)
    modes = report["modes"]
    fixed = sorted((int(n.split("_")[1]), r) for n, r in modes.items() if _mode_kind(n) == "depth")
    if fixed:
        ax.plot([r["gflops"]["encoder_mean"] for _, r in fixed], [100 * r[metric] for _, r in fixed], "o-",
                color="tab:blue", label="fixed depth")
        for depth, r in fixed:
            ax.annotate(f"k={depth}", (r["gflops"]["encoder_mean"], 100 * r[metric]), textcoords="offset points",
                        xytext=(4, -12), fontsize=8, color="tab:blue")
    styles = {"gate": ("*", 14, "tab:red"), "oracle": ("D", 7, "tab:green")}
    for name, r in modes.items():
        kind = _mode_kind(name)
        if kind not in styles:
            continue
        marker, size, color = styles[kind]
        ax.plot(r["gflops"]["encoder_mean"], 100 * r[metric], marker, markersize=size, color=color, linestyle="none")
        ax.annotate(f"{name} (mean k={r['mean_depth']:.2f})", (r["gflops"]["encoder_mean"], 100 * r[metric]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8, color=color)
    for kind, (marker, size, color) in styles.items():
        if any(_mode_kind(n) == kind for n in modes):
            ax.plot([], [], marker, markersize=size, color=color, linestyle="none", label=kind)
    return save_plot(fig, ax, path, xlabel="deformable-encoder GFLOPs per image (mean)", ylabel=metric_label,
                     title=title, legend_loc="best")


def save_plot(fig, ax, path: str | Path, *, xlabel: str, ylabel: str, title: str, legend_loc: str) -> Path:
    """Label, grid and legend a trade-off plot (`legend_loc` a matplotlib location, or "below" the axes), save it as
    `path` (folders made) and close the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend_loc == "below":  # under the axes, where it covers no point
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    else:
        ax.legend(loc=legend_loc, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def hub_eval_results(report: dict, *, dataset_name: str, split: str | None, gate_mode: str | None) -> dict:
    """The evaluation-results dict of `hub.card` (PQ in points, total GFLOPs) for one gate."""
    data: dict = {"dataset": {"name": dataset_name, **({"split": split} if split else {})}}
    data["exits"] = [{"depth": int(n.split("_")[1]), "pq": round(100 * r["pq"], 3),
                      "gflops": round(r["gflops"]["total_mean"], 6)}
                     for n, r in report["modes"].items() if _mode_kind(n) == "depth"]
    if gate_mode is not None:
        r = report["modes"][gate_mode]
        data["gate"] = {"pq": round(100 * r["pq"], 3), "gflops": round(r["gflops"]["total_mean"], 6),
                        "mean_depth": round(r["mean_depth"], 4)}
    return data


def compact_summary(report: dict) -> dict:
    """Per mode: PQ, mean encoder/total GFLOPs and mean depth (for summary JSONs)."""
    return {name: {"pq": r["pq"], "encoder_gflops": r["gflops"]["encoder_mean"],
                   "total_gflops": r["gflops"]["total_mean"], "mean_depth": r["mean_depth"],
                   "miou": r.get("miou"), "mask_ap": (r.get("mask_ap") or {}).get("AP")}
            for name, r in report["modes"].items()}


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


def tradeoff_table(rows: list[dict]) -> str:
    """Each gate against the fixed-depth frontier and its random-routing control (`mode_rows`; with `_se` fields
    when the rows carry bootstrap standard errors), PQ in points."""
    lines = ["| mode | kind | beta | PQ | PQ things | PQ stuff | encoder GFLOPs (% of full) | mean depth | "
             "gain over frontier (SE) | gain over random (SE) |", "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(value, spec="+.2f"):
        return "" if value is None else format(value, spec)

    def gain(row, name):
        se = row.get(f"{name}_se")
        return fmt(row.get(name)) + ("" if se is None or row.get(name) is None else f" ({se:.2f})")

    for row in rows:
        lines.append(f"| {row['name']} | {row['kind']} | {fmt(row['beta'], 'g')} | {row['pq']:.2f} | "
                     f"{row['pq_things']:.2f} | {row['pq_stuff']:.2f} | {100 * row['encoder_gflops_fraction']:.1f}% | "
                     f"{row['mean_depth']:.2f} | {gain(row, 'gain_over_frontier')} | "
                     f"{gain(row, 'gain_over_random')} |")
    return "\n".join(lines)


__all__ = ["compact_summary", "full_depth_mode", "hub_eval_results", "mode_rows", "mode_table", "percent",
           "points_delta", "results_table", "save_plot", "tradeoff_plot", "tradeoff_table"]
