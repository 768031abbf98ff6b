"""A run stopped after a checkpoint and resumed ends with exactly the weights of an uninterrupted run (same seed):
model, optimizer, schedule, RNG states, the depth sampler and the data position are all restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.recipe import TINY_MODEL, TINY_SYNTHETIC, load_example, read_json

from modeling_ecom2f.recipe import RecipeError, resolve_resume  # noqa: E402

# 12 images, 2 per batch, 2 batches per step: 3 steps per epoch, so 4 steps cross an epoch boundary and the resume
# from step 2 starts mid-epoch; augmentation on.
BASE = TINY_SYNTHETIC + TINY_MODEL + ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                                     "--max_train_steps", "4", "--checkpointing_steps", "2", "--learning_rate", "1e-3",
                                     "--logging_steps", "1", "--eval_depths"]
RUN = BASE + ["--seed", "3"]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    train = load_example("train_early_exit").main
    full = train(RUN + ["--output_dir", str(root / "full")])
    stopped = train(RUN + ["--output_dir", str(root / "resumed"), "--stop_after_steps", "3"])
    resumed = train(RUN + ["--output_dir", str(root / "resumed"), "--resume_from_checkpoint", "latest"])
    return root, full, stopped, resumed


def test_resumed_run_ends_with_the_uninterrupted_weights(runs):
    root, full, stopped, resumed = runs
    assert not stopped["finished"] and stopped["completed_steps"] == 3
    assert resumed["finished"] and resumed["completed_steps"] == 4
    # the resumed run restarted from the step-2 checkpoint (step 3 was lost with the "kill") and did steps 3-4
    assert sum(resumed["depths_sampled_this_run"].values()) == 2 * 2
    a, b = _weights(root / "full"), _weights(root / "resumed")
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, f"{len(changed)} tensors differ, e.g. {changed[:3]}"
    # the weights did move during training (the comparison is not vacuous)
    first = _weights(root / "full" / "checkpoints" / "step_000002")
    assert any(not torch.equal(first[k], a[k]) for k in a)
    # the depth sampler and data position of the final checkpoints agree too
    pa = read_json(root / "full" / "checkpoints" / "step_000004" / "progress.json")
    pb = read_json(root / "resumed" / "checkpoints" / "step_000004" / "progress.json")
    assert pa == pb
    assert (pa["epoch"], pa["batches_in_epoch"]) == (1, 2)


def test_resuming_with_other_arguments_is_an_error(runs, capsys):
    root = runs[0]
    train = load_example("train_early_exit").main
    changed = BASE + ["--seed", "4"]
    with pytest.raises(SystemExit) as info:
        train(changed + ["--output_dir", str(root / "resumed"), "--resume_from_checkpoint", "latest"])
    assert info.value.code == 2
    assert "seed: 3 -> 4" in capsys.readouterr().err


def test_incomplete_checkpoints_are_never_resumed(runs, tmp_path):
    root = runs[0]
    checkpoints = root / "resumed" / "checkpoints"
    broken = checkpoints / "step_000099"
    broken.mkdir()
    try:
        assert resolve_resume("latest", root / "resumed").name == "step_000004"
        with pytest.raises(RecipeError, match="not a complete checkpoint"):
            resolve_resume(str(broken), root / "resumed")
    finally:
        broken.rmdir()
    with pytest.raises(RecipeError, match="no such folder"):
        resolve_resume(str(tmp_path / "missing"), root / "resumed")
    assert resolve_resume("latest", tmp_path) is None  # nothing yet: a fresh run
