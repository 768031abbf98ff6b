"""ECO-M2F step 1: train the parent model so that it can exit at every allowed encoder depth.

Each optimizer step samples one depth from `config.exit_layers` (uniform, `sample_exit_depth`) with a
`random.Random` seeded identically on every process, so all data-parallel processes run the same sub-network; the
whole model (backbone, the encoder up to that depth, the one shared decoder) is trained with the stock Mask2Former
loss times the depth weight of `config.exit_loss_weighting` ("linear": k at exit k, as the authors' code). The
sampler's state is part of every checkpoint, so a resumed run draws the same depths as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..ecom2f_depth import sample_exit_depth
from .checkpointing import run_fingerprint
from .data import load_split, train_dataloader
from .mode_evaluation import evaluate_modes
from .modeling import count_parameters
from .runtime import RecipeError, end_run, make_accelerator, push_to_hub, write_summary
from .tasks import get_task
from .training import (
    make_optimizer,
    make_scheduler,
    resume_or_start,
    total_train_steps,
    train_loop,
    unwrap_and_save,
)

logger = logging.getLogger("modeling_ecom2f.recipe")

#: Arguments that shape a step-1 run; a resume must not change them.
FINGERPRINT_KEYS = (
    "seed", "dataset", "dataset_path", "train_split", "image_size", "max_train_samples", "synthetic_train_images",
    "synthetic_seed", "synthetic_max_objects", "synthetic_min_object_size", "per_device_train_batch_size",
    "gradient_accumulation_steps", "learning_rate", "weight_decay", "lr_scheduler_type", "num_warmup_steps",
    "warmup_ratio", "max_train_steps", "num_train_epochs", "min_scale", "max_scale", "flip_probability",
    "no_augmentation", "model_name_or_path", "backbone", "exit_layers", "token_scaling_layers", "task",
)


def check_depth_agreement(accelerator, depth: int) -> None:
    """Raise if the processes sampled different depths (a mis-seeded sampler would train nonsense silently)."""
    if accelerator.num_processes == 1:
        return
    depths = accelerator.gather(torch.tensor([depth], device=accelerator.device))
    if not bool((depths == depths[0]).all()):
        raise RuntimeError(f"data-parallel processes sampled different exit depths {depths.tolist()}: the depth "
                           "sampler must be seeded identically on every process")


def train_early_exit(args: argparse.Namespace, *, publish: Callable[..., Any] | None = None) -> dict:
    """Run step 1 from parsed `build_train_early_exit_parser()` arguments; returns the summary dict.

    Writes to `--output_dir`: the trained model and processor (`save_pretrained`), `checkpoints/step_*`, and
    `train_early_exit_summary.json`. The task (`args.task`, see `tasks.get_task`) picks the model, the batches
    and the validation metric (PQ for segmentation, box AP for detection). With `--push_to_hub`, `publish`
    uploads the result (see `runtime.push_to_hub`).
    """
    task = get_task(args)
    accelerator = make_accelerator(args, gradient_accumulation_steps=args.gradient_accumulation_steps,
                                   project_name="ecom2f_step1")
    from accelerate.utils import set_seed

    set_seed(args.seed)
    train_set, label_info = load_split(args, "train")
    model = task.build_model(args, label_info)
    if args.eval_depths:
        bad = [d for d in args.eval_depths if d not in model.config.exit_layers]
        if bad:
            raise RecipeError(f"--eval_depths {bad} are not exits of the model {model.config.exit_layers}")
    processor = task.build_image_processor(image_size=args.image_size, max_image_size=args.max_image_size,
                                           model_dir=args.model_name_or_path)
    dataloader = train_dataloader(args, train_set, label_info, processor, num_processes=accelerator.num_processes,
                                  make_collator=task.make_collator)
    optimizer = make_optimizer(model, args)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    max_steps, num_epochs = total_train_steps(args, len(dataloader))
    scheduler = make_scheduler(optimizer, args, max_train_steps=max_steps)
    accelerator.register_for_checkpointing(scheduler)

    config = accelerator.unwrap_model(model).config
    logger.info("***** Step 1: early-exit training *****")
    logger.info("  images = %d, classes = %d, exits = %s (loss weighting %s)", len(train_set), label_info.num_labels,
                config.exit_layers, config.exit_loss_weighting)
    logger.info("  processes = %d, batch per process = %d, accumulation = %d, optimizer steps = %d (%d epochs)",
                accelerator.num_processes, args.per_device_train_batch_size, args.gradient_accumulation_steps,
                max_steps, num_epochs)
    logger.info("  parameters = %s", count_parameters(model))

    progress = resume_or_start(accelerator, args, fingerprint=run_fingerprint(args, FINGERPRINT_KEYS))
    rng = progress.depth_rng(args.seed)
    depth_counts = {k: 0 for k in config.exit_layers}

    def loss_fn(model, batch):
        depth = sample_exit_depth(config.exit_layers, rng=rng)
        depth_counts[depth] += 1
        if progress.completed_steps == 0 or progress.completed_steps % args.logging_steps == 0:
            check_depth_agreement(accelerator, depth)
        outputs = model(**task.model_inputs(batch, accelerator.device), num_encoder_layers=depth)
        return outputs.loss, {"depth": depth}

    result = train_loop(accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
                        dataloader=dataloader, loss_fn=loss_fn, args=args, progress=progress,
                        max_train_steps=max_steps, description="step 1 (early exit)",
                        on_step_end=lambda p: p.remember_rng(rng))
    summary = {
        "step": "train_early_exit",
        "finished": result.finished,
        "completed_steps": result.progress.completed_steps,
        "max_train_steps": max_steps,
        "train_seconds_this_run": round(result.seconds, 2),
        "steps_per_second": round(result.steps_this_run / max(result.seconds, 1e-9), 4),
        "num_processes": accelerator.num_processes,
        "exit_layers": config.exit_layers,
        "depths_sampled_this_run": {str(k): v for k, v in depth_counts.items()},
        "last_logs": result.last_logs,
        "skipped_steps": result.skipped_steps,  # non-finite loss or gradients: no update (training.train_loop)
    }
    if not result.finished:
        write_summary(accelerator, args.output_dir, "train_early_exit", summary)
        end_run(accelerator)
        return summary
    model_dir = unwrap_and_save(accelerator, model, args.output_dir, processor=processor)
    summary["model_dir"] = str(model_dir)
    if args.eval_depths is None or args.eval_depths:
        depths = args.eval_depths or sorted({config.exit_layers[0], config.exit_layers[-1]})
        start = time.perf_counter()
        val_set, val_labels = load_split(args, "validation")
        report = evaluate_modes(accelerator=accelerator, model=accelerator.unwrap_model(model), processor=processor,
                                dataset=val_set, label_info=val_labels, args=args, depths=depths,
                                with_ap=False, with_miou=False, task=task)
        quality = task.quality
        summary["validation"] = {name: {quality: r[quality], "encoder_gflops": r["gflops"]["encoder_mean"]}
                                 for name, r in report["modes"].items()}
        summary["validation_seconds"] = round(time.perf_counter() - start, 2)
        logger.info("validation %s: %s", task.quality_label,
                    {k: round(100 * v[quality], 2) for k, v in summary["validation"].items()})
        accelerator.log({f"val/{quality}_{k}": v[quality] for k, v in summary["validation"].items()},
                        step=result.progress.completed_steps)
    summary["hub_commit"] = push_to_hub(accelerator, args, model_dir=Path(model_dir), publish=publish)
    write_summary(accelerator, args.output_dir, "train_early_exit", summary)
    end_run(accelerator)
    return summary


__all__ = ["FINGERPRINT_KEYS", "check_depth_agreement", "train_early_exit"]
