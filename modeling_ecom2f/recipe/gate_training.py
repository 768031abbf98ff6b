"""ECO-M2F step 3: freeze everything but the gate and train it on the derived data set, with one of two objectives:

- `classification` (the paper, arXiv 2404.15244 Sec. 3.3): cross-entropy on the ideal-depth labels
  `argmax_k(PQ_k - beta k)` of one beta;
- `utility`: mean-squared regression of each exit's per-image quality gain over the shallowest exit
  (`PQ_k - PQ_first`); the depth is then `argmax_k(pred_k - beta k)` for any beta given at inference
  (`model(..., gate_beta=b)`), so one trained gate serves every trade-off, and `--target_encoder_fraction` picks the
  beta that meets an encoder budget on the held-out training images (`routing.calibrate_beta`). Regression keeps
  the size of each image's gain, which argmax labels (mostly ties of noisy per-image PQ, resolved to the
  shallowest exit) throw away: the classification gate tends to predict the majority label.

With the rest of the model frozen and no augmentation, the gate's input (the mean-pooled, input-projected 1/32
tokens) is a fixed vector per image. We compute it once per training image through the model's own
`compute_gate_logits` (a hook on the gate's classifier records the pooled vector; the first batch is checked to
reproduce the gate's logits exactly) and train the gate on those vectors: the same optimisation as running the
frozen backbone every step, at a fraction of the cost. A share of the training images (`--holdout_fraction`) is held
out to report gate accuracy on unseen images; the validation split is used only for the final PQ/GFLOPs.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .checkpointing import run_fingerprint
from .data import EpochShuffleSampler, inference_dataloader, load_split, shard_indices
from .derived import load_derived_dataset, quality_matrix, weights_digest
from .depth_labels import check_beta, ideal_depths, label_histogram
from .mode_evaluation import evaluate_modes
from .modeling import gate_module, rebuild_gate
from .routing import calibrate_beta, utility_depths
from .runtime import RecipeError, end_run, make_accelerator, progress_bar, push_to_hub, write_summary
from .tasks import get_task
from .training import make_optimizer, make_scheduler, resume_or_start, total_train_steps, train_loop, unwrap_and_save

logger = logging.getLogger("modeling_ecom2f.recipe")

FINGERPRINT_KEYS = ("seed", "beta", "gate_objective", "gate_hidden_size", "gate_pooling", "gate_input_level", "derived_dataset", "model_name_or_path", "holdout_fraction",
                    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
                    "lr_scheduler_type", "max_train_steps", "num_train_epochs")


class GateOnFeatures(torch.nn.Module):
    """The model's own gate applied to its pooled input vectors `(B, F)` (what the gate's classifier reads)."""

    def __init__(self, gate: torch.nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.gate.classifier(features)


def extract_gate_features(*, accelerator, model, processor, dataset, label_info, args, task=None) -> np.ndarray:
    """The gate's pooled input `(num_images, channels)` for every image (sharded, gathered on every process)."""
    from accelerate.utils import gather_object

    task = get_task(task)
    gate = gate_module(model)
    captured: list[torch.Tensor] = []
    handle = gate.classifier.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    indices = shard_indices(len(dataset), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = inference_dataloader(dataset, label_info, processor, indices=indices,
                                  batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
                                  make_collator=task.make_collator)
    rows: list[tuple[int, list[float]]] = []
    try:
        for batch in progress_bar(accelerator, iterable=loader, total=len(loader), desc="step 3 (gate inputs)"):
            captured.clear()
            with torch.no_grad():
                logits = model.model.compute_gate_logits(batch["pixel_values"].to(accelerator.device),
                                                         batch["pixel_mask"].to(accelerator.device))
                pooled = captured[0].float()
                again = gate.classifier(pooled)
            if not torch.allclose(again, logits, rtol=1e-4, atol=1e-5):
                raise RecipeError("the gate is not 'pool then classify': its inputs cannot be cached; "
                                  "this step needs a gate of modeling_ecom2f.EcoExitGate's form")
            rows.extend(zip(batch["indices"].tolist(), pooled.cpu().tolist()))
    finally:
        handle.remove()
    rows = gather_object(rows) if accelerator.num_processes > 1 else rows
    by_index = dict(rows)
    if sorted(by_index) != list(range(len(dataset))):
        raise RecipeError("gate inputs were not computed for every training image")
    return np.asarray([by_index[i] for i in range(len(dataset))], dtype=np.float32)


def holdout_split(num_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train_indices, holdout_indices)`, a seeded random split."""
    if not 0.0 <= fraction < 1.0:
        raise RecipeError(f"--holdout_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 7]).permutation(num_images)
    count = int(round(fraction * num_images))
    return np.sort(order[count:]), np.sort(order[:count])


def _gate_report(logits: np.ndarray, targets: np.ndarray, quality: np.ndarray, exits: list[int], *,
                 quality_name: str = "pq") -> dict:
    predicted = logits.argmax(axis=1)
    depths = np.asarray(exits)[predicted]
    rows = np.arange(len(predicted))
    return {"accuracy": float((predicted == targets).mean()), "expected_depth": float(depths.mean()),
            "label_mean_depth": float(np.asarray(exits)[targets].mean()),
            f"mean_{quality_name}_of_gate_choice": float(quality[rows, predicted].mean()),
            f"mean_{quality_name}_full_depth": float(quality[:, -1].mean()),
            "predicted_histogram": label_histogram(depths, exits), "num_images": int(len(predicted))}


def utility_targets(quality: np.ndarray) -> np.ndarray:
    """`(num_images, num_exits)` regression targets of a utility gate: each exit's quality gain over the shallowest."""
    quality = np.asarray(quality, dtype=np.float32)
    return quality - quality[:, :1]


def _utility_report(predicted: np.ndarray, quality: np.ndarray, exits: list[int], betas: list[float], *,
                    quality_name: str = "pq") -> dict:
    """Per beta, what the utility gate's choices give on these images (mean per-image quality and depth)."""
    rows = np.arange(len(predicted))
    targets = utility_targets(quality)
    report = {"mse": float(((predicted - targets) ** 2).mean()), "num_images": int(len(predicted)),
              f"mean_{quality_name}_per_exit": quality.mean(axis=0).tolist(), "betas": {}}
    for beta in betas:
        depths = utility_depths(predicted, exits, beta)
        chosen = np.searchsorted(np.asarray(exits), depths)
        report["betas"][f"{beta:g}"] = {"mean_depth": float(depths.mean()),
                                        f"mean_{quality_name}": float(quality[rows, chosen].mean()),
                                        "histogram": label_histogram(depths, exits)}
    return report


def train_gate(args: argparse.Namespace, *, publish: Callable[..., Any] | None = None) -> dict:
    """Run step 3 from parsed `build_train_gate_parser()` arguments; returns the summary dict.

    Writes to `--output_dir`: the model with the trained gate (`config.gate_trained = True`) and its processor,
    `checkpoints/step_*` and `train_gate_summary.json`. With `--push_to_hub`, `publish` uploads the result (see
    `runtime.push_to_hub`).
    """
    task = get_task(args)
    objective = getattr(args, "gate_objective", "classification")
    if objective == "classification" and args.beta is None:
        raise RecipeError("--beta is required for --gate_objective classification (the labels argmax_k(q_k - beta k) "
                          "depend on it); a utility gate takes any beta at inference")
    if objective == "classification" and getattr(args, "target_encoder_fraction", None) is not None:
        raise RecipeError("--target_encoder_fraction calibrates the beta of a utility gate; a classification gate "
                          "is trained for one --beta")
    beta = check_beta(args.beta if args.beta is not None else 0.0)
    if not args.model_name_or_path:
        raise RecipeError("step 3 needs --model_name_or_path (the step-1 parent the derived data set was made with)")
    derived, info = load_derived_dataset(args.derived_dataset)
    made_for = info.get("task", "segmentation")
    if made_for != task.name:
        raise RecipeError(f"{args.derived_dataset} is a {made_for} derived data set; this is the {task.name} recipe: "
                          f"rerun step 2 with the {task.name} script")
    if info.get("model_digest") != weights_digest(args.model_name_or_path):
        raise RecipeError(f"{args.derived_dataset} was derived from {info.get('model_dir')}, whose weights differ from "
                          f"{args.model_name_or_path}: rerun step 2 with this model")
    accelerator = make_accelerator(args, gradient_accumulation_steps=args.gradient_accumulation_steps,
                                   project_name="ecom2f_step3")
    from accelerate.utils import set_seed

    set_seed(args.seed)
    start = time.perf_counter()
    dataset, label_info = load_split(args, info["split"])
    ids = [str(i) for i in dataset["image_id"]]
    if len(ids) != len(derived) or ids != list(derived["image_id"]):
        raise RecipeError(f"the derived data set's {len(derived)} images are not the {len(ids)} images of split "
                          f"{info['split']!r} given here; pass the data arguments used in step 2")
    model = task.load_trained_model(args.model_name_or_path, label_info=label_info).to(accelerator.device)
    exits = list(model.config.exit_layers)
    if info["exit_layers"] != exits:
        raise RecipeError(f"the derived data set has exits {info['exit_layers']}, the model {exits}")
    quality = quality_matrix(derived, exits, column=task.quality)
    labels = ideal_depths(quality, exits, beta)
    targets = np.searchsorted(np.asarray(exits), labels)
    histogram = label_histogram(labels, exits)
    logger.info("***** Step 3: gate training (%s), beta = %g *****", objective, beta)
    logger.info("  label histogram %s (mean ideal depth %.3f)", histogram, labels.mean())
    if objective == "classification" and max(histogram.values()) == len(labels):
        logger.warning("every image has the label %d at beta=%g: the gate will learn a constant", int(labels[0]), beta)
    pooling = getattr(args, "gate_pooling", None) or "mean"
    try:  # the config's rules judge the gate options (`validate_architecture`); a bad one is a command-line error
        if getattr(args, "gate_input_level", None) is not None:
            model.config.gate_input_level = args.gate_input_level
            model.config.validate_architecture()
        if objective == "utility" or getattr(args, "gate_hidden_size", None) is not None or pooling != "mean":
            rebuild_gate(model, hidden_size=getattr(args, "gate_hidden_size", None), objective=objective,
                         pooling=pooling)
    except ValueError as error:
        raise RecipeError(f"--gate_*: {error}") from error

    processor = task.build_image_processor(image_size=args.image_size, max_image_size=args.max_image_size,
                                           model_dir=args.model_name_or_path)
    features = extract_gate_features(accelerator=accelerator, model=model, processor=processor, dataset=dataset,
                                     label_info=label_info, args=args, task=task)
    train_idx, holdout_idx = holdout_split(len(labels), args.holdout_fraction, args.seed)
    model.freeze_all_but_gate()
    head = GateOnFeatures(gate_module(model))
    regression = utility_targets(quality)
    goal = (torch.from_numpy(regression[train_idx]) if objective == "utility"
            else torch.from_numpy(targets[train_idx]).long())
    train_set = torch.utils.data.TensorDataset(torch.from_numpy(features[train_idx]), goal)
    if len(train_set) < args.per_device_train_batch_size * accelerator.num_processes:
        args.per_device_train_batch_size = max(1, len(train_set) // accelerator.num_processes)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.per_device_train_batch_size, drop_last=True,
                                         sampler=EpochShuffleSampler(len(train_set), seed=args.seed),
                                         generator=torch.Generator().manual_seed(args.seed))
    optimizer = make_optimizer(head, args)
    head, optimizer, loader = accelerator.prepare(head, optimizer, loader)
    max_steps, _ = total_train_steps(args, len(loader))
    scheduler = make_scheduler(optimizer, args, max_train_steps=max_steps)
    accelerator.register_for_checkpointing(scheduler)
    progress = resume_or_start(accelerator, args, fingerprint=run_fingerprint(args, FINGERPRINT_KEYS))

    def loss_fn(head, batch):
        vectors, goal = batch
        if objective == "utility":
            return torch.nn.functional.mse_loss(head(vectors).float(), goal), {}
        return torch.nn.functional.cross_entropy(head(vectors), goal), {}

    result = train_loop(accelerator=accelerator, model=head, optimizer=optimizer, scheduler=scheduler,
                        dataloader=loader, loss_fn=loss_fn, args=args, progress=progress, max_train_steps=max_steps,
                        description=f"step 3 ({objective} gate" + (f", beta={beta:g})" if objective ==
                                                                     "classification" else ")"))
    summary = {"step": "train_gate", "gate_objective": objective, "beta": beta, "finished": result.finished,
               "completed_steps": result.progress.completed_steps, "max_train_steps": max_steps,
               "label_histogram": histogram, "label_mean_depth": float(labels.mean()),
               "num_processes": accelerator.num_processes, "skipped_steps": result.skipped_steps}
    if not result.finished:
        write_summary(accelerator, args.output_dir, "train_gate", summary)
        end_run(accelerator)
        return summary
    head = accelerator.unwrap_model(head).eval()
    with torch.no_grad():
        logits = head(torch.from_numpy(features).to(accelerator.device)).float().cpu().numpy()
    if objective == "utility":
        calibration = holdout_idx if len(holdout_idx) else train_idx
        if getattr(args, "target_encoder_fraction", None) is not None:
            beta, achieved = calibrate_beta(logits[calibration], exits, target_fraction=args.target_encoder_fraction,
                                            exit_costs=encoder_exit_costs(model, args.image_size))
            summary.update({"beta": beta, "calibration": {"target_encoder_fraction": args.target_encoder_fraction,
                                                          "achieved_encoder_fraction": achieved,
                                                          "num_images": int(len(calibration))}})
            logger.info("calibrated gate_beta = %.5g: mean encoder cost %.3f of full depth on %d held-out images",
                        beta, achieved, len(calibration))
        model.config.gate_beta = beta
        model.config.validate_architecture()
        betas = sorted({0.0, beta, *DEFAULT_REPORT_BETAS})
        summary["train"] = _utility_report(logits[train_idx], quality[train_idx], exits, betas,
                                           quality_name=task.quality)
        if len(holdout_idx):
            summary["holdout"] = _utility_report(logits[holdout_idx], quality[holdout_idx], exits, betas,
                                                 quality_name=task.quality)
    else:
        summary["train"] = _gate_report(logits[train_idx], targets[train_idx], quality[train_idx], exits,
                                        quality_name=task.quality)
        if len(holdout_idx):
            summary["holdout"] = _gate_report(logits[holdout_idx], targets[holdout_idx], quality[holdout_idx], exits,
                                              quality_name=task.quality)
    model.config.gate_trained = True
    model.requires_grad_(True)
    model_dir = unwrap_and_save(accelerator, model, args.output_dir, processor=processor)
    summary["model_dir"] = str(model_dir)
    if not args.skip_validation:
        val_set, val_labels = load_split(args, "validation")
        report = evaluate_modes(accelerator=accelerator, model=model, processor=processor, dataset=val_set,
                                label_info=val_labels, args=args, depths=[], gates={"gate": None},
                                random_routing_controls=False, with_ap=False, with_miou=False,
                                description="step 3 (validation)", task=task)
        gate = next(r for r in report["modes"].values() if r["kind"] == "gate")
        summary["validation"] = {task.quality: gate[task.quality], "mean_depth": gate["mean_depth"],
                                 "gflops": gate["gflops"], "depth_histogram": gate["depth_histogram"]}
        accelerator.log({f"val/{task.quality}": gate[task.quality], "val/mean_depth": gate["mean_depth"]},
                        step=result.progress.completed_steps)
    for part in ("train", "holdout"):
        if part in summary and objective == "classification":
            logger.info("gate %s: accuracy %.3f, expected depth %.2f", part, summary[part]["accuracy"],
                        summary[part]["expected_depth"])
        elif part in summary:
            logger.info("utility gate %s: mse %.5f", part, summary[part]["mse"])
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["hub_commit"] = push_to_hub(accelerator, args, model_dir=Path(model_dir), publish=publish)
    write_summary(accelerator, args.output_dir, "train_gate", summary)
    end_run(accelerator)
    return summary


#: Betas at which step 3 reports a utility gate's choices on the training / held-out images.
DEFAULT_REPORT_BETAS = (0.001, 0.003, 0.01, 0.03)


def encoder_exit_costs(model, image_size: int | None) -> list[float] | None:
    """Deformable-encoder GFLOPs of each exit at a square `image_size` (PRO-SCALE layers differ in cost); `None`
    (cost proportional to depth) when the model has no FLOP counter or no size is known."""
    if not image_size or not hasattr(model.model, "pixel_level_module"):
        return None
    from ..ecom2f_flops import count_gflops

    device = next(model.parameters()).device
    sample = torch.zeros(1, 3, image_size, image_size, device=device)
    return [count_gflops(model, sample, num_encoder_layers=k).encoder for k in model.config.exit_layers]


__all__ = ["DEFAULT_REPORT_BETAS", "FINGERPRINT_KEYS", "encoder_exit_costs", "utility_targets", "GateOnFeatures", "extract_gate_features", "holdout_split", "train_gate"]
