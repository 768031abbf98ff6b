"""Why PRO-SCALE trained from scratch falls short of the parent: training curves side by side, per-class PQ, and
from-scratch ablations at equal steps (which of staging, TRC and LPE costs the points).

Every model here is trained by the shipped parent's command (`examples/train_benchmark_parent.py`, the same data,
seed, batch, learning rate and 5000-step schedule), with its encoder flags appended. The ablations stop after the
first `--steps` steps of that schedule (`--stop_after_steps`; default 1000, a fifth of the schedule, chosen for the
machine's time) and are compared with the full PRO-SCALE run's checkpoint at the same step, so every probe has seen
the same batches at the same learning rates. Each probe is evaluated at full depth on the accuracy study's
validation images (the same 500), with per-class PQ.

    python benchmarks/accuracy_study_gap.py --study_dir outputs/accuracy_study_scratch   # after the from-scratch study

Each probe's run lives in `--probes_dir/<probe>` (`checkpoints/step_001000`, and its progress-bar output in
`train.log`); a probe whose checkpoint exists is not retrained (the full configuration's first 1000 steps are the
full run's, so its step-1000 checkpoint can be placed there instead of training it again).

The loss of a step-1 run is logged weighted by depth (`exit_loss_weighting="linear"`: weight k at exit k), so the
curves divide it by the mean weight of the run's exits: exact for a run at one depth, the expectation for runs that
sample exits (the parent: exits 2..6, mean weight 4). Writes `accuracy_study_gap.{json,md,png}` to `--docs_dir`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path


from accuracy_study import common_argv, make_data  # noqa: E402
from accuracy_study_scratch import read_training_log, training_log_rows  # noqa: E402
from accuracy_study_variants import PARENT, PARENTS, PRESETS  # noqa: E402


@dataclass(frozen=True)
class Probe:
    """One from-scratch ablation: the encoder flags appended to the parent's command, and what it isolates."""

    name: str
    argv: tuple[str, ...]
    label: str

    @property
    def depth(self) -> int:
        argv = list(self.argv)
        return int(argv[argv.index("--exit_layers") + 1])


