"""The whole ECO-M2F recipe in one command (`examples/run_eco_m2f.py`): data, step 1, step 2, step 3 for several
betas, evaluation (fixed depths, gates, oracles), the trade-off table and plot, and a Hub-ready export.

The default preset fits a time budget on a small CPU: it first measures the speed of a training step and of an
inference batch on this machine, then sizes step 1 (most of the budget) so the whole job ends within
`--time_budget_minutes`, and prints that plan. Larger presets use fixed step counts. Every step reads its inputs
from `--output_dir`, so `--steps` can rerun any subset (e.g. only step 3 and the evaluation with new betas).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .arguments import (
    build_derive_exit_dataset_parser,
    build_evaluate_parser,
    build_train_early_exit_parser,
    build_train_gate_parser,
)
from .runtime import RecipeError, write_json

logger = logging.getLogger("modeling_ecom2f.recipe")

STEPS = ("data", "step1", "step2", "step3", "eval", "export")


@dataclass(frozen=True)
class Preset:
    """Sizes of a main-job run. `step1_steps=None` means: fill the time budget."""

    image_size: int
    train_images: int
    validation_images: int
    backbone: str
    feature_size: int
    encoder_layers: int
    decoder_layers: int
    num_queries: int
    batch_size: int
    learning_rate: float
    step1_steps: int | None
    time_budget_minutes: float | None
    eval_batch_size: int = 16


PRESETS = {
    # Seconds: for CI and smoke tests (64x64 images, 3 encoder layers, exits 2..3, two step-1 steps).
    "tiny": Preset(image_size=64, train_images=12, validation_images=6, backbone="swin-mini", feature_size=32,
                   encoder_layers=3, decoder_layers=2, num_queries=10, batch_size=4, learning_rate=1e-3,
                   step1_steps=2, time_budget_minutes=None, eval_batch_size=8),
    # ~20 minutes on a 2-core CPU: 128x128 images, Swin (embed 32, depths 1-1-2-1), 64-d pixel decoder, 6 encoder
    # layers with exits 2..6, 4 decoder layers, 20 queries.
    "default": Preset(image_size=128, train_images=256, validation_images=96, backbone="swin-mini", feature_size=64,
                      encoder_layers=6, decoder_layers=4, num_queries=20, batch_size=8, learning_rate=5e-4,
                      step1_steps=None, time_budget_minutes=20.0),
    "medium": Preset(image_size=192, train_images=1000, validation_images=200, backbone="swin-mini", feature_size=96,
                     encoder_layers=6, decoder_layers=6, num_queries=50, batch_size=8, learning_rate=3e-4,
                     step1_steps=6000, time_budget_minutes=None),
    "large": Preset(image_size=256, train_images=4000, validation_images=500, backbone="swin-tiny", feature_size=256,
                    encoder_layers=6, decoder_layers=9, num_queries=100, batch_size=16, learning_rate=1e-4,
                    step1_steps=30000, time_budget_minutes=None),
}
#: The two default betas, fixed before any run from the paper's scale (seeds.md 2.3: COCO 0.0005 / 0.02,
#: Cityscapes 0.003 / 0.01): one that keeps quality, one that saves most of the encoder.
DEFAULT_BETAS = (0.003, 0.03)


def build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the whole ECO-M2F recipe (data, steps 1-3, evaluation, plot, "
                                                 "export) on the embedded synthetic data set.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--output_dir", default="outputs/main_job")
    parser.add_argument("--docs_dir", default=None,
                        help="also write tradeoff.png and results_main_job.md/.json here (default: docs for the "
                             "default preset, nothing otherwise; pass '' to disable)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS))
    parser.add_argument("--time_budget_minutes", type=float, default=None, help="override the preset's budget")
    parser.add_argument("--step1_steps", type=int, default=None, help="fixed step-1 length (no budget planning)")
    parser.add_argument("--learning_rate", type=float, default=None, help="override the preset's step-1 learning rate")
    parser.add_argument("--train_images", type=int, default=None)
    parser.add_argument("--validation_images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None)
    parser.add_argument("--resume", action="store_true", help="resume step 1 from its latest checkpoint")
    parser.add_argument("--num_threads", type=int, default=1,
                        help="torch CPU threads per process; 1 (default) is the fastest for these small models here: "
                             "on a 2-core machine shared with other jobs, 2 OpenMP threads made a training step ~5x "
                             "slower (measured 4.5 s vs 0.8 s)")
    return parser


class Paths:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.step1 = self.root / "step1_parent"
        self.step2 = self.root / "step2_derived"
        self.eval = self.root / "evaluation"
        self.export = self.root / "hub_export"

    def gate(self, beta: float) -> Path:
        return self.root / f"step3_gate_beta{beta:g}"


def _common(preset: Preset, paths: Paths, args: argparse.Namespace) -> list[str]:
    out = ["--dataset", "disk", "--dataset_path", str(paths.data), "--seed", str(args.seed),
           "--per_device_eval_batch_size", str(preset.eval_batch_size), "--num_threads", str(args.num_threads)]
    if args.cpu:
        out.append("--cpu")
    if args.mixed_precision:
        out += ["--mixed_precision", args.mixed_precision]
    return out


def step1_argv(preset: Preset, paths: Paths, args: argparse.Namespace, steps: int) -> list[str]:
    return _common(preset, paths, args) + [
        "--output_dir", str(paths.step1), "--image_size", str(preset.image_size), "--backbone", preset.backbone,
        "--feature_size", str(preset.feature_size), "--encoder_layers", str(preset.encoder_layers),
        "--decoder_layers", str(preset.decoder_layers), "--num_queries", str(preset.num_queries),
        "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(args.learning_rate or preset.learning_rate),
        "--max_train_steps", str(steps), "--checkpointing_steps", str(max(1, steps // 4)), "--logging_steps", "10",
        "--eval_depths",
    ] + (["--resume_from_checkpoint", "latest"] if args.resume else [])


def make_data(preset: Preset, paths: Paths, args: argparse.Namespace) -> float:
    """Render the synthetic data set once and save it; later steps read it from disk."""
    from ..data import SyntheticPanopticConfig, make_synthetic_panoptic_dataset

    start = time.perf_counter()
    step1 = build_train_early_exit_parser().parse_args([])
    config = SyntheticPanopticConfig(height=preset.image_size, width=preset.image_size,
                                     num_train_images=preset.train_images,
                                     num_validation_images=preset.validation_images, seed=args.seed,
                                     max_objects=step1.synthetic_max_objects,
                                     min_object_size=step1.synthetic_min_object_size)
    splits, _ = make_synthetic_panoptic_dataset(config=config)
    if paths.data.exists():
        shutil.rmtree(paths.data)
    splits.save_to_disk(str(paths.data))
    return time.perf_counter() - start


def measure_speed(preset: Preset, paths: Paths, args: argparse.Namespace) -> dict:
    """Seconds per step-1 training step and per inference image (forward at each exit + post-processing)."""
    from .data import build_image_processor, inference_dataloader, load_split, model_inputs, train_dataloader
    from .evaluation import BatchEvaluator
    from .modeling import build_model

    targs = build_train_early_exit_parser().parse_args(step1_argv(preset, paths, args, 1))
    train_set, label_info = load_split(targs, "train")
    torch.manual_seed(args.seed)
    model = build_model(targs, label_info)
    processor = build_image_processor(image_size=preset.image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    loader = iter(train_dataloader(targs, train_set, label_info, processor))
    exits = model.config.exit_layers
    train_times = []
    model.train()
    for depth in [exits[-1]] + exits[::-1]:  # the first step warms up and is not timed
        batch = next(loader)
        start = time.perf_counter()
        loss = model(**model_inputs(batch, "cpu"), num_encoder_layers=depth).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        train_times.append(time.perf_counter() - start)
    model.eval()
    eargs = build_evaluate_parser().parse_args(_common(preset, paths, args))
    evaluator = BatchEvaluator(model=model, processor=processor, label_info=label_info, args=eargs, with_ap=True,
                               with_miou=True)
    batch = next(iter(inference_dataloader(train_set, label_info, processor, indices=list(range(preset.eval_batch_size)),
                                           batch_size=preset.eval_batch_size)))
    infer = {}
    for depth in (exits[0], exits[-1], exits[0], exits[-1]):
        start = time.perf_counter()
        with torch.no_grad():
            outputs = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"],
                            num_encoder_layers=depth)
        evaluator.records(outputs, batch, gate=False)
        infer[depth] = (time.perf_counter() - start) / preset.eval_batch_size
    per_image = statistics.mean(infer.values())  # average of the shallowest and deepest exit
    return {"train_step_s": statistics.median(train_times[1:]), "infer_image_s": per_image, "num_exits": len(exits)}


def plan_budget(preset: Preset, speed: dict, *, elapsed_s: float, budget_s: float, num_betas: int,
                train_images: int, validation_images: int) -> dict:
    """Step-1 length that makes the job end within the budget, given measured speeds and the other steps' work."""
    k = speed["num_exits"]
    per_image = speed["infer_image_s"]
    step2 = train_images * k * per_image * 0.8  # step 2 post-processes panoptic only
    gates = num_betas * (train_images * per_image * 0.3 + 20)
    evaluation = validation_images * (k * per_image + num_betas * 0.3 * per_image) + 2 * k * 1.5  # + GFLOP counts
    fixed_overhead = 60.0  # step set-up, model saving, plot, export
    margin = 0.08 * budget_s
    step1_s = budget_s - elapsed_s - step2 - gates - evaluation - fixed_overhead - margin
    steps = int(step1_s / speed["train_step_s"])
    if steps < 50:
        raise RecipeError(f"the time budget leaves only {steps} step-1 steps on this machine (measured "
                          f"{speed['train_step_s']:.2f} s/step): raise --time_budget_minutes or pass --step1_steps")
    return {"step1_steps": steps, "step1_s": round(step1_s, 1), "step2_s": round(step2, 1), "step3_s": round(gates, 1),
            "eval_s": round(evaluation, 1), "overhead_s": fixed_overhead, "margin_s": round(margin, 1),
            "elapsed_before_s": round(elapsed_s, 1), "budget_s": budget_s, **{k_: round(v, 4) for k_, v in speed.items()}}


