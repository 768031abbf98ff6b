"""The recipe's task registry: the `RecipeTask` of each task, assembled from its modules, and `get_task`, which the
steps (step 1 `early_exit`, step 2 `derived`, step 3 `gate_training`, `mode_evaluation`, `evaluation_step`) use to
find theirs.

A step finds its task with `get_task(args)`: the `task` attribute its parser sets (`"segmentation"` when absent, so
the Mask2Former scripts and their command lines are unchanged). Everything else in a step (data sources, the
training loop, checkpoints and resume, accelerate, labels `argmax_k(q_k - beta k)`, gate features, reports) is
shared.

Layering: this module imports the task modules (`segmentation`, `evaluation`, `data`, `modeling`, `reporting`,
`detection`, `detection_evaluation`); none of them imports it or a step module back (tests/test_architecture.py).
"""

from __future__ import annotations

import functools
from typing import Callable

from ..data import EcoMask2FormerCollator
from . import detection_evaluation
from .data import build_image_processor, load_split, model_inputs
from .detection import (
    EcoDeformableDetrCollator,
    build_detection_image_processor,
    build_detection_model,
    detection_model_inputs,
    load_trained_detector,
)
from .segmentation_evaluation import BatchEvaluator, ModeAccumulator, summarize_mode
from .modeling import build_model, load_trained_model
from .reporting import compact_summary, results_table
from .runtime import RecipeError, make_accelerator
from .segmentation import derive_rows
from .task_protocol import RecipeTask


@functools.lru_cache(maxsize=1)
def segmentation_task() -> RecipeTask:
    """EcoMask2Former universal segmentation: per-image PQ, data-set PQ/SQ/RQ, mIoU, mask AP."""

    def summarize(acc, *, label_info, exit_layers) -> dict:
        return summarize_mode(acc, category_ids=sorted(label_info.id2label), thing_ids=label_info.thing_ids,
                              exit_layers=exit_layers)

    return RecipeTask(
        name="segmentation", quality="pq", quality_label="PQ", derived_columns=("pq", "sq", "rq", "loss"),
        build_model=build_model, load_trained_model=load_trained_model, build_image_processor=build_image_processor,
        make_collator=EcoMask2FormerCollator, model_inputs=model_inputs, batch_evaluator=BatchEvaluator,
        new_accumulator=ModeAccumulator, summarize_mode=summarize, derive_rows=derive_rows,
        results_table=results_table, compact_summary=compact_summary,
    )


@functools.lru_cache(maxsize=1)
def detection_task() -> RecipeTask:
    """EcoDeformableDetr object detection (per-image quality: COCO box AP on the image)."""
    evaluation = detection_evaluation
    return RecipeTask(
        name="detection", quality="box_ap", quality_label="box AP",
        derived_columns=evaluation.DERIVED_COLUMNS, build_model=build_detection_model,
        load_trained_model=load_trained_detector, build_image_processor=build_detection_image_processor,
        make_collator=EcoDeformableDetrCollator, model_inputs=detection_model_inputs,
        batch_evaluator=evaluation.DetectionBatchEvaluator, new_accumulator=evaluation.DetectionAccumulator,
        summarize_mode=evaluation.summarize_detection_mode, derive_rows=evaluation.derive_detection_rows,
        results_table=evaluation.detection_results_table, compact_summary=evaluation.detection_compact_summary,
    )


TASKS: dict[str, Callable[[], RecipeTask]] = {"segmentation": segmentation_task, "detection": detection_task}


def get_task(value=None) -> RecipeTask:
    """The task of a step: a `RecipeTask`, its name, or a namespace with a `task` attribute (default segmentation)."""
    if isinstance(value, RecipeTask):
        return value
    name = value if isinstance(value, str) or value is None else getattr(value, "task", None)
    name = name or "segmentation"
    if name not in TASKS:
        raise RecipeError(f"unknown recipe task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()


def load_trained_run(task: RecipeTask, args, *, split: str, device):
    """`(dataset, label_info, model, processor)` of a step that runs a trained model (`--model_name_or_path`) on a
    split: the split, the model on `device` in `eval()` mode, and its image processor."""
    dataset, label_info = load_split(args, split)
    model = task.load_trained_model(args.model_name_or_path, label_info=label_info).to(device)
    processor = task.build_image_processor(image_size=args.image_size, max_image_size=args.max_image_size,
                                           model_dir=args.model_name_or_path)
    return dataset, label_info, model, processor


def start_trained_run(args, *, step: str, project_name: str):
    """What steps 2 and the evaluation start with: `(task, accelerator, dataset, label_info, model, processor)` for
    the trained model `--model_name_or_path` on `--split`; a `RecipeError` naming `step` when no model is given."""
    task = get_task(args)
    if not args.model_name_or_path:
        raise RecipeError(f"{step} needs --model_name_or_path (the step-1 model folder)")
    accelerator = make_accelerator(args, project_name=project_name)
    return (task, accelerator, *load_trained_run(task, args, split=args.split, device=accelerator.device))


__all__ = ["RecipeTask", "TASKS", "detection_task", "get_task", "load_trained_run", "segmentation_task",
           "start_trained_run"]
