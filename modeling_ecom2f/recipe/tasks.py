"""What differs between the recipe's tasks, as one small adapter object, so that the same step functions (step 1
early-exit training, step 2 derived data set, step 3 gate, evaluation) serve universal segmentation
(EcoMask2Former, per-image PQ) and object detection (EcoDeformableDetr, per-image box AP).

A step finds its task with `get_task(args)`: the `task` attribute its parser sets (`"segmentation"` when absent, so
the Mask2Former scripts and their command lines are unchanged). Everything else in a step (data sources, the
training loop, checkpoints and resume, accelerate, labels `argmax_k(q_k - beta k)`, gate features, reports) is
shared.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from .runtime import RecipeError


@dataclass(frozen=True, kw_only=True)
class RecipeTask:
    """The task-specific pieces of the recipe.

    Attributes:
        name: "segmentation" or "detection".
        quality: key of the per-image quality in step 2's table and of the data-set metric in reports ("pq",
            "box_ap"); a fraction in [0, 1].
        quality_label: how tables and plots name it ("PQ", "box AP").
        derived_columns: the per-exit list columns step 2 stores (the first is `quality`).
        build_model: `(args, label_info) -> model`, step 1's starting model (a folder or a fresh config).
        load_trained_model: `(path, *, label_info=None) -> model` in `eval()` mode; `RecipeError` for another type.
        build_image_processor: `(*, image_size, max_image_size=None, model_dir=None) -> processor`.
        make_collator: `(*, image_processor, label_info, processor_kwargs=None, return_references=False)`: rows to
            model inputs (and evaluation ground truth with `return_references`).
        model_inputs: `(batch, device) -> dict` of the tensors a training forward takes (labels included).
        batch_evaluator: `(*, model, processor, label_info, args, with_ap, with_miou, with_gflops=True)`: an object
            with `records(outputs, batch, *, gate) -> [record]` (each with `index`, `image_id`, `depth`,
            `quality`, `gflops`, `encoder_gflops`) and `gflops(height, width, depth, gate) -> (total, encoder)`.
        new_accumulator: `() -> accumulator` with `add(record)`, `merge(other)` and `rows`.
        summarize_mode: `(accumulator, *, label_info, exit_layers) -> dict` of one mode's data-set figures.
        derive_rows: step 2's rows of this process: `(*, accelerator, model, processor, dataset, label_info, args)`.
        results_table: `(report) -> str`, a Markdown table of an evaluation report.
        compact_summary: `(report) -> dict`, per mode the figures for summary JSONs.
    """

    name: str
    quality: str
    quality_label: str
    derived_columns: tuple[str, ...]
    build_model: Callable[..., Any]
    load_trained_model: Callable[..., Any]
    build_image_processor: Callable[..., Any]
    make_collator: Callable[..., Any]
    model_inputs: Callable[..., dict]
    batch_evaluator: Callable[..., Any]
    new_accumulator: Callable[[], Any]
    summarize_mode: Callable[..., dict]
    derive_rows: Callable[..., list]
    results_table: Callable[[dict], str]
    compact_summary: Callable[[dict], dict]


@functools.lru_cache(maxsize=1)
def segmentation_task() -> RecipeTask:
    """EcoMask2Former universal segmentation: per-image PQ, data-set PQ/SQ/RQ, mIoU, mask AP."""
    from ..data import EcoMask2FormerCollator
    from .data import build_image_processor, model_inputs
    from .derived import derive_rows
    from .evaluation import BatchEvaluator, ModeAccumulator, summarize_mode
    from .modeling import build_model, load_trained_model
    from .reporting import compact_summary, results_table

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


def _detection_task() -> RecipeTask:
    from .detection import detection_task

    return detection_task()


TASKS: dict[str, Callable[[], RecipeTask]] = {"segmentation": segmentation_task, "detection": _detection_task}


def get_task(value=None) -> RecipeTask:
    """The task of a step: a `RecipeTask`, its name, or a namespace with a `task` attribute (default segmentation)."""
    if isinstance(value, RecipeTask):
        return value
    name = value if isinstance(value, str) or value is None else getattr(value, "task", None)
    name = name or "segmentation"
    if name not in TASKS:
        raise RecipeError(f"unknown recipe task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["RecipeTask", "TASKS", "get_task", "segmentation_task"]
