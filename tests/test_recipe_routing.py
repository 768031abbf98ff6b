"""Routing arithmetic: utility depths, random routing, the fixed-depth frontier and beta calibration."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_ecom2f.recipe.routing import (
    calibrate_beta,
    frontier_quality,
    random_routing,
    upper_concave_envelope,
    utility_depths,
)
from modeling_ecom2f.recipe.runtime import RecipeError

EXITS = [2, 3, 4, 5, 6]


def test_utility_depths_follow_the_beta_rule():
    gains = np.array([[0.0, 0.01, 0.02, 0.03, 0.04], [0.0, 0.0, 0.2, 0.2, 0.2]])
    assert utility_depths(gains, EXITS, 0.0).tolist() == [6, 4]
    assert utility_depths(gains, EXITS, 0.02).tolist() == [2, 4]  # one point per layer is not worth 2 points
    assert utility_depths(gains, EXITS, 0.2).tolist() == [2, 2]
    with pytest.raises(RecipeError):
        utility_depths(gains[:, :3], EXITS, 0.0)


def test_random_routing_keeps_the_histogram_and_is_seeded():
    depths = np.array([2] * 50 + [6] * 30 + [4] * 20)
    shuffled = random_routing(depths, seed=0)
    assert sorted(shuffled.tolist()) == sorted(depths.tolist())
    assert (shuffled != depths).any()
    assert random_routing(depths, seed=0).tolist() == shuffled.tolist()
    assert random_routing(depths, seed=1).tolist() != shuffled.tolist()


def test_frontier_is_the_upper_concave_envelope():
    points = [(1 / 3, 0.50), (0.5, 0.51), (2 / 3, 0.56), (5 / 6, 0.57), (1.0, 0.58)]
    hull = upper_concave_envelope(points)
    assert (0.5, 0.51) not in hull  # under the chord from depth 2 to depth 4: random mixing beats it
    assert frontier_quality(points, 0.5) == pytest.approx(0.53)  # halfway between 0.50 and 0.56
    assert frontier_quality(points, 1.0) == pytest.approx(0.58)
    assert frontier_quality(points, 0.1) == pytest.approx(0.50)  # nothing is cheaper than the shallowest exit
    assert frontier_quality([(1.0, 0.4), (0.5, 0.6)], 1.0) == pytest.approx(0.6)  # spending more buys nothing


def test_calibrate_beta_meets_the_budget_with_the_smallest_beta():
    rng = np.random.default_rng(0)
    gains = np.cumsum(rng.uniform(0, 0.03, size=(200, 5)), axis=1)
    gains -= gains[:, :1]
    for target in (0.4, 0.6, 0.8):
        beta, achieved = calibrate_beta(gains, EXITS, target_fraction=target)
        assert achieved <= target + 1e-9
        cost = np.mean(utility_depths(gains, EXITS, beta) / 6)
        assert cost == pytest.approx(achieved)
        assert np.mean(utility_depths(gains, EXITS, beta * 0.98) / 6) > target or beta == 0.0
    assert calibrate_beta(gains, EXITS, target_fraction=1.0)[0] == 0.0
    beta, achieved = calibrate_beta(gains, EXITS, target_fraction=0.1)  # below the shallowest exit's cost
    assert achieved == pytest.approx(2 / 6)
    with pytest.raises(RecipeError, match="target_fraction"):
        calibrate_beta(gains, EXITS, target_fraction=0.0)
