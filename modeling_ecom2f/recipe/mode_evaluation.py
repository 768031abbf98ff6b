"""Evaluation of a model in several depth modes at once: every fixed depth, one or more gates (with their
random-routing controls) and the oracle (per image the ideal depth `argmax_k(q_k - beta k)` of its own per-image
quality q: PQ for segmentation, box AP for detection).

Every image runs once through every exit and yields one record per exit (the task's evaluator, see
`tasks.RecipeTask.batch_evaluator`); every mode is then a per-image choice among those records. Steps 1 and 3 and the
evaluation job call `evaluate_modes` with their task.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data import inference_dataloader, shard_indices
from .segmentation_evaluation import exit_outputs, forward_at_depth
from .depth_labels import ideal_depths
from .routing import classification_depths, random_routing, utility_depths
from .runtime import RecipeError, progress_bar
from .tasks import get_task

logger = logging.getLogger("modeling_ecom2f.recipe")


@dataclass
class GateSpec:
    """A gate to evaluate: the model that holds it (the parent itself, or a step-3 output sharing the parent's other
    weights), its objective, and the betas it is evaluated at (`[None]` for a classification gate)."""

    model: Any
    objective: str
    betas: list
    label_beta: float | None = None  # the beta of a classification gate's training labels, when known

    @classmethod
    def of(cls, model, betas: Sequence[float] | None = None, label_beta: float | None = None) -> "GateSpec":
        objective = getattr(model.config, "gate_objective", "classification")
        if objective == "utility":
            return cls(model=model, objective=objective, betas=list(betas) if betas else [model.config.gate_beta])
        return cls(model=model, objective=objective, betas=[None], label_beta=label_beta)

    def mode_name(self, name: str, beta: float | None) -> str:
        return name if beta is None else f"{name}_beta{beta:g}"

    def depths(self, outputs: np.ndarray, exit_layers: Sequence[int], beta: float | None) -> np.ndarray:
        if beta is None:
            return classification_depths(outputs, exit_layers)
        return utility_depths(outputs, exit_layers, beta)


def _gate_outputs(spec: GateSpec, batch, accelerator) -> np.ndarray:
    with torch.no_grad(), accelerator.autocast():
        logits = spec.model.model.compute_gate_logits(batch["pixel_values"].to(accelerator.device),
                                                      batch["pixel_mask"].to(accelerator.device))
    return logits.float().cpu().numpy()


def _check_selection(spec: GateSpec, batch, accelerator, evaluator, per_depth: dict, outputs: np.ndarray,
                     exit_layers: Sequence[int]) -> None:
    """The real gated forward of `spec.model` on this batch must pick the selected depths with the same quality."""
    saved = spec.model.config.gate_trained
    spec.model.config.gate_trained = True
    try:
        for beta in spec.betas:
            chosen = spec.depths(outputs, exit_layers, beta).tolist()
            real = evaluator.records(forward_at_depth(spec.model, batch, accelerator, None, gate_beta=beta), batch,
                                     gate=True)
            selected = [per_depth[depth][i] for i, depth in enumerate(chosen)]
            if [r.depth for r in real] != chosen or any(abs(a.quality - b.quality) > 1e-6
                                                        for a, b in zip(real, selected)):
                raise RecipeError("the gated forward disagrees with the per-depth selection of its decisions")
    finally:
        spec.model.config.gate_trained = saved


def evaluate_modes(*, accelerator, model, processor, dataset, label_info, args, depths: Sequence[int] | None = None,
                   gates: dict | None = None, oracle_betas: Sequence[float] = (), random_routing_controls: bool = True,
                   with_ap: bool = True, with_miou: bool = True, description: str = "evaluation",
                   check_gates: bool = True, routing_seed: int = 0, task=None) -> dict:
    """Evaluate `model` on `dataset` at fixed `depths`, with each gate in `gates` (at each of its betas), with the
    random-routing control of every gate mode, and as the oracle per beta.

    Every image runs once through every exit (`exit_outputs`: one pass when the model supports it) and yields one
    record per exit; every mode is then a per-image *choice* among those records (a fixed depth, the gate's
    decision, the gate's decisions shuffled across images, the per-image ideal depth). This is exact because a
    per-image-depth forward equals the fixed-depth forward image by image (tests/test_modeling_depth.py); with
    `check_gates` each gate's real gated forward is compared with its selection on the first batch.

    Args:
        model: an (unwrapped) ecom2f model on `accelerator.device`; it is put in `eval()` mode.
        task: the `tasks.RecipeTask` (segmentation when None): its evaluator, accumulator and summary are used;
            the oracle picks per image by the task's per-image quality (PQ, box AP).
        gates: mode name -> a `GateSpec`, a gate model sharing the parent's non-gate weights, or None for
            `model`'s own gate. Classification gates give one mode (`name`), utility gates one per beta
            (`name_beta<b>`).
        oracle_betas: betas of the oracle modes.
        random_routing_controls: add `random_<gate mode>` for every gate mode (same depth histogram, shuffled).
        with_ap, with_miou: also compute mask AP / mIoU.

    Returns (on every process): `{"modes": {name: figures}, "per_image": {name: rows}, "num_images": N}` (plus
    `per_exit_counts` for segmentation, see `per_exit_counts`); each mode's figures carry `kind` (fixed, gate, random_routing, oracle), `beta`, `gate_objective` and, for a control,
    `controls` (the gate mode it controls).
    """
    from accelerate.utils import broadcast_object_list, gather_object

    task = get_task(task)
    model.eval()
    exits = list(model.config.exit_layers)
    depths = list(exits if depths is None else depths)
    bad = [d for d in depths if d not in exits]
    if bad:
        raise RecipeError(f"depths {bad} are not exits of the model {exits}")
    specs = {name: value if isinstance(value, GateSpec) else GateSpec.of(model if value is None else value)
             for name, value in (gates or {}).items()}
    for spec in specs.values():
        spec.model.eval()
    run_depths = exits if (specs or oracle_betas) else sorted(depths)  # a choice per image needs every exit
    evaluator = task.batch_evaluator(model=model, processor=processor, label_info=label_info, args=args,
                                     with_ap=with_ap, with_miou=with_miou)
    indices = shard_indices(len(dataset), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = inference_dataloader(dataset, label_info, processor, indices=indices,
                                  batch_size=args.per_device_eval_batch_size,
                                  num_workers=getattr(args, "dataloader_num_workers", 0),
                                  make_collator=task.make_collator)
    records: dict[int, list] = {k: [] for k in run_depths}  # per exit, this process's records
    gate_rows: dict[str, list] = {name: [] for name in specs}  # per gate, (index, outputs) of this process
    checked = not check_gates
    for batch in progress_bar(accelerator, iterable=loader, desc=description, total=len(loader)):
        per_depth = {}
        for k, outputs in exit_outputs(model, batch, accelerator, run_depths):
            per_depth[k] = evaluator.records(outputs, batch, gate=False)
            records[k].extend(per_depth[k])
        for name, spec in specs.items():
            outputs = _gate_outputs(spec, batch, accelerator)
            gate_rows[name].extend(zip(batch["indices"].tolist(), outputs))
            if not checked:
                _check_selection(spec, batch, accelerator, evaluator, per_depth, outputs, exits)
        checked = True
    gathered = gather_object([(records, gate_rows)]) if accelerator.num_processes > 1 else [(records, gate_rows)]
    report = [None]
    if accelerator.is_main_process:
        by_depth = {k: {} for k in run_depths}
        gate_outputs: dict[str, dict] = {name: {} for name in specs}
        for part_records, part_gates in gathered:
            for k, rows in part_records.items():
                by_depth[k].update((r.index, r) for r in rows)
            for name, rows in part_gates.items():
                gate_outputs[name].update(rows)
        order = sorted(by_depth[run_depths[0]])
        modes = _route(order, by_depth, exits=exits, depths=depths, specs=specs, gate_outputs=gate_outputs,
                       oracle_betas=oracle_betas, random_routing_controls=random_routing_controls,
                       routing_seed=routing_seed, evaluator=evaluator)
        report[0] = {"num_images": len(dataset), "modes": {}, "per_image": {}}
        for name, (chosen, meta) in modes.items():
            acc = task.new_accumulator()
            for record in chosen:
                acc.add(record)
            report[0]["modes"][name] = {**meta, **task.summarize_mode(acc, label_info=label_info, exit_layers=exits)}
            report[0]["per_image"][name] = sorted(acc.rows, key=lambda r: r["index"])
        if task.name == "segmentation":
            report[0]["per_exit_counts"] = per_exit_counts(order, by_depth, label_info=label_info)
    if accelerator.num_processes > 1:
        broadcast_object_list(report, from_process=0)
    return report[0]


def per_exit_counts(order, by_depth: dict, *, label_info) -> dict:
    """The per-image PQ counts of every exit, enough to recompute the data-set PQ of any per-image routing on any
    subset of the images (the bootstrap of the main job's report): `counts` `(K, N, 4, C)` (true positives, false
    positives, false negatives, IoU sum per category in `category_ids` order) for `exits` and images `indices`."""
    exits = sorted(by_depth)
    return {"exits": exits, "indices": list(order), "category_ids": sorted(label_info.id2label),
            "thing_ids": sorted(label_info.thing_ids),
            "counts": np.stack([np.stack([by_depth[k][i].counts for i in order]) for k in exits])}


#: File of `evaluation_step.write_report` holding `per_exit_counts` (NumPy `.npz`).
PER_EXIT_COUNTS_FILE = "per_exit_counts.npz"


def save_per_exit_counts(path: str | Path, data: dict) -> Path:
    """Write `per_exit_counts` (see `mode_evaluation.per_exit_counts`) as a compressed `.npz`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{key: np.asarray(value) for key, value in data.items()})
    return path


