"""The recipe's task protocol: what differs between universal segmentation (EcoMask2Former, per-image PQ) and object
detection (EcoDeformableDetr, per-image box AP), as one small frozen dataclass of callables.

This module is a leaf: it imports nothing from the project, so task modules (`segmentation`, `detection`,
`detection_evaluation`), the registry (`tasks`) and the steps can all depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


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


__all__ = ["RecipeTask"]
