"""Command-line entry points: the console scripts of `pyproject.toml` (`ecom2f-train-early-exit`,
`ecom2f-derive-exit-dataset`, `ecom2f-train-gate`, `ecom2f-evaluate`, `ecom2f-main-job`) and the detection steps
(`*_detr_*`, the scripts in `examples/detection/`). Each `*_main(argv)` parses the step's arguments and runs it (a
recipe or data error becomes a clean exit status 2); it can be called several times in one process. Each
`*_command()` runs its `*_main` as the whole process: it reads `sys.argv` and tears down the process group at the
end (`runtime.run_script_process`). The scripts in `examples/` are these commands.

They live above the recipe because they wire `hub` into it: steps 1 and 3 upload their result with `--push_to_hub`
through `publish_to_hub` (the recipe takes the publisher as an argument and never imports `hub`).
"""

from __future__ import annotations

from typing import Callable

from ..recipe import arguments
from ..recipe.derived import derive_exit_dataset
from ..recipe.early_exit import train_early_exit
from ..recipe.evaluation_step import evaluate_model
from ..recipe.gate_training import train_gate
from ..recipe.runtime import run_script, run_script_process
from .main_job import build_run_parser, run_eco_m2f


def publish_to_hub(**kwargs):
    """`hub.push.push_model(**kwargs)` (imported on first use): the publisher of `--push_to_hub`."""
    from hub.push import push_model

    return push_model(**kwargs)


def _main(build_parser, step, *, publishes: bool = False) -> Callable[[list[str] | None], dict]:
    def run(args):
        return step(args, publish=publish_to_hub) if publishes else step(args)

    def main(argv: list[str] | None = None) -> dict:
        return run_script(build_parser, run, argv)

    main.__doc__ = f"Parse `argv` with `{build_parser.__name__}()` and run `{step.__name__}`."
    return main


def _command(main) -> Callable[[], None]:
    def command() -> None:
        run_script_process(main)

    command.__doc__ = f"Run `{main.__name__}` on `sys.argv` as the whole process."
    return command


train_early_exit_main = _main(arguments.build_train_early_exit_parser, train_early_exit, publishes=True)
derive_exit_dataset_main = _main(arguments.build_derive_exit_dataset_parser, derive_exit_dataset)
train_gate_main = _main(arguments.build_train_gate_parser, train_gate, publishes=True)
evaluate_main = _main(arguments.build_evaluate_parser, evaluate_model)
main_job_main = _main(build_run_parser, run_eco_m2f)
train_early_exit_detr_main = _main(arguments.build_detection_train_early_exit_parser, train_early_exit)
derive_exit_dataset_detr_main = _main(arguments.build_detection_derive_exit_dataset_parser, derive_exit_dataset)
train_gate_detr_main = _main(arguments.build_detection_train_gate_parser, train_gate)
evaluate_detr_main = _main(arguments.build_detection_evaluate_parser, evaluate_model)

train_early_exit_command = _command(train_early_exit_main)
derive_exit_dataset_command = _command(derive_exit_dataset_main)
train_gate_command = _command(train_gate_main)
evaluate_command = _command(evaluate_main)
main_job_command = _command(main_job_main)
train_early_exit_detr_command = _command(train_early_exit_detr_main)
derive_exit_dataset_detr_command = _command(derive_exit_dataset_detr_main)
train_gate_detr_command = _command(train_gate_detr_main)
evaluate_detr_command = _command(evaluate_detr_main)


__all__ = [
    "derive_exit_dataset_command",
    "derive_exit_dataset_detr_command",
    "derive_exit_dataset_detr_main",
    "derive_exit_dataset_main",
    "evaluate_command",
    "evaluate_detr_command",
    "evaluate_detr_main",
    "evaluate_main",
    "main_job_command",
    "main_job_main",
    "publish_to_hub",
    "train_early_exit_command",
    "train_early_exit_detr_command",
    "train_early_exit_detr_main",
    "train_early_exit_main",
    "train_gate_command",
    "train_gate_detr_command",
    "train_gate_detr_main",
    "train_gate_main",
]
