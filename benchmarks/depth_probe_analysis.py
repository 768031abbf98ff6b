"""Analysis of per-image, per-exit quality: does each image need its own encoder depth?

Everything here is NumPy on a `(num_images, num_exits)` quality matrix (fractions in [0, 1]) and the cost of each
exit (its depth); nothing runs a model. A routing is one column index per image; its quality is the mean of the
chosen entries and its cost the mean chosen cost. Controls:

- the fixed-exit frontier: the upper concave envelope of the fixed exits' (cost, mean quality) points
  (`modeling_ecom2f.recipe.routing.frontier_quality`): what mixing fixed exits at random reaches at any mean cost;
- random routing with the same depth histogram: its expected quality over all permutations of the routing's
  choices is `sum_k p_k * mean_i q[i, k]` (`p_k` the share of images routed to exit `k`), exact, no sampling noise;
- the oracle: `argmax_k(q[i, k] - beta * cost_k)` per image, an upper bound that selects on per-image noise too.

Standard errors come from a bootstrap over images: each resample draws images with replacement and recomputes every
term (fixed-exit means, frontier, the routing's quality and cost, the random control).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from modeling_ecom2f.metrics import intersection_and_union, miou_from_counts
from modeling_ecom2f.experiments.report_statistics import spearman
from modeling_ecom2f.recipe.routing import frontier_quality


def per_image_miou(confusion: np.ndarray) -> np.ndarray:
    """`(N, K)` mIoU of each image at each exit from `(N, K, C, C)` confusion matrices: the mean IoU over the classes
    present in the image's ground truth or prediction (the metric's `miou_from_counts` on that image's counts)."""
    count, exits = confusion.shape[:2]
    out = np.empty((count, exits), dtype=np.float64)
    for i in range(count):
        for k in range(exits):
            out[i, k] = miou_from_counts(*intersection_and_union(confusion[i, k]))
    return np.nan_to_num(out, nan=1.0)  # an image with no labelled pixel has nothing to get wrong


def dataset_miou(confusion: np.ndarray) -> np.ndarray:
    """`(K,)` data-set mIoU of each exit (confusion matrices summed over the images)."""
    summed = confusion.sum(0)
    return np.asarray([miou_from_counts(*intersection_and_union(summed[k])) for k in range(summed.shape[0])])


