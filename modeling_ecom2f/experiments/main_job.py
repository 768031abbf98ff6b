"""The whole ECO-M2F recipe in one command (`ecom2f-main-job`, `examples/run_eco_m2f.py`): data, step 1, step 2,
step 3 (the paper's classification gate for one beta and a utility gate for every beta), the evaluation (fixed
depths, gates at several betas, the random-routing control of every gate, the oracle), the trade-off table and plot,
and a Hub folder.

The default preset starts from the parent shipped for the chosen benchmark (`--benchmark`: `maze`, maze rooms, the
default, shipped in this package, `parents/maze_rooms/`; `shapes` in a source checkout's
`examples/parents/depth_benchmark/`; each trained with this project's own step-1 script, its folder holding the
command, the training log and SHA-256 sums, checked before use) and fine-tunes it for a fixed number of steps. Every step does a fixed amount of work, so the figures do not depend
on the machine's speed; the wall-clock deadline (`--deadline_minutes`, 20 for the default preset) is enforced while
the job runs: past it the job stops with an error naming the step it was in, rather than running on.
Every step reads its inputs from `--output_dir`, so `--steps` can rerun any subset.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..ecom2f_gate import GATE_POOLINGS
from ..recipe.arguments import (
    build_derive_exit_dataset_parser,
    build_evaluate_parser,
    build_train_early_exit_parser,
    build_train_gate_parser,
)
from ..recipe.runtime import RecipeError, write_json
from .deadline import DeadlineExceeded, wall_clock_deadline
from .presets import (
    BENCHMARKS,
    DEFAULT_BENCHMARK,
    DEFAULT_BETA,
    DEFAULT_TARGET_FRACTION,
    DEFAULT_UTILITY_BETAS,
    PRESETS,
    SHIPPED,
    SHIPPED_PARENT,
    Benchmark,
    Preset,
    UtilityGateForm,
)

logger = logging.getLogger("modeling_ecom2f.recipe")

STEPS = ("data", "step1", "step2", "step3", "eval", "hub_folder")


def build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the whole ECO-M2F recipe (data, steps 1-3, evaluation with "
                                                 "controls, plot, Hub folder) on the embedded synthetic benchmark.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default=DEFAULT_BENCHMARK,
                        help=f"the synthetic benchmark of the benchmark presets and its shipped parent (default: "
                             f"{DEFAULT_BENCHMARK}); results of another than the default go to results_main_job_NAME.*")
    parser.add_argument("--bootstrap_resamples", type=int, default=1000,
                        help="bootstrap resamples of the validation images for the standard errors of the report")
    parser.add_argument("--output_dir", default=None,
                        help="default: outputs/main_job (outputs/main_job_NAME for another than the default benchmark)")
    parser.add_argument("--docs_dir", default=None,
                        help="also write tradeoff.png and results_main_job.md/.json here (default: docs for the "
                             "default preset, nothing otherwise; pass '' to disable)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="beta of the classification gate's labels")
    parser.add_argument("--utility_betas", type=float, nargs="+", default=list(DEFAULT_UTILITY_BETAS),
                        help="betas at which the utility gate is evaluated")
    parser.add_argument("--target_encoder_fraction", type=float, default=DEFAULT_TARGET_FRACTION,
                        help="encoder budget the utility gate's default beta is calibrated for (held-out images)")
    parser.add_argument("--utility_gate_pooling", choices=GATE_POOLINGS, default=None,
                        help="input pooling of the utility gate (default: the benchmark's, see "
                             "experiments.presets.BENCHMARKS; the classification gate keeps the paper's mean)")
    parser.add_argument("--utility_gate_hidden_size", type=int, default=None,
                        help="hidden layer of the utility gate (0: the paper's single linear layer; default: the "
                             "benchmark's)")
    parser.add_argument("--utility_gate_input_level", type=int, default=None,
                        help="input-projected level the utility gate pools (0 = 1/32, the paper's; default: the "
                             "benchmark's)")
    parser.add_argument("--parent", default=None,
                        help="model folder step 1 starts from (default: the preset's; 'scratch' for a fresh model)")
    parser.add_argument("--deadline_minutes", type=float, default=None,
                        help="stop with an error past this wall time (default: the preset's; 0 disables)")
    parser.add_argument("--step1_steps", type=int, default=None, help="override the preset's step-1 length")
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
        self.classification_gate = self.root / "step3_gate_classification"
        self.utility_gate = self.root / "step3_gate_utility"
        self.eval = self.root / "evaluation"
        self.hub_folder = self.root / "hub_folder"


def _common(preset: Preset, paths: Paths, args: argparse.Namespace) -> list[str]:
    out = ["--dataset", "disk", "--dataset_path", str(paths.data), "--seed", str(args.seed),
           "--image_size", str(preset.image_size),
           "--per_device_eval_batch_size", str(preset.eval_batch_size), "--num_threads", str(args.num_threads)]
    if args.cpu:
        out.append("--cpu")
    if args.mixed_precision:
        out += ["--mixed_precision", args.mixed_precision]
    return out


def parent_folder(preset: Preset, args: argparse.Namespace) -> str | None:
    """The folder step 1 starts from (None: a fresh model)."""
    choice = args.parent if args.parent is not None else preset.parent
    if choice == SHIPPED:
        return str(BENCHMARKS[args.benchmark].parent)
    return None if choice in (None, "scratch") else str(choice)


def verify_parent(folder: str | Path) -> dict[str, str]:
    """Check a parent folder against its `SHA256SUMS` (when it has one); `RecipeError` naming a missing or changed
    file. Returns file name -> digest."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise RecipeError(f"parent folder {folder} has no config.json: pass --parent <model folder> or --parent scratch "
                          "(the shapes benchmark's parent lives in a source checkout under examples/parents/)")
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    digests = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        expected, name = line.split()
        path = folder / name
        if not path.is_file():
            raise RecipeError(f"{path} is missing (listed in {sums})")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise RecipeError(f"{path} does not match its SHA-256 in {sums} (got {actual[:16]}..., expected "
                              f"{expected[:16]}...): the shipped parent was changed or is corrupt")
        digests[name] = actual
    return digests