STAGED = ("--encoder_layers", "9", "--token_scaling_layers", "3", "3", "3")
PROBES = (
    Probe("stock_full", ("--exit_layers", "6", "--eval_depths", "6"), "stock, 6 layers at full depth"),
    Probe("stock_3layers", ("--encoder_layers", "3", "--exit_layers", "3", "--eval_depths", "3"),
          "stock, 3 layers (as many all-level layers as (3,3,3))"),
    Probe("stock_lpe", ("--light_pixel_embedding", "--exit_layers", "6", "--eval_depths", "6"),
          "stock + LPE (no staging, no TRC)"),
    Probe("333_trc_conv", (*STAGED, "--token_recalibration", "--exit_layers", "9", "--eval_depths", "9"),
          "(3,3,3)+TRC, conv FPN (no LPE)"),
    Probe("111_trc_conv", ("--encoder_layers", "3", "--token_scaling_layers", "1", "1", "1", "--token_recalibration",
                           "--exit_layers", "3", "--eval_depths", "3"),
          "(1,1,1)+TRC, conv FPN (no LPE): 0.47x pixel decoder"),
    Probe("333_lpe", (*STAGED, "--light_pixel_embedding", "--exit_layers", "9", "--eval_depths", "9"),
          "(3,3,3)+LPE (no TRC)"),
    Probe("proscale_333_trc_lpe", (*STAGED, "--token_recalibration", "--light_pixel_embedding", "--exit_layers", "9",
                                   "--eval_depths", "9"), "(3,3,3)+TRC+LPE (PRO-SCALE as shipped)"),
)
#: The full (5000-step) runs whose curves are drawn beside the probes': shipped folder under examples/parents/.
FULL_RUNS = {"parent": "depth_benchmark", "proscale_333_trc_lpe": "proscale_333_trc_lpe",
             "combined_333_trc_lpe": "combined_333_trc_lpe"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study_dir", default="outputs/accuracy_study_scratch",
                        help="the from-scratch study's output folder (its data and evaluations)")
    parser.add_argument("--parent_data", default=None,
                        help="the parent's training images (default: STUDY_DIR/parent_data, rendered if missing)")
    parser.add_argument("--output_dir", default="outputs/accuracy_study_gap")
    parser.add_argument("--probes_dir", default=None, help="the ablation runs (DIR/<probe>; default OUTPUT_DIR)")
    parser.add_argument("--docs_dir", default="docs", help="'' disables")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the 5000-step schedule per ablation")
    parser.add_argument("--probes", nargs="*", default=None, help="subset of the probe names")
    parser.add_argument("--full_probes", nargs="*", default=[],
                        help="probes also trained to the end of the schedule and evaluated there (a full run each)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


# ------------------------------------------------------------------------------------------ training the probes
def step1_args(argv: list[str], data: Path, output: Path) -> argparse.Namespace:
    """`train_early_exit.py`'s arguments of the parent command plus `argv` (what `train_benchmark_parent.py` runs)."""
    from modeling_ecom2f.experiments import benchmark_parent

    from modeling_ecom2f.recipe.arguments import build_train_early_exit_parser

    return build_train_early_exit_parser().parse_args(
        ["--dataset", "disk", "--dataset_path", str(data), "--output_dir", str(output),
         *benchmark_parent.PARENT_ARGS, *argv])


def train_probe(probe: Probe, folder: Path, data: Path, steps: int | None) -> None:
    """The parent's command with the probe's flags, stopped after `steps` steps (None: the whole schedule), skipped
    when that checkpoint (or the trained model) exists and resumed from the last checkpoint otherwise."""
    from modeling_ecom2f.experiments import benchmark_parent

    done = folder / "model.safetensors" if steps is None else folder / "checkpoints" / f"step_{steps:06d}"
    if done.exists() or (folder / "model.safetensors").is_file():
        return
    import contextlib

    resume = ["--resume_from_checkpoint", "latest"] if (folder / "checkpoints").is_dir() else []
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
        stop = [] if steps is None else ["--stop_after_steps", str(steps)]
        benchmark_parent.main(["--output_dir", str(folder), "--data_dir", str(data), *probe.argv, *stop,
                                     *resume])  # its progress bar: the curve


def checkpoint_model(probe: Probe, checkpoint: Path, out: Path, data: Path) -> Path:
    """A model folder from a step-1 checkpoint: the model `train_early_exit.py` builds for the command, with the
    checkpoint's weights (strict), and the image processor of its image size."""
    import torch
    from safetensors.torch import load_file

    from modeling_ecom2f.recipe.data import build_image_processor, load_split
    from modeling_ecom2f.recipe.modeling import build_model

    if (out / "model.safetensors").is_file():
        return out
    args = step1_args(list(probe.argv), data, out)
    _, label_info = load_split(args, "train")
    torch.manual_seed(0)
    model = build_model(args, label_info)
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    model.save_pretrained(out)
    build_image_processor(image_size=args.image_size).save_pretrained(out)
    return out


def evaluate_probe(model: Path, out: Path, data: Path, depth: int, seed: int) -> dict:
    from modeling_ecom2f.recipe.arguments import build_evaluate_parser
    from modeling_ecom2f.recipe.evaluation_step import evaluate_model

    if not (out / "evaluation.json").is_file():
        evaluate_model(build_evaluate_parser().parse_args(
            common_argv(PRESETS["default"], data, seed) + ["--model_name_or_path", str(model), "--output_dir",
                                                          str(out), "--no_gate", "--no_random_routing", "--depths",
                                                          str(depth)]))
    return json.loads((out / "evaluation.json").read_text(encoding="utf-8"))["modes"][f"depth_{depth}"]


# ------------------------------------------------------------------------------------------------------- curves
def mean_exit_weight(config: dict) -> float:
    """The expected step-1 loss weight of a run (linear weighting: the mean of its exits; uniform: 1)."""
    if config.get("exit_loss_weighting", "linear") == "uniform":
        return 1.0
    exits = config["exit_layers"]
    return sum(exits) / len(exits)


def curve(log: Path, weight: float) -> list[tuple[int, float]]:
    """(step, logged loss / weight) of a run's log (a `training_log.tsv` or its progress-bar output)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    rows = read_training_log(log) if text.startswith("step\t") else training_log_rows(text)
    return [(r["step"], r["loss"] / weight) for r in rows]


def write_outputs(result: dict, curves: dict, folders: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# PRO-SCALE from scratch: where the gap to the parent comes from", "", f"Command: `{result['command']}`.",
             "", result["description"], ""]
    if result["full_runs"]:
        lines += ["## Full runs (the whole 5000-step schedule) at full depth, 500 validation images", "",
                  "| model | PQ | PQ things | PQ stuff | mIoU | mask AP | AP small | AP medium |",
                  "|---|---|---|---|---|---|---|---|"]
    for name, r in result["full_runs"].items():
        lines.append(f"| {name} | {r['pq']:.2f} | {r['pq_things']:.2f} | {r['pq_stuff']:.2f} | {r['miou']:.2f} | "
                     f"{r['mask_ap']:.2f} | {r['mask_ap_small']:.2f} | {r['mask_ap_medium']:.2f} |")
    steps = result["probe_steps"]
    lines += ["", f"## From-scratch ablations after the first {steps} steps of the same schedule", "",
              "| probe | what it isolates | PQ | PQ things | PQ stuff | mIoU | mask AP | AP small | AP medium | "
              "loss at that step (unweighted) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["probes"].items():
        lines.append(f"| {name} | {r['label']} | {r['pq']:.2f} | {r['pq_things']:.2f} | {r['pq_stuff']:.2f} | "
                     f"{r['miou']:.2f} | {r['mask_ap']:.2f} | {r['mask_ap_small']:.2f} | {r['mask_ap_medium']:.2f} | "
                     f"{'-' if r['loss'] is None else format(r['loss'], '.2f')} |")
    classes = result["per_class"]
    if classes:
        models = list(next(iter(classes.values()))["pq"])
        lines += ["", "## Per-class PQ (full depth)", "",
                  "| class | kind | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
        for label, c in classes.items():
            lines.append(f"| {label} | {c['kind']} | " + " | ".join(
                "-" if c["pq"][m] is None else f"{c['pq'][m]:.1f}" for m in models) + " |")
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    for name, points in curves.items():
        ax.plot([s for s, _ in points], [v for _, v in points], label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("training step (batch 8)")
    ax.set_ylabel("training loss / mean exit weight")
    ax.set_title("From scratch with the parent's command: training loss (mean of 50 steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "accuracy_study_gap.json").write_text(json.dumps({**result, "curves": curves}, indent=2),
                                                        encoding="utf-8")
        (folder / "accuracy_study_gap.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        fig.savefig(folder / "accuracy_study_gap.png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------- main
def figures(mode: dict) -> dict:
    """PQ (all, things, stuff), mIoU and mask AP (all, small and medium objects: COCO's area ranges) in percent."""
    ap = mode.get("mask_ap") or {}
    out = {k: round(100 * mode[k], 2) for k in ("pq", "pq_things", "pq_stuff", "miou")}
    for key, name in (("AP", "mask_ap"), ("APs", "mask_ap_small"), ("APm", "mask_ap_medium")):
        out[name] = None if ap.get(key) is None else round(100 * ap[key], 2)
    return out


def per_class_table(evaluations: dict[str, dict], id2label: dict, thing_ids: set[int]) -> dict:
    """{class label: {"kind", "pq": {model: PQ or None}}} from each model's evaluation `per_class`."""
    out = {}
    for cid, label in sorted(id2label.items(), key=lambda item: int(item[0])):
        pq = {m: (round(100 * e["per_class"][str(cid)]["pq"], 2) if str(cid) in e.get("per_class", {}) else None)
              for m, e in evaluations.items()}
        out[label] = {"kind": "thing" if int(cid) in thing_ids else "stuff", "pq": pq}
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    args = build_parser().parse_args(argv)
    study, out = Path(args.study_dir), Path(args.output_dir)
    data = make_data(PRESETS["default"], study, args.seed)  # the study's 500 validation images
    parent_data = Path(args.parent_data) if args.parent_data else study / "parent_data"
    probes_dir = Path(args.probes_dir) if args.probes_dir else out
    probes = [p for p in PROBES if args.probes is None or p.name in args.probes]
    results, curves, evaluations = {}, {}, {}
    for probe in tqdm(probes, desc="probes", unit="probe"):
        run = probes_dir / probe.name
        train_probe(probe, run, parent_data, args.steps)
        checkpoint = run / "checkpoints" / f"step_{args.steps:06d}"
        model = checkpoint_model(probe, checkpoint, out / probe.name / "model", data)
        mode = evaluate_probe(model, out / probe.name / "evaluation", data, probe.depth, args.seed)
        config = json.loads((model / "config.json").read_text(encoding="utf-8"))
        points = curve(run / "train.log", mean_exit_weight(config)) if (run / "train.log").is_file() else []
        points = [(step, loss) for step, loss in points if step <= args.steps]  # a full probe's rest: below
        curves[f"probe: {probe.label}"] = points
        evaluations[f"{probe.name} @{args.steps}"] = mode
        results[probe.name] = {"label": probe.label, **figures(mode), "loss": dict(points).get(args.steps),
                               "command": " ".join(["python examples/train_benchmark_parent.py", *probe.argv,
                                                    "--stop_after_steps", str(args.steps)])}
    for name, shipped in FULL_RUNS.items():
        folder = PARENTS / shipped
        if (folder / "training_log.tsv").is_file():
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            curves[f"{name} (5000 steps, exits {config['exit_layers'][0]}..{config['exit_layers'][-1]})"] = curve(
                folder / "training_log.tsv", mean_exit_weight(config))
    full, finals = {}, {}
    for name in ("parent", "proscale_333_trc_lpe", "combined_333_trc_lpe"):
        file = study / name / "evaluation" / "evaluation.json"
        if file.is_file():
            modes = json.loads(file.read_text(encoding="utf-8"))["modes"]
            deepest = max((m for m in modes if m.startswith("depth_")), key=lambda m: int(m.split("_")[1]))
            full[f"{name} ({deepest.replace('_', ' ')})"] = figures(modes[deepest])
            finals[f"{name} @5000"] = modes[deepest]
    for probe in (p for p in PROBES if p.name in args.full_probes):
        run = probes_dir / probe.name
        train_probe(probe, run, parent_data, None)  # the whole schedule: the run's own trained model
        mode = evaluate_probe(run, out / probe.name / "evaluation_full", data, probe.depth, args.seed)
        full[f"probe {probe.name}: {probe.label} (depth {probe.depth})"] = figures(mode)
        finals[f"{probe.name} @5000"] = mode
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        curves[f"probe: {probe.label}"] = curve(run / "train.log", mean_exit_weight(config))
    config = json.loads((PARENT / "config.json").read_text(encoding="utf-8"))
    from modeling_ecom2f.recipe.data import load_split

    _, label_info = load_split(step1_args([], data, out), "validation")
    given = sys.argv[1:] if argv is None else argv
    result = {"command": " ".join(["python benchmarks/accuracy_study_gap.py", *given]),
              "description": __doc__.split("\n\n")[1].replace("\n", " "), "probe_steps": args.steps,
              "full_runs": full, "probes": results,
              "per_class": per_class_table({**finals, **evaluations}, config["id2label"], set(label_info.thing_ids))
              if finals or evaluations else {}}
    write_outputs(result, curves, [out] + ([Path(args.docs_dir)] if args.docs_dir else []))
    print((out / "accuracy_study_gap.md").read_text(encoding="utf-8"))
    return result


if __name__ == "__main__":
    main()
