"""Statistics of the main job's report that need every image: bootstrap standard errors of each mode's gains and
the per-image link between depth and the generator's recorded difficulty.

- Bootstrap (`bootstrap_gains`): each resample draws the validation images with replacement and recomputes every
  term from the per-image PQ counts of every exit (`mode_evaluation.per_exit_counts`): each fixed depth's data-set PQ
  and mean encoder cost, the fixed-depth frontier (`routing.frontier_quality`), each mode's PQ and cost, and the PQ
  of its random-routing control (the same shuffled decisions, resampled with their images). The standard error of
  a gain is the standard deviation of the gain over the resamples.
- Difficulty (`difficulty_statistics`): the Spearman rank correlation of the per-image PQ gain of full depth over the
  shallowest exit with the difficulty, and of each gate's chosen depth with it. Difficulty is a column the
  generator records for analysis; no model or gate input reads it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..metrics import panoptic_from_counts
from ..recipe.routing import frontier_quality
from ..recipe.runtime import RecipeError

#: Bootstrap resamples of the main job's report.
DEFAULT_RESAMPLES = 1000


def mode_counts(per_exit: dict, rows: Sequence[dict]) -> np.ndarray:
    """`(N, 4 * C)` per-image PQ counts of a mode from its per-image rows (`depth` per image, in `indices` order)."""
    position = {int(k): p for p, k in enumerate(per_exit["exits"])}
    index_of = {int(i): n for n, i in enumerate(per_exit["indices"])}
    if sorted(int(r["index"]) for r in rows) != sorted(index_of):
        raise RecipeError("the per-image rows and the per-exit counts cover different images")
    counts = per_exit["counts"]
    out = np.empty((len(index_of), counts.shape[2] * counts.shape[3]), dtype=np.float64)
    for row in rows:
        out[index_of[int(row["index"])]] = counts[position[int(row["depth"])], index_of[int(row["index"])]].ravel()
    return out


def _aligned(per_exit: dict, rows: Sequence[dict], key: str) -> np.ndarray:
    index_of = {int(i): n for n, i in enumerate(per_exit["indices"])}
    out = np.empty(len(index_of), dtype=np.float64)
    for row in rows:
        out[index_of[int(row["index"])]] = row[key]
    return out


def bootstrap_gains(per_exit: dict, per_image: dict, modes: Sequence[dict], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> dict[str, dict]:
    """Bootstrap standard errors (in PQ points) of each routed mode's gains.

    Args:
        per_exit: `per_exit_counts` of the evaluation.
        per_image: mode name -> per-image rows (`index`, `depth`, `encoder_gflops`), as in `per_image.json`.
        modes: the report's mode rows (`name`, `kind`, `controls`, `mean_depth`; see `recipe.reporting.mode_rows`).
        resamples: bootstrap resamples (images drawn with replacement).

    Returns mode name -> `{"gain_over_frontier_se", "gain_over_random_se" (gates with a control), "resamples"}` for
    every gate, random-routing and oracle mode.
    """
    if resamples < 2:
        raise ValueError(f"resamples: need at least 2, got {resamples}")
    fixed = sorted((m for m in modes if m["kind"] == "fixed"), key=lambda m: m["mean_depth"])
    if not fixed:
        raise RecipeError("the bootstrap needs the fixed depths in the report")
    category_ids, thing_ids = per_exit["category_ids"], per_exit["thing_ids"]
    count = len(per_exit["indices"])
    rng = np.random.default_rng([seed, 24])
    weights = np.stack([np.bincount(rng.integers(0, count, size=count), minlength=count)
                        for _ in range(resamples)]).astype(np.float64)  # (R, N): how often each image is drawn
    full_cost = weights @ _aligned(per_exit, per_image[fixed[-1]["name"]], "encoder_gflops")

    def resampled(name: str) -> tuple[np.ndarray, np.ndarray]:
        """(R,) PQ in points and (R,) encoder cost as a fraction of full depth's, of mode `name` per resample."""
        sums = weights @ mode_counts(per_exit, per_image[name])  # (R, 4 * C)
        shape = per_exit["counts"].shape[2:]
        pq = np.array([100 * panoptic_from_counts(s.reshape(shape), category_ids, thing_ids)["pq"] for s in sums])
        return pq, (weights @ _aligned(per_exit, per_image[name], "encoder_gflops")) / full_cost

    fixed_values = [resampled(m["name"]) for m in fixed]
    routed = {m["name"]: resampled(m["name"]) for m in modes if m["kind"] in ("gate", "random_routing", "oracle")}
    out: dict[str, dict] = {}
    for mode in modes:
        if mode["name"] not in routed:
            continue
        pq, cost = routed[mode["name"]]
        frontier = np.array([frontier_quality([(c[r], q[r]) for q, c in fixed_values], cost[r])
                             for r in range(resamples)])
        result = {"gain_over_frontier_se": float(np.std(pq - frontier, ddof=1)), "resamples": int(resamples)}
        control = next((m["name"] for m in modes if m.get("controls") == mode["name"]), None)
        if mode["kind"] == "gate" and control in routed:
            result["gain_over_random_se"] = float(np.std(pq - routed[control][0], ddof=1))
        out[mode["name"]] = result
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two per-image series; None where either is constant (no ranks to correlate)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # no rank correlation is defined for a constant
    return float(spearmanr(a, b).statistic)


