"""The ECO-M2F training and evaluation recipe behind `examples/` (step 1 early-exit training, step 2 derived data set,
step 3 gate training, evaluation), as reusable functions (the whole main job that chains them, and the console
scripts, are in `modeling_ecom2f.experiments`); the same step functions run the
detection recipe (EcoDeformableDetr, per-image box AP) when the namespace says `task="detection"` (see `tasks`).

Each step is a function of the `argparse.Namespace` its parser returns, so the example scripts are thin and Python
callers can run a step with `train_early_exit(build_train_early_exit_parser().parse_args([...]))`.
"""

from .arguments import (
    build_derive_exit_dataset_parser,
    build_detection_derive_exit_dataset_parser,
    build_detection_evaluate_parser,
    build_detection_train_early_exit_parser,
    build_detection_train_gate_parser,
    build_evaluate_parser,
    build_train_early_exit_parser,
    build_train_gate_parser,
)
from .checkpointing import TrainingProgress, list_checkpoints, resolve_resume
from .derived import derive_exit_dataset, load_derived_dataset, quality_matrix
from .early_exit import train_early_exit
from .evaluation_step import evaluate_model
from .segmentation_evaluation import panoptic_from_counts
from .gate_training import train_gate
from .mode_evaluation import evaluate_modes
from .depth_labels import DEFAULT_BETA_GRID, histogram_table, ideal_depths, label_histogram
from .modeling import build_model, load_model, load_trained_model
from .routing import calibrate_beta, frontier_quality, random_routing, utility_depths
from .runtime import RecipeError, finish_process, run_script, run_script_process
from .tasks import RecipeTask, get_task

__all__ = [
    "DEFAULT_BETA_GRID",
    "RecipeError",
    "RecipeTask",
    "TrainingProgress",
    "build_derive_exit_dataset_parser",
    "build_detection_derive_exit_dataset_parser",
    "calibrate_beta",
    "frontier_quality",
    "random_routing",
    "utility_depths",
    "build_detection_evaluate_parser",
    "build_detection_train_early_exit_parser",
    "build_detection_train_gate_parser",
    "build_evaluate_parser",
    "build_model",
    "build_train_early_exit_parser",
    "build_train_gate_parser",
    "derive_exit_dataset",
    "evaluate_model",
    "evaluate_modes",
    "finish_process",
    "get_task",
    "histogram_table",
    "ideal_depths",
    "label_histogram",
    "list_checkpoints",
    "load_derived_dataset",
    "load_model",
    "load_trained_model",
    "panoptic_from_counts",
    "quality_matrix",
    "resolve_resume",
    "run_script",
    "run_script_process",
    "train_early_exit",
    "train_gate",
]
