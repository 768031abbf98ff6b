"""A training step whose loss or gradients are non-finite is skipped, counted and logged; the run goes on."""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file

from helpers.recipe import TINY_MODEL, TINY_SYNTHETIC, load_example

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation  # noqa: E402

RUN = TINY_SYNTHETIC + TINY_MODEL + ["--per_device_train_batch_size", "4", "--max_train_steps", "3",
                                    "--learning_rate", "1e-3", "--logging_steps", "1", "--seed", "0", "--eval_depths"]


def _nan_on_call(monkeypatch, bad_calls: set[int]) -> list[int]:
    """Patch the model forward so that the training forwards numbered in `bad_calls` (1-based) see NaN pixels."""
    original, calls = EcoMask2FormerForUniversalSegmentation.forward, []

    def forward(self, pixel_values, *args, **kwargs):
        if self.training:
            calls.append(len(calls) + 1)
            if calls[-1] in bad_calls:
                pixel_values = torch.full_like(pixel_values, float("nan"))
        return original(self, pixel_values, *args, **kwargs)

    monkeypatch.setattr(EcoMask2FormerForUniversalSegmentation, "forward", forward)
    return calls


@pytest.mark.parametrize("max_grad_norm", ["1.0", "0"])
def test_nan_batch_is_skipped_and_the_run_finishes(tmp_path, monkeypatch, caplog, max_grad_norm):
    calls = _nan_on_call(monkeypatch, {2})
    with caplog.at_level("WARNING", logger="modeling_ecom2f.recipe"):
        summary = load_example("train_early_exit").main(
            RUN + ["--output_dir", str(tmp_path / "run"), "--max_grad_norm", max_grad_norm])
    assert calls == [1, 2, 3]
    assert summary["finished"] and summary["completed_steps"] == 3
    assert summary["skipped_steps"] == 1
    assert "step 2: non-finite loss or gradients, optimizer step skipped" in caplog.text
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    assert summary["last_logs"]["loss"] == summary["last_logs"]["loss"]  # not NaN: the mean left the bad batch out


def test_skipped_step_leaves_the_weights_unchanged(tmp_path, monkeypatch):
    """Only bad batches: every step is skipped, so the saved weights are the initial ones (same seed, no training)."""
    _nan_on_call(monkeypatch, {1, 2, 3})
    summary = load_example("train_early_exit").main(RUN + ["--output_dir", str(tmp_path / "bad")])
    assert summary["skipped_steps"] == 3
    monkeypatch.undo()
    load_example("train_early_exit").main(RUN + ["--output_dir", str(tmp_path / "none"), "--max_train_steps", "1",
                                                 "--learning_rate", "0"])
    bad, untouched = load_file(str(tmp_path / "bad" / "model.safetensors")), load_file(
        str(tmp_path / "none" / "model.safetensors"))
    assert all(torch.equal(bad[k], untouched[k]) for k in untouched)
