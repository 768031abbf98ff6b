"""The evaluation step: PQ/SQ/RQ, mIoU, mask AP, GFLOPs (mean and spread per image) and the depth histogram of a
model on a split, for every fixed depth, its gate (and the gates of other step-3 outputs of the same parent) and
the oracle per beta; writes the report, a Markdown table, the trade-off plot and a summary JSON."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from .mode_evaluation import PER_EXIT_COUNTS_FILE, GateSpec, evaluate_modes, save_per_exit_counts
from .reporting import full_depth_mode, mode_rows, tradeoff_plot, tradeoff_table
from .runtime import RecipeError, end_run, write_json, write_summary
from .tasks import get_task, start_trained_run

logger = logging.getLogger("modeling_ecom2f.recipe")


def check_same_parent(parent, other, *, name: str) -> None:
    """Raise unless `other` has `parent`'s weights everywhere but in the gate (so their gates can be swapped)."""
    theirs = other.state_dict()
    for key, value in parent.state_dict().items():
        if ".gate." in key:
            continue
        if key not in theirs or theirs[key].shape != value.shape or not torch.equal(theirs[key], value):
            raise RecipeError(f"{name} is not a gate trained on this parent: weight {key} differs")
    if list(other.config.exit_layers) != list(parent.config.exit_layers):
        raise RecipeError(f"{name} has exits {other.config.exit_layers}, the parent {parent.config.exit_layers}")


def _step3_summary(folder: str | Path) -> dict:
    summary = Path(folder) / "train_gate_summary.json"
    return json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}


def gate_mode_name(folder: str | Path) -> str:
    """`gate_utility` for a step-3 utility gate, `gate_beta<beta>` for a classification gate (its summary names the
    beta), else `gate_<folder name>`."""
    summary = _step3_summary(folder)
    if summary.get("gate_objective") == "utility":
        return "gate_utility"
    if summary.get("beta") is not None:
        return f"gate_beta{summary['beta']:g}"
    return f"gate_{Path(folder).name}"


def collect_gates(model, args: argparse.Namespace, *, task=None) -> dict:
    """Mode name -> `GateSpec`: the model's own trained gate, then `--gate_models` (utility gates at `--gate_betas`)."""
    task = get_task(task if task is not None else args)
    betas = getattr(args, "gate_betas", None) or None
    gates: dict = {}
    if model.config.gate_trained and not args.no_gate:
        gates["gate"] = GateSpec.of(model, betas)
    for folder in args.gate_models:
        other = task.load_trained_model(folder).to(next(model.parameters()).device)
        if not other.config.gate_trained:
            raise RecipeError(f"{folder} has no trained gate (config.gate_trained is False)")
        check_same_parent(model, other, name=folder)
        name = gate_mode_name(folder)
        if name in gates:
            raise RecipeError(f"two gates would both be reported as {name!r}: evaluate them in separate runs")
        gates[name] = GateSpec.of(other, betas, label_beta=_step3_summary(folder).get("beta"))
    return gates


def write_report(report: dict, output_dir: str | Path, *, title: str, task=None) -> dict[str, Path]:
    """`segmentation_evaluation.json`, `per_image.json`, `segmentation_evaluation.md`, `tradeoff.png` and (segmentation) `per_exit_counts.npz`
    in `output_dir`."""
    task = get_task(task)
    out = Path(output_dir)
    paths = {
        "report": write_json(out / "evaluation.json", {k: v for k, v in report.items()
                                                       if k not in ("per_image", "per_exit_counts")}),
        "per_image": write_json(out / "per_image.json", report["per_image"]),
    }
    if "per_exit_counts" in report:
        paths["per_exit_counts"] = save_per_exit_counts(out / PER_EXIT_COUNTS_FILE, report["per_exit_counts"])
    table = task.results_table(report)
    if (task.name == "segmentation" and any(r.get("kind") == "gate" for r in report["modes"].values())
            and full_depth_mode(report) is not None):
        table += ("\n\nEach gate against the fixed-depth frontier (upper concave envelope of the fixed depths) and "
                  "against its random-routing control (its own decisions shuffled across images), PQ in points:\n\n"
                  + tradeoff_table(mode_rows(report)))
    (out / "evaluation.md").write_text(f"# {title}\n\n{table}\n", encoding="utf-8")
    paths["table"] = out / "evaluation.md"
    paths["plot"] = tradeoff_plot(report, out / "tradeoff.png", title=title, metric=task.quality,
                                  metric_label=task.quality_label)
    return paths


def evaluate_model(args: argparse.Namespace) -> dict:
    """Run the evaluation from parsed `build_evaluate_parser()` arguments; returns the summary dict."""
    start = time.perf_counter()
    task, accelerator, dataset, label_info, model, processor = start_trained_run(
        args, step="evaluation", project_name="ecom2f_eval")
    gates = collect_gates(model, args, task=task)
    depths = args.depths if args.depths else None
    logger.info("***** Evaluation: %d %s images; depths %s, gates %s, oracle betas %s *****", len(dataset),
                args.split, depths or model.config.exit_layers, list(gates), args.oracle_betas)
    report = evaluate_modes(accelerator=accelerator, model=model, processor=processor, dataset=dataset,
                            label_info=label_info, args=args, depths=depths, gates=gates,
                            oracle_betas=args.oracle_betas, random_routing_controls=not args.no_random_routing,
                            routing_seed=args.routing_seed, with_ap=not getattr(args, "no_mask_ap", False), task=task)
    summary = {"step": "evaluate_model", "split": args.split, "num_images": len(dataset),
               "modes": task.compact_summary(report), "seconds": round(time.perf_counter() - start, 2),
               "num_processes": accelerator.num_processes}
    if accelerator.is_main_process:
        title = f"{Path(args.model_name_or_path).name} on {args.dataset}/{args.split} ({len(dataset)} images)"
        paths = write_report(report, args.output_dir, title=title, task=task)
        summary["files"] = {k: str(v) for k, v in paths.items()}
        print(task.results_table(report), flush=True)
    accelerator.log({f"eval/{name}/{task.quality}": r[task.quality] for name, r in report["modes"].items()})
    write_summary(accelerator, args.output_dir, "evaluate_model", summary)
    end_run(accelerator)
    return summary


__all__ = ["check_same_parent", "collect_gates", "gate_mode_name", "evaluate_model", "write_report"]
