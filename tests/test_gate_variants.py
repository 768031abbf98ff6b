"""benchmarks/gate_variants.py: its gate training learns what the input can tell, and its report marks the selection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from gate_variants import markdown, train_variant  # noqa: E402

from modeling_ecom2f.recipe.arguments import build_train_gate_parser  # noqa: E402


def _settings(epochs: int) -> argparse.Namespace:
    settings = build_train_gate_parser().parse_args(["--derived_dataset", "-"])
    settings.num_train_epochs = epochs
    return settings


def test_mean_std_gate_reads_what_the_mean_cannot():
    # maps whose spatial mean is the same for every image; the gain of the deeper exit is the map's spread
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.1, 2.0, size=(256, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal((256, 4, 4, 4)).astype(np.float32)
    maps = noise - noise.mean(axis=(2, 3), keepdims=True)
    maps = maps / maps.std(axis=(2, 3), keepdims=True) * spread  # (N, C, h, w), per-image std = spread
    targets = np.concatenate([np.zeros_like(spread[:, :, 0, 0]), 0.1 * spread[:, :, 0, 0]], axis=1)  # (N, 2)
    errors = {}
    for pooling in ("mean", "mean_std"):
        gate = train_variant(maps, targets, pooling=pooling, hidden_size=None, seed=0, settings=_settings(30),
                             init_std=0.02)
        with torch.no_grad():
            predicted = gate(torch.from_numpy(maps)).numpy()
        errors[pooling] = float(((predicted - targets) ** 2).mean())
    assert errors["mean_std"] < 0.1 * errors["mean"], errors


def test_training_is_seeded():
    maps = np.random.default_rng(1).standard_normal((64, 3, 2, 2)).astype(np.float32)
    targets = np.random.default_rng(2).standard_normal((64, 3)).astype(np.float32)
    first, second = (train_variant(maps, targets, pooling="mean", hidden_size=8, seed=3, settings=_settings(2),
                                   init_std=0.02) for _ in range(2))
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_markdown_marks_the_selected_variant_and_sorts_by_the_selection_score():
    row = {"pooling": "mean_std", "mean_validation_gap": -0.3, "std_validation_gap": 0.1,
           "mean_validation_fraction": 0.69}
    result = {"job_dir": "job", "holdout_images": 200, "target_encoder_fraction": 0.7, "seeds": 5, "train_images": 800,
              "validation_images": 600, "full_depth_validation_pq": 94.0,
              "variants": [{**row, "input_level": 0, "hidden_size": None, "mean_holdout_pq": 92.0},
                           {**row, "input_level": 1, "hidden_size": None, "mean_holdout_pq": 93.0}],
              "selected": {"input_level": 1, "pooling": "mean_std", "hidden_size": None}}
    table = [line for line in markdown(result, "cmd").splitlines() if line.startswith("| ") and "level" not in line]
    assert table[0].startswith("| 1 |") and "(selected)" in table[0] and "(selected)" not in table[1]