def run_eco_m2f(args: argparse.Namespace) -> dict:
    """Run the main job; returns its summary (also `OUTPUT_DIR/run_eco_m2f_summary.json`)."""
    from .derived import derive_exit_dataset
    from .early_exit import train_early_exit
    from .evaluate_job import evaluate_model
    from .gate_training import train_gate

    t0 = time.perf_counter()
    torch.set_num_threads(args.num_threads)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise RecipeError(f"--steps: unknown step(s) {unknown}; choose from {STEPS}")
    preset = PRESETS[args.preset]
    preset = replace(preset, train_images=args.train_images or preset.train_images,
                     validation_images=args.validation_images or preset.validation_images)
    budget_min = args.time_budget_minutes or preset.time_budget_minutes
    paths = Paths(args.output_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    summary: dict = {"preset": args.preset, "preset_values": preset.__dict__, "betas": args.betas, "steps": steps,
                     "timings_s": {}}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        summary["timings_s"][name] = round(time.perf_counter() - start, 1)
        print(f"[run_eco_m2f] {name} done in {summary['timings_s'][name]:.1f} s "
              f"(job at {time.perf_counter() - t0:.1f} s)", flush=True)
        return result

    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=args.cpu)  # under `accelerate launch`, the main process does the one-off work
    if "data" in steps:
        if state.is_main_process:
            timed("data", lambda: make_data(preset, paths, args))
        state.wait_for_everyone()
    if "step1" in steps:
        step1_steps = args.step1_steps or preset.step1_steps
        if step1_steps is None:
            plan = [None]
            if state.is_main_process:
                speed = timed("measure_speed", lambda: measure_speed(preset, paths, args))
                plan[0] = plan_budget(preset, speed, elapsed_s=time.perf_counter() - t0, budget_s=60 * budget_min,
                                      num_betas=len(args.betas), train_images=preset.train_images,
                                      validation_images=preset.validation_images)
                print("[run_eco_m2f] plan: " + ", ".join(f"{k}={v}" for k, v in plan[0].items()), flush=True)
            if state.num_processes > 1:
                broadcast_object_list(plan, from_process=0)
            summary["plan"] = plan[0]
            step1_steps = plan[0]["step1_steps"]
        summary["step1"] = timed("step1", lambda: train_early_exit(
            build_train_early_exit_parser().parse_args(step1_argv(preset, paths, args, step1_steps))))
    if "step2" in steps:
        argv = _common(preset, paths, args) + ["--model_name_or_path", str(paths.step1),
                                              "--output_dir", str(paths.step2), "--betas", *map(str, args.betas)]
        summary["step2"] = timed("step2", lambda: derive_exit_dataset(build_derive_exit_dataset_parser().parse_args(argv)))
    if "step3" in steps:
        summary["step3"] = {}
        for beta in args.betas:
            argv = _common(preset, paths, args) + [
                "--model_name_or_path", str(paths.step1), "--derived_dataset", str(paths.step2), "--beta", str(beta),
                "--output_dir", str(paths.gate(beta)), "--skip_validation"]
            summary["step3"][f"{beta:g}"] = timed(f"step3_beta{beta:g}",
                                                  lambda: train_gate(build_train_gate_parser().parse_args(argv)))
    if "eval" in steps:
        argv = _common(preset, paths, args) + [
            "--model_name_or_path", str(paths.step1), "--output_dir", str(paths.eval),
            "--gate_models", *[str(paths.gate(b)) for b in args.betas],
            "--oracle_betas", *map(str, args.betas), "--gate_evaluation", "select"]
        summary["eval"] = timed("eval", lambda: evaluate_model(build_evaluate_parser().parse_args(argv)))
    if "export" in steps and state.is_main_process:
        summary["export"] = timed("export", lambda: export_main_model(paths, args))
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["num_processes"] = state.num_processes
    if state.is_main_process:
        from .main_job_report import publish_results

        publish_results(summary, paths=paths, args=args)
        write_json(paths.root / "run_eco_m2f_summary.json", summary)
    state.wait_for_everyone()
    return summary


