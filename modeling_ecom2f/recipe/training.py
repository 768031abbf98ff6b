"""The training loop shared by step 1 (early-exit parent) and step 3 (gate): accumulation, warm-up schedule,
clipping, periodic checkpoints, exact resume, progress bar and tracker logs on the main process.

A step plugs in with `loss_fn(model, batch) -> (loss, logs)`; everything else is here. The learning-rate scheduler
is stepped by this loop once per optimizer step (it is registered for checkpointing, not passed through
`accelerator.prepare`, whose wrapper would step it once per process).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .checkpointing import TrainingProgress, load_checkpoint, resolve_resume, save_checkpoint
from .runtime import progress_bar

logger = logging.getLogger("modeling_ecom2f.recipe")

LossFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]]


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate,
                             betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def total_train_steps(args: argparse.Namespace, batches_per_epoch: int) -> tuple[int, int]:
    """`(max_train_steps, num_epochs)`: `--max_train_steps` wins over `--num_train_epochs`."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
    if args.max_train_steps:
        return args.max_train_steps, math.ceil(args.max_train_steps / steps_per_epoch)
    return args.num_train_epochs * steps_per_epoch, args.num_train_epochs


def make_scheduler(optimizer, args: argparse.Namespace, *, max_train_steps: int):
    """The `--lr_scheduler_type` schedule with warm-up (`--num_warmup_steps`, else `--warmup_ratio` of the steps)."""
    from transformers import get_scheduler

    warmup = args.num_warmup_steps if args.num_warmup_steps is not None else round(args.warmup_ratio * max_train_steps)
    return get_scheduler(args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup,
                         num_training_steps=max_train_steps)


@dataclass
class TrainResult:
    """What a training loop did: its progress, whether it finished (not stopped early), and timing."""

    progress: TrainingProgress
    finished: bool
    seconds: float
    steps_this_run: int
    last_logs: dict
    skipped_steps: int = 0


def _gradients_finite(accelerator, model: torch.nn.Module, args: argparse.Namespace, loss_finite: bool) -> bool:
    """Clip (with `--max_grad_norm`) and say whether this optimizer step may be taken: the loss of every
    micro-batch and the gradient norm are finite, on every process. One host sync per optimizer step, as
    `torch.amp.GradScaler`'s inf check."""
    if args.max_grad_norm:
        norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
    else:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=accelerator.device)
    bad = (~torch.isfinite(torch.as_tensor(norm, device=accelerator.device))).float() + float(not loss_finite)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, "sum")  # every process skips the same steps
    return not bool(bad > 0)


def _optimizer_step(accelerator, model, optimizer, args: argparse.Namespace, loss_finite: bool) -> bool:
    """Take the optimizer step unless the loss or the gradients are non-finite; returns whether it was skipped.

    With fp16 mixed precision accelerate's gradient scaler already skips (and lowers its scale on) steps with
    non-finite gradients, so it decides; otherwise the step is skipped here the same way (no update, gradients
    dropped), so one NaN batch (a corrupt image, an overflow) does not poison the weights or end the run.
    """
    if not accelerator.sync_gradients:
        optimizer.step()  # accelerate: no-op while accumulating
        optimizer.zero_grad()
        return False
    if accelerator.scaler is not None:
        if args.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        return bool(accelerator.optimizer_step_was_skipped)
    skipped = not _gradients_finite(accelerator, model, args, loss_finite)
    if not skipped:
        optimizer.step()
    optimizer.zero_grad()
    return skipped


def _set_epoch(dataloader, epoch: int) -> None:
    if hasattr(dataloader, "set_epoch"):
        dataloader.set_epoch(epoch)  # accelerate: propagates to our sampler
    dataset = getattr(dataloader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)  # augmentation stream


def resume_or_start(accelerator, args: argparse.Namespace, *, fingerprint: dict) -> TrainingProgress:
    """Load `--resume_from_checkpoint` if any, else a fresh `TrainingProgress` carrying `fingerprint`."""
    folder = resolve_resume(getattr(args, "resume_from_checkpoint", None), args.output_dir)
    if folder is None:
        return TrainingProgress(fingerprint=fingerprint)
    return load_checkpoint(accelerator, folder, fingerprint=fingerprint)