def load_per_exit_counts(path: str | Path) -> dict:
    """Read what `save_per_exit_counts` wrote: `exits`, `indices`, `category_ids`, `thing_ids` as lists, `counts`
    `(K, N, 4, C)` as an array."""
    with np.load(Path(path)) as saved:
        data = {key: saved[key] for key in saved.files}
    missing = {"exits", "indices", "category_ids", "thing_ids", "counts"} - set(data)
    if missing:
        raise RecipeError(f"{path} lacks {sorted(missing)}: it is not a per-exit counts file of the evaluation")
    return {key: (value if key == "counts" else value.tolist()) for key, value in data.items()}


def _route(order, by_depth, *, exits, depths, specs, gate_outputs, oracle_betas, random_routing_controls,
           routing_seed, evaluator) -> dict:
    """Mode name -> (records chosen per image, mode metadata)."""

    def pick(chosen_depths, gate: bool) -> list:
        out = []
        for index, depth in zip(order, np.asarray(chosen_depths).tolist()):
            base = by_depth[int(depth)][index]
            if gate and getattr(evaluator, "with_gflops", True):  # the gate's own FLOPs are part of the cost
                height, width = base.processed_size
                total, encoder = evaluator.gflops(height, width, int(depth), True)
                base = dataclasses.replace(base, gflops=total, encoder_gflops=encoder)
            out.append(base)
        return out

    modes: dict = {}
    for k in depths:
        modes[f"depth_{k}"] = ([by_depth[k][i] for i in order],
                               {"kind": "fixed", "beta": None, "gate_objective": None, "controls": None})
    if oracle_betas:  # the oracle needs every exit (evaluate_modes runs them all when it is asked for)
        quality = np.array([[by_depth[k][i].quality for k in exits] for i in order])
    for beta in oracle_betas:
        modes[f"oracle_beta_{beta:g}"] = (pick(ideal_depths(quality, exits, beta), gate=False),
                                          {"kind": "oracle", "beta": float(beta), "gate_objective": None,
                                           "controls": None})
    for name, spec in specs.items():
        outputs = np.stack([gate_outputs[name][i] for i in order])
        for beta in spec.betas:
            mode = spec.mode_name(name, beta)
            chosen = spec.depths(outputs, exits, beta)
            trained_beta = beta if beta is not None else spec.label_beta
            modes[mode] = (pick(chosen, gate=True), {"kind": "gate", "beta": trained_beta,
                                                     "gate_objective": spec.objective, "controls": None})
            if random_routing_controls:
                shuffled = random_routing(chosen, seed=routing_seed)
                modes[f"random_{mode}"] = (pick(shuffled, gate=False),
                                           {"kind": "random_routing", "beta": trained_beta,
                                            "gate_objective": spec.objective, "controls": mode})
    return modes


__all__ = ["PER_EXIT_COUNTS_FILE", "GateSpec", "evaluate_modes", "load_per_exit_counts", "per_exit_counts",
           "save_per_exit_counts"]