def export_main_model(paths: Paths, args: argparse.Namespace) -> dict:
    """Hub-ready export of the smallest-beta gate model (with the evaluation results and plot), via hub/."""
    import json
    import warnings

    try:
        from hub.hub_ecom2f_export import export_model_folder
    except ImportError as error:
        print(f"[run_eco_m2f] export skipped: the project's hub/ export code does not import ({error})", flush=True)
        return {"skipped": str(error)}
    from .reporting import hub_eval_results

    beta = min(args.betas)
    report_file = paths.eval / "evaluation.json"
    eval_results = plot = None
    if report_file.is_file():
        report = json.loads(report_file.read_text(encoding="utf-8"))
        eval_results = hub_eval_results(report, dataset_name="ecom2f synthetic panoptic", split="validation",
                                        gate_mode=f"gate_beta{beta:g}")
        plot = paths.eval / "tradeoff.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_model_folder(model_dir=paths.gate(beta), output_dir=paths.export, eval_results=eval_results,
                                  plot=plot, overwrite=True)
    return {"export_dir": str(out), "gate_beta": beta, "files": sorted(p.name for p in Path(out).iterdir())}


__all__ = ["DEFAULT_BETAS", "PRESETS", "Preset", "STEPS", "build_run_parser", "measure_speed", "plan_budget",
           "run_eco_m2f"]
