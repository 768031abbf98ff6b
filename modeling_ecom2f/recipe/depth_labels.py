"""ECO-M2F ideal-depth labels: `argmax_k (PQ_k - beta * k)` per image, for any beta, from stored per-image PQ.

PQ is a fraction in [0, 1] and `k` is the encoder depth (number of layers), so beta is in PQ-fraction units per
layer: beta = 0.01 trades one PQ point for one encoder layer. Ties go to the shallowest exit (NumPy's argmax takes
the first maximum), as in the authors' `np.argmax`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .runtime import RecipeError

#: Betas whose label histograms step 2 prints by default (spanning the paper's COCO/Cityscapes values).
DEFAULT_BETA_GRID = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


def check_beta(beta: float) -> float:
    """A usable beta: a finite number >= 0, else `RecipeError`."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise RecipeError(f"beta must be a finite number >= 0 (quality-fraction units per encoder layer), got {beta!r}")
    return float(beta)


def ideal_depths(quality: np.ndarray, exit_layers: Sequence[int], beta: float) -> np.ndarray:
    """Per-image ideal depth `exit_layers[argmax_k(quality[:, k] - beta * exit_layers[k])]`.

    Args:
        quality: `(num_images, num_exits)` per-image quality fractions (PQ, or box AP for detection), columns in
            `exit_layers` order.
        exit_layers: the depths of the columns.
        beta: the trade-off (see the module docstring).

    Returns:
        `(num_images,)` int64 depths.

    Raises:
        RecipeError: a bad beta, a shape that does not fit `exit_layers`, or values outside [0, 1] / NaN.
    """
    beta = check_beta(beta)
    quality = np.asarray(quality, dtype=np.float64)
    depths = np.asarray(list(exit_layers), dtype=np.int64)
    if quality.ndim != 2 or quality.shape[1] != depths.size:
        raise RecipeError(f"per-image quality must have shape (num_images, {depths.size}) for exits "
                          f"{depths.tolist()}, got {quality.shape}")
    if quality.shape[0] == 0:
        raise RecipeError("there are no per-image quality rows to derive depth labels from")
    if not np.isfinite(quality).all() or (quality < 0).any() or (quality > 1).any():
        raise RecipeError("per-image quality must be fractions in [0, 1] without NaN (was the derived data set "
                          "written by another tool, or in percent?)")
    return depths[np.argmax(quality - beta * depths[None, :], axis=1)]


def label_histogram(labels: np.ndarray, exit_layers: Sequence[int]) -> dict[int, int]:
    """How many images have each exit as their label (every exit listed, zeros included)."""
    labels = np.asarray(labels)
    return {int(k): int((labels == k).sum()) for k in exit_layers}


def histogram_table(quality: np.ndarray, exit_layers: Sequence[int], betas: Sequence[float]) -> str:
    """A plain-text table: one row per beta with the label counts per exit and the mean ideal depth."""
    header = "beta".ljust(9) + "".join(f"k={k}".rjust(7) for k in exit_layers) + "  mean depth"
    lines = [header]
    for beta in betas:
        labels = ideal_depths(quality, exit_layers, beta)
        counts = label_histogram(labels, exit_layers)
        lines.append(f"{beta:<9g}" + "".join(str(counts[k]).rjust(7) for k in exit_layers)
                     + f"  {labels.mean():10.3f}")
    return "\n".join(lines)


__all__ = ["DEFAULT_BETA_GRID", "check_beta", "histogram_table", "ideal_depths", "label_histogram"]
