"""Training and evaluation loops of the depth probe (`depth_probe_model.DepthProbe`).

Training does a fixed number of steps; the batch of step `s` is drawn from `numpy.random.default_rng([seed, s])`, so a
run killed and resumed from its checkpoint (model, optimizer, schedule, step) ends with the weights of an
uninterrupted one, and the result does not depend on the machine's speed. Every step trains every exit from one pass:
the loss is the exit-weighted mean of the per-exit cross-entropies (weight `k` at exit `k` as in the ECO-M2F
authors' code, arXiv 2404.15244 Sec. 3.2, and weight 1 for the 0-layer control exit).

Evaluation runs every exit of every image from one pass and keeps, per image and exit, the confusion matrix at full
resolution (logits upsampled bilinearly), the correct/labelled pixel counts per per-pixel difficulty value, and the
gate's input map.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Per-pixel difficulty values are counted up to this value (larger ones are counted here).
MAX_PIXEL_DIFFICULTY = 40


@dataclass(frozen=True, kw_only=True)
class ProbeTrainConfig:
    """Schedule of a probe run (AdamW, linear warm-up then cosine decay)."""

    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    exit_weighting: str = "linear"
    checkpoint_every: int = 250
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size, checkpoint_every: must be >= 1")
        if self.exit_weighting not in ("linear", "uniform"):
            raise ValueError(f"exit_weighting: must be 'linear' or 'uniform', got {self.exit_weighting!r}")


def exit_weights(num_layers: int, weighting: str) -> torch.Tensor:
    """Loss weight of exits `0..num_layers`, summing to 1: `max(k, 1)` (linear) or 1 (uniform)."""
    raw = [max(k, 1) if weighting == "linear" else 1 for k in range(num_layers + 1)]
    return torch.tensor(raw, dtype=torch.float32) / sum(raw)


class ProbeInputs:
    """What the probe reads: cached maps of a frozen backbone, or images through a trained backbone.

    Args:
        images: `(N, H, W, 3)` uint8.
        backbone: the backbone module.
        frozen: cache the backbone's maps once (float16) instead of running it every step.
    """

    def __init__(self, *, images: np.ndarray, backbone: nn.Module, frozen: bool, batch_size: int = 32,
                 progress=None) -> None:
        self.images, self.backbone, self.frozen = images, backbone, frozen
        self.cache: list[np.ndarray] | None = None
        if frozen:
            chunks: list[list[np.ndarray]] = []
            starts = range(0, len(images), batch_size)
            with torch.no_grad():
                for start in (starts if progress is None else progress(starts)):
                    maps = backbone(self._pixels(np.arange(start, min(start + batch_size, len(images)))))
                    chunks.append([m.to(torch.float16).numpy() for m in maps])
            self.cache = [np.concatenate([c[level] for c in chunks]) for level in range(4)]

    def _pixels(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.images[indices]).permute(0, 3, 1, 2).float()  # (B, 3, H, W)

    def maps(self, indices: np.ndarray) -> list[torch.Tensor]:
        if self.cache is not None:
            return [torch.from_numpy(level[indices]).float() for level in self.cache]
        return self.backbone(self._pixels(indices))


def _schedule(config: ProbeTrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_probe(*, probe: nn.Module, inputs: ProbeInputs, labels: np.ndarray, config: ProbeTrainConfig,
                run_dir: Path, progress=None, stop_at: int | None = None) -> dict:
    """Train (or resume) the probe; returns `{"steps": ..., "final_losses": [...per exit]}`.

    Args:
        labels: `(N, H, W)` uint8 semantic labels (255 = void); the loss is taken at 1/4 resolution (nearest).
        run_dir: holds `checkpoint.pt` (written every `checkpoint_every` steps and at the end) and `train_log.jsonl`.
        stop_at: stop (with a checkpoint) after this step, as an interrupted run would; `None`: `config.steps`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainable = [p for module in (probe, inputs.backbone) for p in module.parameters() if p.requires_grad]
    if inputs.frozen:
        trainable = [p for p in probe.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    checkpoint = run_dir / "checkpoint.pt"
    step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["config"] != asdict(config):
            raise RuntimeError(f"{checkpoint} was written with another schedule {state['config']}; use a new run dir")
        probe.load_state_dict(state["probe"])
        if not inputs.frozen:
            inputs.backbone.load_state_dict(state["backbone"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
    weights = exit_weights(probe.num_layers, config.exit_weighting)
    quarter = torch.from_numpy(labels[:, 2::4, 2::4].astype(np.int64))  # (N, H/4, W/4), nearest
    probe.train()
    inputs.backbone.train(not inputs.frozen)

    def save(at: int) -> None:
        state = {"probe": probe.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": at, "config": asdict(config)}
        if not inputs.frozen:
            state["backbone"] = inputs.backbone.state_dict()
        torch.save(state, run_dir / "checkpoint.tmp")
        os.replace(run_dir / "checkpoint.tmp", checkpoint)

    bar = None if progress is None else progress(total=config.steps, initial=step, desc="probe training")
    running = None
    with open(run_dir / "train_log.jsonl", "a") as log:
        last = config.steps if stop_at is None else min(stop_at, config.steps)
        while step < last:
            indices = np.random.default_rng([config.seed, step]).choice(len(labels), config.batch_size, replace=False)
            logits = probe(inputs.maps(indices))
            target = quarter[indices]
            losses = torch.stack([nn.functional.cross_entropy(out, target, ignore_index=255) for out in logits])
            loss = (weights * losses).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            current = losses.detach().numpy()
            running = current if running is None else 0.98 * running + 0.02 * current
            if bar is not None:
                bar.update(1)
                bar.set_postfix(first=f"{running[0]:.3f}", last=f"{running[-1]:.3f}")
            if step % 50 == 0 or step == config.steps:
                log.write(json.dumps({"step": step, "losses": [round(float(v), 5) for v in running]}) + "\n")
                log.flush()
            if step % config.checkpoint_every == 0 or step == last:
                save(step)
    if bar is not None:
        bar.close()
    return {"steps": step, "final_losses": [] if running is None else [float(v) for v in running]}


@dataclass
class ProbeEvaluation:
    """Per-image records of every exit.

    Attributes:
        confusion: `(N, exits, C, C)` int64 (rows ground truth, columns prediction; void pixels left out).
        pixel_correct, pixel_total: `(N, exits, MAX_PIXEL_DIFFICULTY + 1)` int64 counts by per-pixel difficulty.
        gate_maps: `(N, d_model, h, w)` float32, the gate's input map of each image.
    """

    confusion: np.ndarray
    pixel_correct: np.ndarray
    pixel_total: np.ndarray
    gate_maps: np.ndarray


def evaluate_probe(*, probe: nn.Module, inputs: ProbeInputs, labels: np.ndarray, pixel_difficulty: np.ndarray,
                   num_classes: int, gate_level: int = 0, batch_size: int = 32, progress=None) -> ProbeEvaluation:
    """Every exit of every image from one pass (see `ProbeEvaluation`)."""
    probe.eval()
    inputs.backbone.eval()
    count, exits = len(labels), probe.num_layers + 1
    bins = MAX_PIXEL_DIFFICULTY + 1
    confusion = np.zeros((count, exits, num_classes, num_classes), dtype=np.int64)
    correct = np.zeros((count, exits, bins), dtype=np.int64)
    total = np.zeros((count, exits, bins), dtype=np.int64)
    gate_maps = []
    starts = range(0, count, batch_size)
    with torch.no_grad():
        for start in (starts if progress is None else progress(starts)):
            indices = np.arange(start, min(start + batch_size, count))
            maps = inputs.maps(indices)
            gate_maps.append(probe.gate_map(maps, gate_level).numpy())
            truth = labels[indices].astype(np.int64)  # (B, H, W)
            valid = truth != 255
            level = np.clip(pixel_difficulty[indices], -1, MAX_PIXEL_DIFFICULTY)
            for k, logits in enumerate(probe(maps)):
                full = nn.functional.interpolate(logits, size=truth.shape[1:], mode="bilinear", align_corners=False)
                predicted = full.argmax(1).numpy()
                for b, i in enumerate(indices):
                    v = valid[b]
                    pairs = truth[b][v] * num_classes + predicted[b][v]
                    confusion[i, k] = np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes)
                    known = v & (level[b] >= 0)
                    hit = (predicted[b] == truth[b]) & known
                    total[i, k] = np.bincount(level[b][known], minlength=bins)
                    correct[i, k] = np.bincount(level[b][hit], minlength=bins)
    return ProbeEvaluation(confusion=confusion, pixel_correct=correct, pixel_total=total,
                           gate_maps=np.concatenate(gate_maps).astype(np.float32))


__all__ = ["MAX_PIXEL_DIFFICULTY", "ProbeEvaluation", "ProbeInputs", "ProbeTrainConfig", "evaluate_probe",
           "exit_weights", "train_probe"]