def step1_argv(preset: Preset, paths: Paths, args: argparse.Namespace, steps: int) -> list[str]:
    parent = parent_folder(preset, args)
    model = (["--model_name_or_path", parent] if parent else
             ["--backbone", preset.backbone, "--feature_size", str(preset.feature_size), "--encoder_layers",
              str(preset.encoder_layers), "--decoder_layers", str(preset.decoder_layers), "--num_queries",
              str(preset.num_queries)])
    return _common(preset, paths, args) + model + [
        "--output_dir", str(paths.step1), "--per_device_train_batch_size", str(preset.batch_size),
        "--learning_rate", str(args.learning_rate or preset.learning_rate),
        "--max_train_steps", str(steps), "--checkpointing_steps", str(max(1, steps // 4)), "--logging_steps", "10",
        "--eval_depths",
    ] + (list(BENCHMARKS[args.benchmark].step1_args) if preset.benchmark else []) + (
        ["--resume_from_checkpoint", "latest"] if args.resume else [])


def data_config(preset: Preset, args: argparse.Namespace):
    """The generator settings of the job's data set."""
    from ..data import SyntheticPanopticConfig, depth_benchmark_config, maze_benchmark_config

    sizes = dict(num_train_images=preset.train_images, num_validation_images=preset.validation_images, seed=args.seed)
    if preset.benchmark and args.benchmark == "maze":
        return maze_benchmark_config(size=preset.image_size, **sizes)
    sizes.update(height=preset.image_size, width=preset.image_size)
    if preset.benchmark:
        return depth_benchmark_config(**sizes)
    step1 = build_train_early_exit_parser().parse_args([])
    return SyntheticPanopticConfig(**sizes, max_objects=step1.synthetic_max_objects,
                                   min_object_size=step1.synthetic_min_object_size)


def make_data(preset: Preset, paths: Paths, args: argparse.Namespace) -> float:
    """Render the synthetic data set once and save it; later steps read it from disk."""
    from ..data import MazeRoomsConfig, make_maze_rooms_panoptic_dataset, make_synthetic_panoptic_dataset

    start = time.perf_counter()
    config = data_config(preset, args)
    make = make_maze_rooms_panoptic_dataset if isinstance(config, MazeRoomsConfig) else make_synthetic_panoptic_dataset
    splits, _ = make(config=config)
    if paths.data.exists():
        shutil.rmtree(paths.data)
    splits.save_to_disk(str(paths.data))
    return time.perf_counter() - start


def run_eco_m2f(args: argparse.Namespace) -> dict:
    """Run the main job; returns its summary (also `OUTPUT_DIR/run_eco_m2f_summary.json`)."""
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
    deadline = args.deadline_minutes if args.deadline_minutes is not None else preset.deadline_minutes
    benchmark = benchmark_summary(preset, args)
    paths = Paths(args.output_dir or f"outputs/main_job{benchmark['suffix']}")
    paths.root.mkdir(parents=True, exist_ok=True)
    summary: dict = {"preset": args.preset, "preset_values": preset.__dict__, "beta": args.beta,
                     "benchmark": benchmark,
                     "utility_betas": args.utility_betas, "steps": steps, "timings_s": {},
                     "deadline_minutes": deadline or None}
    current = ["start"]
    with wall_clock_deadline(60 * deadline if deadline else None, where=lambda: current[0]):
        _run_steps(args, preset, paths, steps, summary, t0, current)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    from accelerate import PartialState

    state = PartialState(cpu=args.cpu)
    summary["num_processes"] = state.num_processes
    if state.is_main_process:
        from .report import publish_results

        publish_results(summary, paths=paths, args=args)
        write_json(paths.root / "run_eco_m2f_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _run_steps(args, preset: Preset, paths: Paths, steps: list[str], summary: dict, t0: float, current: list) -> None:
    from accelerate import PartialState

    from ..recipe.derived import derive_exit_dataset
    from ..recipe.early_exit import train_early_exit
    from ..recipe.evaluation_step import evaluate_model
    from ..recipe.gate_training import train_gate

    def timed(name, fn):
        current[0] = name
        start = time.perf_counter()
        result = fn()
        summary["timings_s"][name] = round(time.perf_counter() - start, 1)
        print(f"[run_eco_m2f] {name} done in {summary['timings_s'][name]:.1f} s "
              f"(job at {time.perf_counter() - t0:.1f} s)", flush=True)
        return result

    state = PartialState(cpu=args.cpu)  # under `accelerate launch`, the main process does the one-off work
    if "data" in steps:
        if state.is_main_process:
            timed("data", lambda: make_data(preset, paths, args))
        state.wait_for_everyone()
    if "step1" in steps:
        parent = parent_folder(preset, args)
        if parent:
            summary["parent"] = {"folder": parent, "sha256": verify_parent(parent)}
        step1_steps = args.step1_steps if args.step1_steps is not None else preset.step1_steps
        summary["step1"] = timed("step1", lambda: train_early_exit(
            build_train_early_exit_parser().parse_args(step1_argv(preset, paths, args, step1_steps))))
    if "step2" in steps:
        argv = _common(preset, paths, args) + ["--model_name_or_path", str(paths.step1),
                                              "--output_dir", str(paths.step2), "--betas", str(args.beta)]
        summary["step2"] = timed("step2", lambda: derive_exit_dataset(build_derive_exit_dataset_parser().parse_args(argv)))
    if "step3" in steps:
        base = _common(preset, paths, args) + ["--model_name_or_path", str(paths.step1), "--derived_dataset",
                                               str(paths.step2), "--skip_validation"]
        summary["step3"] = {}
        argv = base + ["--gate_objective", "classification", "--beta", str(args.beta),
                       "--output_dir", str(paths.classification_gate)]
        summary["step3"]["classification"] = timed(
            "step3_classification", lambda: train_gate(build_train_gate_parser().parse_args(argv)))
        form = utility_gate_form(args)
        argv_u = base + ["--gate_objective", "utility", "--target_encoder_fraction", str(args.target_encoder_fraction),
                         "--gate_pooling", form.pooling, "--gate_input_level", str(form.input_level),
                         "--output_dir", str(paths.utility_gate)]
        if form.hidden_size:
            argv_u += ["--gate_hidden_size", str(form.hidden_size)]
        summary["utility_gate"] = form.__dict__
        summary["step3"]["utility"] = timed(
            "step3_utility", lambda: train_gate(build_train_gate_parser().parse_args(argv_u)))
    if "eval" in steps:
        calibrated = ((summary.get("step3") or {}).get("utility") or {}).get("beta")
        if calibrated is None:
            calibrated = _saved_gate_beta(paths.utility_gate)
        betas = sorted(set(args.utility_betas) | ({round(calibrated, 6)} if calibrated is not None else set()))
        summary["calibrated_beta"] = calibrated
        argv = _common(preset, paths, args) + [
            "--model_name_or_path", str(paths.step1), "--output_dir", str(paths.eval),
            "--gate_models", str(paths.classification_gate), str(paths.utility_gate),
            "--gate_betas", *map(str, betas), "--oracle_betas", str(args.beta)] + (
            ["--no_mask_ap"] if preset.benchmark else [])  # mask AP's instance post-processing is the slowest part
        summary["eval"] = timed("eval", lambda: evaluate_model(build_evaluate_parser().parse_args(argv)))
    if "hub_folder" in steps and state.is_main_process:
        summary["hub_folder"] = timed("hub_folder", lambda: write_main_hub_folder(paths, args))


def utility_gate_form(args: argparse.Namespace) -> UtilityGateForm:
    """The utility gate of this run: the benchmark's form (`Benchmark.utility_gate`; the generic generator of a
    non-benchmark preset: `UtilityGateForm()`), each field overridable from the command line
    (`--utility_gate_hidden_size 0`: no hidden layer)."""
    on_benchmark = PRESETS[args.preset].benchmark
    form = BENCHMARKS[args.benchmark].utility_gate if on_benchmark else UtilityGateForm()
    hidden = form.hidden_size if args.utility_gate_hidden_size is None else (args.utility_gate_hidden_size or None)
    try:
        return UtilityGateForm(
            pooling=args.utility_gate_pooling or form.pooling, hidden_size=hidden,
            input_level=form.input_level if args.utility_gate_input_level is None else args.utility_gate_input_level)
    except ValueError as error:
        raise RecipeError(f"--utility_gate_*: {error}") from None


def benchmark_summary(preset: Preset, args: argparse.Namespace) -> dict:
    """What the report says about the job's data: `name`, `title`, `difficulty` and the file-name `suffix` of its
    results (empty for the default benchmark)."""
    if not preset.benchmark:
        return {"name": "synthetic", "title": "the generic synthetic generator", "suffix": "",
                "difficulty": BENCHMARKS["shapes"].difficulty}
    chosen = BENCHMARKS[args.benchmark]
    return {"name": chosen.name, "title": chosen.title, "difficulty": chosen.difficulty,
            "analysis_columns": list(chosen.analysis_columns),
            "suffix": "" if chosen.name == DEFAULT_BENCHMARK else f"_{chosen.name}"}


def _saved_gate_beta(folder: Path) -> float | None:
    import json

    config = folder / "config.json"
    return json.loads(config.read_text(encoding="utf-8")).get("gate_beta") if config.is_file() else None


def write_main_hub_folder(paths: Paths, args: argparse.Namespace) -> dict:
    """The Hub folder of the utility-gate model (default beta: the calibrated one), with the evaluation results and
    plot, via hub/."""
    import json
    import warnings

    try:
        from hub.ecom2f_folder import write_model_hub_folder
    except ImportError as error:
        print(f"[run_eco_m2f] Hub folder skipped: the project's hub/ code does not import ({error})", flush=True)
        return {"skipped": str(error)}
    from ..recipe.reporting import hub_eval_results

    beta = _saved_gate_beta(paths.utility_gate)
    report_file = paths.eval / "evaluation.json"
    eval_results = plot = None
    if report_file.is_file() and beta is not None:
        report = json.loads(report_file.read_text(encoding="utf-8"))
        mode = f"gate_utility_beta{round(beta, 6):g}"
        eval_results = hub_eval_results(report, dataset_name="ecom2f synthetic panoptic", split="validation",
                                        gate_mode=mode if mode in report["modes"] else None)
        plot = paths.eval / "tradeoff.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = write_model_hub_folder(model_dir=paths.utility_gate, output_dir=paths.hub_folder, eval_results=eval_results,
                                  plot=plot, overwrite=True)
    return {"hub_folder": str(out), "gate_beta": beta, "files": sorted(p.name for p in Path(out).iterdir())}


__all__ = ["BENCHMARKS", "DEFAULT_BENCHMARK", "DEFAULT_BETA", "DEFAULT_TARGET_FRACTION", "DEFAULT_UTILITY_BETAS",
           "Benchmark", "DeadlineExceeded", "PRESETS", "Preset", "SHIPPED", "SHIPPED_PARENT", "STEPS", "UtilityGateForm",
           "build_run_parser", "run_eco_m2f", "utility_gate_form", "verify_parent", "wall_clock_deadline"]
