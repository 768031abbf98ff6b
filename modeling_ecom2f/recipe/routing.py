"""Routing arithmetic of the ECO-M2F evaluation: per-image depths from gate outputs, the random-routing control, the
fixed-depth frontier, and the budget calibration of a utility gate's beta.

Everything here is NumPy on small per-image arrays; the model never runs. Conventions: `exit_layers` are the
depths of the gate's columns; beta is in quality-fraction units per encoder layer (see `depth_labels`).

- A *classification* gate (ECO-M2F, arXiv 2404.15244 Sec. 3.3) scores the exits for the one beta it was trained
  for: depth `exit_layers[argmax]`.
- A *utility* gate predicts each exit's per-image quality gain; the depth is `argmax_k(pred_k - beta * k)` for any
  beta (`modeling_ecom2f.ecom2f_depth.utility_gate_depths`, the rule the model's gated forward applies).
- The *random-routing control* of a gate gives each image the depth the gate gave another image (a seeded
  permutation of the gate's decisions): the same depth histogram, hence the same mean cost, without the per-image
  choice. A gate only shows input adaptivity if it beats this control.
- The *fixed-depth frontier* is the upper concave envelope of the fixed-depth (cost, quality) points: what mixing
  fixed depths at random reaches at any mean cost between them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..ecom2f_depth import depths_from_gate_logits, utility_gate_depths
from .depth_labels import check_beta
from .runtime import RecipeError


def utility_depths(predicted: np.ndarray, exit_layers: Sequence[int], beta: float) -> np.ndarray:
    """`(num_images,)` depths `exit_layers[argmax_k(predicted[:, k] - beta * exit_layers[k])]` (ties: shallowest), by
    the model's own rule (`ecom2f_depth.utility_gate_depths`, float32), so a selection equals the gated forward."""
    beta = check_beta(beta)
    return utility_gate_depths(_gate_outputs(predicted, exit_layers), exit_layers=list(exit_layers), beta=beta).numpy()


def classification_depths(logits: np.ndarray, exit_layers: Sequence[int]) -> np.ndarray:
    """`(num_images,)` depths `exit_layers[argmax_k logits[:, k]]`, by the model's rule (`depths_from_gate_logits`)."""
    return depths_from_gate_logits(_gate_outputs(logits, exit_layers), exit_layers=list(exit_layers)).numpy()


def _gate_outputs(outputs: np.ndarray, exit_layers: Sequence[int]) -> torch.Tensor:
    outputs = np.asarray(outputs)
    if outputs.ndim != 2 or outputs.shape[1] != len(exit_layers):
        raise RecipeError(f"gate outputs must have shape (num_images, {len(exit_layers)}), got {outputs.shape}")
    return torch.from_numpy(np.ascontiguousarray(outputs, dtype=np.float32))


def random_routing(depths: np.ndarray, *, seed: int) -> np.ndarray:
    """The gate's per-image depths shuffled across images (a seeded permutation): the same histogram, random order."""
    depths = np.asarray(depths)
    return depths[np.random.default_rng([seed, 20260]).permutation(depths.size)]


def upper_concave_envelope(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The vertices, by increasing cost, of the upper concave envelope of `(cost, quality)` points."""
    hull: list[tuple[float, float]] = []
    for x, y in sorted(set((float(x), float(y)) for x, y in points)):
        if hull and x == hull[-1][0]:  # same cost: keep the better quality
            if y <= hull[-1][1]:
                continue
            hull.pop()
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):  # the middle point is under the chord: drop it
                hull.pop()
            else:
                break
        hull.append((x, y))
    return hull


def frontier_quality(points: Sequence[tuple[float, float]], cost: float) -> float:
    """Quality of the fixed-depth frontier at `cost`, interpolated on the upper concave envelope of `points`.

    Below the cheapest point the frontier is that point's quality (no mix of fixed depths is cheaper); past the best
    point it stays at the best quality (a budget need not be spent in full), so the frontier never decreases.
    """
    hull = upper_concave_envelope(points)
    if not hull:
        raise RecipeError("the fixed-depth frontier needs at least one fixed-depth point")
    best = int(np.argmax([y for _, y in hull]))
    hull = hull[: best + 1]  # past the best point, a dearer fixed depth is worse: spend less instead
    xs = np.array([x for x, _ in hull])
    ys = np.array([y for _, y in hull])
    return float(np.interp(cost, xs, ys, left=ys[0], right=ys[-1]))


def calibrate_beta(
    predicted: np.ndarray,
    exit_layers: Sequence[int],
    *,
    target_fraction: float,
    exit_costs: Sequence[float] | None = None,
    max_iterations: int = 80,
) -> tuple[float, float]:
    """The smallest beta at which a utility gate's mean encoder cost is at most `target_fraction` of full depth.

    Args:
        predicted: `(num_images, num_exits)` utility-gate outputs on a calibration split (not the evaluation split).
        exit_layers: the exits of the columns.
        target_fraction: wanted mean encoder cost as a fraction of the deepest exit's, in `(0, 1]`.
        exit_costs: encoder cost of each exit (e.g. GFLOPs; PRO-SCALE layers differ in cost); default: the depth.

    Returns:
        `(beta, achieved_fraction)`. The mean cost does not increase with beta, so the smallest beta meeting the
        budget buys the most quality the gate can see within it. If even the shallowest exit for every image
        exceeds the target, that routing is returned with its fraction.
    """
    if not 0.0 < float(target_fraction) <= 1.0:
        raise RecipeError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    exits = np.asarray(list(exit_layers), dtype=np.int64)
    costs = np.asarray(exits if exit_costs is None else list(exit_costs), dtype=np.float64)
    if costs.shape != exits.shape or (costs <= 0).any():
        raise RecipeError(f"exit_costs must be one positive cost per exit {exits.tolist()}, got {exit_costs!r}")
    lookup = dict(zip(exits.tolist(), costs / costs.max()))

    def fraction(beta: float) -> float:
        return float(np.mean([lookup[int(d)] for d in utility_depths(predicted, exits, beta)]))

    if fraction(0.0) <= target_fraction:
        return 0.0, fraction(0.0)
    spread = float(np.ptp(np.asarray(predicted, dtype=np.float64))) if np.size(predicted) else 0.0
    high = spread / max(1, int(np.diff(exits).min(initial=1))) + 1.0  # past it, every image takes the shallowest
    low = 0.0
    for _ in range(max_iterations):
        middle = 0.5 * (low + high)
        if fraction(middle) <= target_fraction:
            high = middle
        else:
            low = middle
    return high, fraction(high)


__all__ = [
    "calibrate_beta",
    "classification_depths",
    "frontier_quality",
    "random_routing",
    "upper_concave_envelope",
    "utility_depths",
]
