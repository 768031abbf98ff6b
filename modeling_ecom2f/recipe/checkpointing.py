"""Resumable checkpoints: `accelerator.save_state` plus a `progress.json` that marks the checkpoint complete.

Layout: `OUTPUT_DIR/checkpoints/step_000050/` holds what `accelerator.save_state` writes (model, optimizer, RNG
states of every process, the registered scheduler) and, written last and atomically by the main process,
`progress.json`: the optimizer steps done, the epoch and the batches of it consumed, the step-1 depth sampler's
state and a fingerprint of the arguments that shape the run. A folder without `progress.json` is an interrupted
save and is never resumed from. Resuming with a different fingerprint (another seed, batch size, data set...) is an
error, since it would silently give another run than the one asked for.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .runtime import RecipeError, write_json

logger = logging.getLogger("modeling_ecom2f.recipe")

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
PROGRESS_FILE = "progress.json"


@dataclass
class TrainingProgress:
    """Where a training run stands; saved with every checkpoint.

    Attributes:
        completed_steps: optimizer steps done.
        epoch: the current epoch.
        batches_in_epoch: batches (per process) of the current epoch already consumed.
        depth_rng_state: `random.Random.getstate()` of the step-1 depth sampler, as JSON lists.
        fingerprint: the run-shaping arguments (see `run_fingerprint`).
        extra: step-specific values (e.g. the last logged loss).
    """

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    depth_rng_state: list | None = None
    fingerprint: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def depth_rng(self, seed: int) -> random.Random:
        """The depth sampler: seeded with `seed` on a fresh run, restored on a resumed one."""
        rng = random.Random(seed)
        if self.depth_rng_state is not None:
            version, internal, gauss = self.depth_rng_state
            rng.setstate((version, tuple(internal), gauss))
        return rng

    def remember_rng(self, rng: random.Random) -> None:
        version, internal, gauss = rng.getstate()
        self.depth_rng_state = [version, list(internal), gauss]


def run_fingerprint(args, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of `keys` in `args` (JSON-comparable), which a resume must not change."""
    return json.loads(json.dumps({k: getattr(args, k, None) for k in keys}, default=str))


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def _step_of(folder: Path) -> int:
    return int(folder.name[len(CHECKPOINT_PREFIX):])


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (with `progress.json`), oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and folder.name.startswith(CHECKPOINT_PREFIX) and folder.name[len(CHECKPOINT_PREFIX):].isdigit():
            if (folder / PROGRESS_FILE).is_file():
                found.append(folder)
            else:
                logger.warning("ignoring incomplete checkpoint %s (no %s: the save was interrupted)", folder,
                               PROGRESS_FILE)
    return sorted(found, key=_step_of)


def resolve_resume(resume: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: None for a fresh run.

    `"latest"` is the newest complete checkpoint under `OUTPUT_DIR/checkpoints` (None, with a log line, if there is
    none yet); anything else must be a complete checkpoint folder.
    """
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a fresh run",
                        checkpoints_dir(output_dir))
            return None
        return found[-1]
    folder = Path(resume)
    if not folder.is_dir():
        raise RecipeError(f"--resume_from_checkpoint {folder}: no such folder")
    if not (folder / PROGRESS_FILE).is_file():
        raise RecipeError(f"--resume_from_checkpoint {folder}: not a complete checkpoint (no {PROGRESS_FILE}; the save "
                          "was interrupted, or it is not a recipe checkpoint)")
    return folder


def save_checkpoint(accelerator, output_dir: str | Path, progress: TrainingProgress, *, total_limit: int | None) -> Path:
    """Save a resumable checkpoint for `progress.completed_steps`; prune the oldest beyond `total_limit`."""
    folder = checkpoints_dir(output_dir) / f"{CHECKPOINT_PREFIX}{progress.completed_steps:06d}"
    if accelerator.is_main_process and folder.exists():
        shutil.rmtree(folder)  # a stale or interrupted save of the same step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(folder / PROGRESS_FILE, asdict(progress))  # last: marks the checkpoint complete
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    logger.info("saved checkpoint %s", folder)
    return folder


def load_checkpoint(accelerator, folder: Path, *, fingerprint: dict) -> TrainingProgress:
    """Restore model, optimizer, scheduler and RNG states from `folder`; returns its progress.

    Raises:
        RecipeError: the checkpoint was made with different run-shaping arguments.
    """
    progress = TrainingProgress(**json.loads((folder / PROGRESS_FILE).read_text(encoding="utf-8")))
    changed = {k: (progress.fingerprint.get(k), v) for k, v in fingerprint.items() if progress.fingerprint.get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise RecipeError(f"cannot resume from {folder}: these arguments differ from the checkpointed run ({details}); "
                          "use the original arguments or another --output_dir")
    accelerator.load_state(str(folder))
    logger.info("resumed from %s (step %d, epoch %d, batch %d)", folder, progress.completed_steps, progress.epoch,
                progress.batches_in_epoch)
    return progress


__all__ = [
    "CHECKPOINTS_DIR",
    "PROGRESS_FILE",
    "TrainingProgress",
    "checkpoints_dir",
    "list_checkpoints",
    "load_checkpoint",
    "resolve_resume",
    "run_fingerprint",
    "save_checkpoint",
]