def accuracy_by_pixel_difficulty(correct: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`(K, bins)` pixel accuracy of each exit per per-pixel difficulty value (summed over images), NaN if empty."""
    hits, counts = correct.sum(0).astype(np.float64), total.sum(0).astype(np.float64)
    return np.divide(hits, counts, out=np.full(hits.shape, np.nan), where=counts > 0)


def gain_statistics(gain: np.ndarray, difficulty: dict[str, np.ndarray], *, quantiles: int = 5,
                    by: str | None = None) -> dict:
    """Spread of a per-image gain and its Spearman correlation with each difficulty column.

    Args:
        gain: `(N,)` per-image gain (e.g. deepest minus shallowest exit).
        difficulty: per-image columns `(N,)` (analysis only).
        quantiles: groups of equal size by the column `by` (default: the first column) for the mean gain per group.
    """
    gain = np.asarray(gain, dtype=np.float64)
    stats = {"mean": float(gain.mean()), "std": float(gain.std(ddof=1)) if gain.size > 1 else 0.0,
             "share_positive": float((gain > 0).mean()), "median": float(np.median(gain)), "spearman": {}}
    for name, column in difficulty.items():
        stats["spearman"][name] = spearman(np.asarray(column, dtype=np.float64), gain)
    by = by or next(iter(difficulty), None)
    if by is not None:
        order = np.argsort(np.asarray(difficulty[by]), kind="stable")
        groups = np.array_split(order, quantiles)
        stats["by_quantile"] = {"column": by, "mean_gain": [float(gain[g].mean()) for g in groups],
                                "mean_difficulty": [float(np.asarray(difficulty[by])[g].mean()) for g in groups]}
    return stats


def routed(quality: np.ndarray, choice: np.ndarray, costs: Sequence[float]) -> tuple[float, float]:
    """`(mean quality, mean cost)` of a routing (`choice[i]` = column index of image `i`)."""
    rows = np.arange(quality.shape[0])
    return float(quality[rows, choice].mean()), float(np.asarray(costs, dtype=np.float64)[choice].mean())


def expected_random_quality(quality: np.ndarray, choice: np.ndarray) -> float:
    """Expected quality of the routing's choices shuffled across images (same histogram), over all permutations."""
    share = np.bincount(choice, minlength=quality.shape[1]) / len(choice)
    return float(share @ quality.mean(0))


def routing_gains(quality: np.ndarray, choice: np.ndarray, costs: Sequence[float]) -> dict:
    """A routing's quality and cost, the frontier at that cost and the random control, and its gains over both."""
    value, cost = routed(quality, choice, costs)
    points = list(zip(costs, quality.mean(0)))
    frontier = frontier_quality(points, cost)
    random_value = expected_random_quality(quality, choice)
    return {"quality": value, "mean_cost": cost, "frontier": frontier, "random": random_value,
            "gain_over_frontier": value - frontier, "gain_over_random": value - random_value}


def bootstrap_routing(quality: np.ndarray, choice: np.ndarray, costs: Sequence[float], *, resamples: int = 1000,
                      seed: int = 0) -> dict:
    """`routing_gains` on all images plus bootstrap standard errors (`*_se`) of both gains, resampling images."""
    result = routing_gains(quality, choice, costs)
    rng = np.random.default_rng([seed, 24])
    frontier_gains, random_gains = np.empty(resamples), np.empty(resamples)
    for r in range(resamples):
        sample = rng.integers(0, quality.shape[0], size=quality.shape[0])
        gains = routing_gains(quality[sample], choice[sample], costs)
        frontier_gains[r], random_gains[r] = gains["gain_over_frontier"], gains["gain_over_random"]
    result.update({"gain_over_frontier_se": float(frontier_gains.std(ddof=1)),
                   "gain_over_random_se": float(random_gains.std(ddof=1)), "resamples": int(resamples)})
    return result


def oracle_choice(quality: np.ndarray, costs: Sequence[float], beta: float) -> np.ndarray:
    """Per image `argmax_k(q[i, k] - beta * cost_k)` (ties: the cheapest, i.e. the first column)."""
    return np.argmax(quality - beta * np.asarray(costs, dtype=np.float64)[None, :], axis=1)


def oracle_table(quality: np.ndarray, costs: Sequence[float], betas: Sequence[float]) -> list[dict]:
    """Per beta: the oracle routing's quality, cost, the frontier and random control at its histogram."""
    return [{"beta": float(beta), **routing_gains(quality, oracle_choice(quality, costs, beta), costs)}
            for beta in betas]


def difficulty_routing(quality: np.ndarray, costs: Sequence[float], difficulty: np.ndarray, *,
                       resamples: int = 1000, seed: int = 0) -> dict:
    """What a gate that knew the difficulty could reach: images split at the median difficulty, the easier half
    routed to exit `a`, the harder to exit `b >= a`; every pair with its bootstrap gains. A diagnostic bound (the
    real gate never sees the difficulty): if even this does not beat the envelope, the gains differ in size, not in
    the shape of their curves over depth."""
    hard = np.asarray(difficulty) > np.median(difficulty)
    rows = []
    for a, b in itertools.combinations_with_replacement(range(quality.shape[1]), 2):
        result = bootstrap_routing(quality, np.where(hard, b, a), costs, resamples=resamples, seed=seed)
        rows.append({"easy_exit": float(costs[a]), "hard_exit": float(costs[b]), **result, "passes": passes(result)})
    best = max(rows, key=lambda r: r["gain_over_frontier"] - 2 * r["gain_over_frontier_se"])
    return {"pairs": rows, "best": best, "hard_images": int(hard.sum())}


def passes(result: dict) -> bool:
    """Whether a routing beats both the frontier and its random control by more than two standard errors."""
    return (result["gain_over_frontier"] > 2 * result["gain_over_frontier_se"]
            and result["gain_over_random"] > 2 * result["gain_over_random_se"])


__all__ = ["accuracy_by_pixel_difficulty", "bootstrap_routing", "dataset_miou", "difficulty_routing", "expected_random_quality",
           "gain_statistics", "oracle_choice", "oracle_table", "passes", "per_image_miou", "routed", "routing_gains"]