def train_loop(
    *,
    accelerator,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    dataloader,
    loss_fn: LossFn,
    args: argparse.Namespace,
    progress: TrainingProgress,
    max_train_steps: int,
    description: str,
    on_step_end: Callable[[TrainingProgress], None] | None = None,
) -> TrainResult:
    """Run optimizer steps until `max_train_steps` (or `--stop_after_steps` steps of this run).

    `model`, `optimizer` and `dataloader` must come from `accelerator.prepare`; `scheduler` must be registered with
    `accelerator.register_for_checkpointing` before a resume is loaded. Checkpoints are written every
    `--checkpointing_steps` steps and at the end of the run (not when stopped by `--stop_after_steps`, which stands
    for a killed run). A step whose loss or gradients are non-finite is skipped (no update, no scheduler step; it
    still counts as a step), logged, and counted in `progress.extra["skipped_steps"]`.
    """
    start_time, start_step = time.perf_counter(), progress.completed_steps
    bar = progress_bar(accelerator, total=max_train_steps, initial=progress.completed_steps, desc=description)
    stop_at = None if args.stop_after_steps is None else start_step + args.stop_after_steps
    logs: dict = {}
    running, running_count = 0.0, 0
    loss_finite = True  # over the micro-batches of the current optimizer step
    progress.extra.setdefault("skipped_steps", 0)
    model.train()
    while progress.completed_steps < max_train_steps and (stop_at is None or progress.completed_steps < stop_at):
        _set_epoch(dataloader, progress.epoch)
        loader = dataloader
        if progress.batches_in_epoch:
            loader = accelerator.skip_first_batches(dataloader, progress.batches_in_epoch)
        epoch_done = True
        for batch in loader:
            with accelerator.accumulate(model):
                loss, step_logs = loss_fn(model, batch)
                accelerator.backward(loss)
                loss_value = float(loss.detach())
                loss_finite = loss_finite and math.isfinite(loss_value)
                skipped = _optimizer_step(accelerator, model, optimizer, args, loss_finite)
            progress.batches_in_epoch += 1
            if math.isfinite(loss_value):  # a skipped NaN batch does not poison the logged mean
                running += loss_value
                running_count += 1
            if not accelerator.sync_gradients:
                continue
            loss_finite = True
            if skipped:
                progress.extra["skipped_steps"] += 1
                logger.warning("step %d: non-finite loss or gradients, optimizer step skipped (%d skipped so far)",
                               progress.completed_steps + 1, progress.extra["skipped_steps"])
                accelerator.log({"skipped_steps": progress.extra["skipped_steps"]}, step=progress.completed_steps + 1)
            else:
                scheduler.step()
            progress.completed_steps += 1
            bar.update(1)
            if progress.completed_steps % args.logging_steps == 0 or progress.completed_steps == max_train_steps:
                mean_loss = accelerator.reduce(torch.tensor(running / running_count if running_count else math.nan,
                                                            device=accelerator.device), "mean")
                logs = {"loss": float(mean_loss), "lr": scheduler.get_last_lr()[0], **step_logs}
                running, running_count = 0.0, 0
                bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()})
                accelerator.log(logs, step=progress.completed_steps)
            if on_step_end is not None:
                on_step_end(progress)
            done = progress.completed_steps >= max_train_steps
            if args.checkpointing_steps and progress.completed_steps % args.checkpointing_steps == 0 and not done:
                save_checkpoint(accelerator, args.output_dir, progress, total_limit=args.checkpoints_total_limit)
            if done or (stop_at is not None and progress.completed_steps >= stop_at):
                epoch_done = progress.batches_in_epoch >= len(dataloader)
                break
        if epoch_done:
            progress.epoch += 1
            progress.batches_in_epoch = 0
    bar.close()
    finished = progress.completed_steps >= max_train_steps
    if finished:
        save_checkpoint(accelerator, args.output_dir, progress, total_limit=args.checkpoints_total_limit)
    elif stop_at is not None:
        logger.info("stopped after %d steps of this run (--stop_after_steps) at step %d of %d", args.stop_after_steps,
                    progress.completed_steps, max_train_steps)
    progress.extra["last_logs"] = logs
    return TrainResult(progress=progress, finished=finished, seconds=time.perf_counter() - start_time,
                       steps_this_run=progress.completed_steps - start_step, last_logs=logs,
                       skipped_steps=progress.extra["skipped_steps"])


def unwrap_and_save(accelerator, model, output_dir: str | Path, *, processor=None) -> Path:
    """`save_pretrained` of the unwrapped model (and processor) by the main process; returns the folder."""
    output_dir = Path(output_dir)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save)
    if processor is not None and accelerator.is_main_process:
        processor.save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    return output_dir


__all__ = [
    "TrainResult",
    "make_optimizer",
    "make_scheduler",
    "resume_or_start",
    "total_train_steps",
    "train_loop",
    "unwrap_and_save",
]
