"""The run-time conventions every recipe step shares: the Accelerator, logging on the main process only, trackers,
the summary JSON and the Hub push (through a publisher the caller passes).

Data-parallel training and unused parameters: an early exit at depth k leaves encoder layers k+1.. without
gradient, and step 1 never runs the gate. We build the Accelerator with
`DistributedDataParallelKwargs(find_unused_parameters=True)` rather than a zero-contribution trick (adding
`0 * p.sum()` for every idle parameter): it is exact, needs no knowledge of which parameters a depth skips, and its
cost (one graph traversal per step) is negligible next to the forward. Every process samples the same depth (a
`random.Random` seeded identically), so the processes also agree on which layers ran.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger("modeling_ecom2f.recipe")


class RecipeError(ValueError):
    """A bad input to a recipe step (data set, checkpoint, argument), with the reason and the fix."""


def make_accelerator(args: argparse.Namespace, *, gradient_accumulation_steps: int = 1, project_name: str = "ecom2f"):
    """An `Accelerator` configured from the shared run-time arguments.

    Also sets up logging (INFO on the main process, errors elsewhere) and validates `--report_to`.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration

    from accelerate.state import AcceleratorState, GradientState

    if getattr(args, "num_threads", None):
        import torch

        torch.set_num_threads(args.num_threads)

    if AcceleratorState._shared_state:
        # An earlier step ran in this process (run_eco_m2f.py, tests): start from a clean accelerator state but keep
        # the process group (PartialState), so steps with other precision/accumulation settings can follow.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    log_with = None
    if getattr(args, "with_tracking", False):
        log_with = [name.strip() for name in args.report_to.split(",") if name.strip()]
        _check_trackers(log_with)
    accelerator = Accelerator(
        cpu=bool(getattr(args, "cpu", False)),
        mixed_precision=getattr(args, "mixed_precision", None),
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")),
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True),
            InitProcessGroupKwargs(timeout=timedelta(minutes=30)),
        ],
    )
    setup_logging(accelerator)
    if log_with:
        accelerator.init_trackers(project_name, config=tracker_config(args))
    return accelerator


def _check_trackers(names: list[str]) -> None:
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    for name in names:
        if name in available and not available[name]():
            raise RecipeError(f"--report_to {name} needs the {name} package: pip install {name}")


def setup_logging(accelerator) -> None:
    """INFO logs and transformers/datasets warnings on the local main process only; errors everywhere."""
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
    main = accelerator.is_local_main_process
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint lines drown the progress
    logger.setLevel(logging.INFO if main else logging.ERROR)
    datasets.utils.logging.set_verbosity_warning() if main else datasets.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_warning() if main else transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """The hyper-parameters as trackers accept them (scalars and strings only)."""
    out = {}
    for key, value in vars(args).items():
        if isinstance(value, (int, float, str, bool)):
            out[key] = value
        elif value is not None:
            out[key] = json.dumps(value, default=str)
    return out


def progress_bar(accelerator, **kwargs):
    """A `tqdm` bar shown on the local main process only."""
    from tqdm.auto import tqdm

    return tqdm(disable=not accelerator.is_local_main_process, dynamic_ncols=True, **kwargs)


def to_jsonable(value: Any) -> Any:
    """Numbers, NumPy and torch scalars/arrays, paths and nested containers as plain JSON values (NaN -> None)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch
        return to_jsonable(value.tolist())
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON atomically (write a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_summary(accelerator, output_dir: str | Path, name: str, data: dict) -> Path | None:
    """The short summary JSON of a step (`OUTPUT_DIR/<name>_summary.json`), written by the main process."""
    path = Path(output_dir) / f"{name}_summary.json"
    if accelerator.is_main_process:
        write_json(path, data)
        logger.info("wrote %s", path)
    return path


def push_to_hub(accelerator, args: argparse.Namespace, *, model_dir: str | Path, publish: Callable[..., Any] | None,
                eval_results: dict | None = None, plot: str | Path | None = None) -> str | None:
    """Upload `model_dir` to `--hub_model_id` on the main process with `publish` (keyword arguments `repo_id`,
    `model_dir`, `eval_results`, `plot`, `private`, `token`; the console scripts pass `hub`'s `push_model`, which the
    recipe does not import). Returns the commit URL, None without `--push_to_hub`."""
    if not getattr(args, "push_to_hub", False):
        return None
    if not args.hub_model_id:
        raise RecipeError("--push_to_hub needs --hub_model_id namespace/name")
    if getattr(args, "task", None) == "detection":
        raise RecipeError("--push_to_hub is for segmentation models; write a detector's Hub folder with `python -m "
                          "hub.eco_deformable_detr_folder MODEL_DIR HUB_DIR`, then `ecom2f-push HUB_DIR ...`")
    if publish is None:
        raise RecipeError("--push_to_hub needs a publisher: run the step through its console script (which passes "
                          "hub's push_model) or call it with publish=hub.push.push_model")
    url = None
    if accelerator.is_main_process:
        info = publish(repo_id=args.hub_model_id, model_dir=model_dir, eval_results=eval_results, plot=plot,
                       private=args.hub_private or None, token=args.hub_token)
        url = getattr(info, "commit_url", str(info))
        logger.info("pushed %s to %s: %s", model_dir, args.hub_model_id, url)
    accelerator.wait_for_everyone()
    return url


def end_run(accelerator) -> None:
    """Close the trackers of a step; the process group stays up for a following step in the same process."""
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:
        tracker.finish()


def finish_process() -> None:
    """Tear down the process group at the end of a script (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_script(build_parser, step, argv: list[str] | None = None) -> dict:
    """The `main` of an example script: parse `argv`, run `step(args)`, and turn a recipe or data error into a
    clean command-line error (exit status 2 with the message) instead of a traceback."""
    from ..data import SegmentationDataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return step(args)
    except (RecipeError, SegmentationDataError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def run_script_process(main) -> None:
    """Run an example script's `main()` as a process and tear down its process group at the end."""
    try:
        main()
    finally:
        finish_process()


__all__ = [
    "RecipeError",
    "run_script",
    "run_script_process",
    "end_run",
    "finish_process",
    "make_accelerator",
    "progress_bar",
    "push_to_hub",
    "setup_logging",
    "to_jsonable",
    "tracker_config",
    "write_json",
    "write_summary",
]