def per_image_series(per_image: dict, modes: Sequence[dict], difficulty: np.ndarray) -> dict:
    """Per validation image, in index order: `difficulty`, `gain` (per-image PQ of full depth minus the shallowest
    fixed depth, points) and each gate mode's chosen depth (`gate_depths`); `full` / `shallow` name the two modes."""
    fixed = sorted((m for m in modes if m["kind"] == "fixed"), key=lambda m: m["mean_depth"])
    if len(fixed) < 2:
        raise RecipeError("the per-image gain needs at least two fixed depths in the report")

    def by_index(name: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in sorted(per_image[name], key=lambda r: r["index"])], dtype=np.float64)

    indices = by_index(fixed[-1]["name"], "index").astype(np.int64)
    return {"difficulty": np.asarray(difficulty, dtype=np.float64)[indices],
            "gain": 100 * (by_index(fixed[-1]["name"], "pq") - by_index(fixed[0]["name"], "pq")),
            "gate_depths": {m["name"]: by_index(m["name"], "depth") for m in modes if m["kind"] == "gate"},
            "full": fixed[-1]["name"], "shallow": fixed[0]["name"]}


def difficulty_statistics(per_image: dict, modes: Sequence[dict], difficulty: np.ndarray, *,
                          difficulty_name: str) -> dict:
    """The report's `per_image` diagnostics.

    Args:
        per_image: mode name -> per-image rows (`index`, `depth`, `pq` per image as a fraction).
        modes: the report's mode rows.
        difficulty: `(num_images,)` the generator's difficulty of each validation image, by row index.
        difficulty_name: what the difficulty is (e.g. `hops: ...`).

    Returns `{"difficulty", "gain_definition", "spearman_gain_vs_difficulty", "spearman_gate_depth_vs_difficulty":
    {gate mode: rho}, "gain": {"mean", "std", "share_positive"}}`. A rank correlation with a constant is None.
    """
    series = per_image_series(per_image, modes, difficulty)
    gain, level = series["gain"], series["difficulty"]
    return {"difficulty": difficulty_name,
            "gain_definition": f"per-image PQ of {series['full']} minus {series['shallow']} (points)",
            "spearman_gain_vs_difficulty": spearman(gain, level),
            "spearman_gate_depth_vs_difficulty": {name: spearman(depths, level)
                                                  for name, depths in series["gate_depths"].items()},
            "gain": {"mean": float(gain.mean()), "std": float(gain.std(ddof=1)) if gain.size > 1 else 0.0,
                     "share_positive": float((gain > 0).mean())}}


__all__ = ["DEFAULT_RESAMPLES", "bootstrap_gains", "difficulty_statistics", "mode_counts", "per_image_series",
           "spearman"]
