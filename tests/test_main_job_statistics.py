"""The main job's report statistics: bootstrap standard errors of the gains (against a direct loop), the per-image
Spearman diagnostics, the pass rule in standard errors, and the maze benchmark's wiring in the pipeline."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from modeling_ecom2f.metrics import panoptic_from_counts
from modeling_ecom2f.experiments.report import checks, passes
from modeling_ecom2f.experiments.report_statistics import bootstrap_gains, difficulty_statistics, mode_counts
from modeling_ecom2f.recipe.mode_evaluation import load_per_exit_counts, save_per_exit_counts
from modeling_ecom2f.recipe.reporting import mode_rows
from modeling_ecom2f.recipe.routing import frontier_quality

CATEGORIES, THINGS = [0, 1], [0]


def _image_counts(rng, quality: float) -> np.ndarray:
    """(4, 2) counts of one image: one matched thing (IoU `quality`) and one matched stuff segment, plus a random
    false positive now and then."""
    fp = float(rng.random() < 0.3)
    return np.array([[1.0, 1.0], [fp, 0.0], [0.0, 0.0], [quality, 0.9]])


def _evaluation(num_images=40, seed=0):
    """A two-exit evaluation (depths 2, 3): the 'hard' half of the images gains from depth 3, the others do not;
    a gate that sends exactly the hard half deeper, and its random control."""
    rng = np.random.default_rng(seed)
    hard = np.arange(num_images) % 2 == 1
    counts = np.stack([np.stack([_image_counts(rng, 0.6 if h else 0.8) for h in hard]),
                       np.stack([_image_counts(rng, 0.9 if h else 0.8) for h in hard])])  # (2, N, 4, 2)
    per_exit = {"exits": [2, 3], "indices": list(range(num_images)), "category_ids": CATEGORIES, "thing_ids": THINGS,
                "counts": counts}
    cost = {2: 1.0, 3: 1.5}

    def rows(depths):
        out = []
        for i, d in enumerate(depths):
            c = counts[int(d) - 2, i]
            out.append({"index": i, "depth": int(d), "pq": panoptic_from_counts(c, CATEGORIES, THINGS)["pq"],
                        "encoder_gflops": cost[int(d)], "gflops": cost[int(d)] + 1})
        return out

    gate_depths = np.where(hard, 3, 2)
    random_depths = np.random.default_rng(1).permutation(gate_depths)
    per_image = {"depth_2": rows(np.full(num_images, 2)), "depth_3": rows(np.full(num_images, 3)),
                 "gate_utility_beta0.01": rows(gate_depths), "random_gate_utility_beta0.01": rows(random_depths)}
    meta = {"depth_2": ("fixed", None), "depth_3": ("fixed", None), "gate_utility_beta0.01": ("gate", None),
            "random_gate_utility_beta0.01": ("random_routing", "gate_utility_beta0.01")}
    report = {"num_images": num_images, "modes": {}}
    for name, (kind, controls) in meta.items():
        summed = mode_counts(per_exit, per_image[name]).sum(0).reshape(4, 2)
        depths = np.array([r["depth"] for r in per_image[name]])
        report["modes"][name] = {
            **panoptic_from_counts(summed, CATEGORIES, THINGS), "kind": kind, "controls": controls,
            "beta": 0.01 if kind != "fixed" else None, "gate_objective": "utility" if kind != "fixed" else None,
            "gflops": {"encoder_mean": float(np.mean([r["encoder_gflops"] for r in per_image[name]])),
                       "total_mean": float(np.mean([r["gflops"] for r in per_image[name]]))},
            "mean_depth": float(depths.mean()), "depth_histogram": {"2": int((depths == 2).sum()),
                                                                    "3": int((depths == 3).sum())}}
    return per_exit, per_image, mode_rows(report)


def _direct_bootstrap(per_exit, per_image, name, control, resamples, seed=0):
    """The same resamples drawn image by image, every term recomputed from summed counts (no matrix algebra)."""
    rng = np.random.default_rng([seed, 24])
    count = len(per_exit["indices"])

    def pq_and_cost(mode, sample):
        rows = {r["index"]: r for r in per_image[mode]}
        summed = sum(per_exit["counts"][rows[i]["depth"] - 2, i] for i in sample)
        full = sum(r["encoder_gflops"] for r in (next(x for x in per_image["depth_3"] if x["index"] == i)
                                                 for i in sample))
        return (100 * panoptic_from_counts(summed, CATEGORIES, THINGS)["pq"],
                sum(rows[i]["encoder_gflops"] for i in sample) / full)

    frontier_gains, random_gains = [], []
    for _ in range(resamples):
        sample = rng.integers(0, count, size=count)
        pq, cost = pq_and_cost(name, sample)
        points = [pq_and_cost(m, sample)[::-1] for m in ("depth_2", "depth_3")]
        frontier_gains.append(pq - frontier_quality(points, cost))
        random_gains.append(pq - pq_and_cost(control, sample)[0])
    return np.std(frontier_gains, ddof=1), np.std(random_gains, ddof=1)


def test_bootstrap_matches_a_direct_resampling_loop():
    per_exit, per_image, rows = _evaluation()
    errors = bootstrap_gains(per_exit, per_image, rows, resamples=60)
    frontier_se, random_se = _direct_bootstrap(per_exit, per_image, "gate_utility_beta0.01",
                                               "random_gate_utility_beta0.01", resamples=60)
    gate = errors["gate_utility_beta0.01"]
    assert gate["gain_over_frontier_se"] == pytest.approx(frontier_se, rel=1e-9)
    assert gate["gain_over_random_se"] == pytest.approx(random_se, rel=1e-9)
    assert frontier_se > 0 and random_se > 0
    assert "gain_over_random_se" not in errors["random_gate_utility_beta0.01"]  # a control has no control
    assert "depth_2" not in errors  # fixed depths are the frontier itself


def test_bootstrap_error_is_zero_when_every_image_is_alike():
    per_exit, per_image, rows = _evaluation()
    per_exit = dict(per_exit, counts=np.repeat(per_exit["counts"][:, :1], len(per_exit["indices"]), axis=1))
    for mode in per_image.values():
        for row in mode:  # a gate sending everything to the shallowest exit is the frontier's first point
            row["depth"], row["encoder_gflops"] = 2, 1.0
    errors = bootstrap_gains(per_exit, per_image, rows, resamples=20)
    assert errors["gate_utility_beta0.01"]["gain_over_frontier_se"] == pytest.approx(0.0, abs=1e-9)
    assert errors["gate_utility_beta0.01"]["gain_over_random_se"] == pytest.approx(0.0, abs=1e-9)


def test_a_gate_that_routes_the_hard_images_deeper_passes_by_standard_errors():
    per_exit, per_image, rows = _evaluation(num_images=200)
    errors = bootstrap_gains(per_exit, per_image, rows, resamples=200)
    for row in rows:
        row.update({k: v for k, v in errors.get(row["name"], {}).items() if k.endswith("_se")})
    gate = next(row for row in rows if row["name"] == "gate_utility_beta0.01")
    assert gate["gain_over_frontier"] > 2 * gate["gain_over_frontier_se"] > 0
    assert passes(gate)
    assert not passes({**gate, "gain_over_frontier_se": gate["gain_over_frontier"]})  # 1 SE is not enough
    assert not passes({k: v for k, v in gate.items() if not k.endswith("_se")})  # no SE, no pass
    # the same routing at a second beta is one gate point, not two
    twin = {**gate, "name": "gate_utility_beta0.02"}
    found = checks(rows + [twin], validation_images=200)["utility_gate_beats_frontier_and_random"]
    assert found["value"] == ["gate_utility_beta0.01", "gate_utility_beta0.02"] and found["distinct_points"] == 1
    assert not found["met"]
    assert checks(rows, validation_images=200)["validation_images"]["met"] is False


def test_bootstrap_rejects_rows_of_other_images():
    per_exit, per_image, rows = _evaluation()
    with pytest.raises(Exception, match="different images"):
        mode_counts(per_exit, per_image["depth_2"][:-1])


def test_difficulty_statistics_rank_gain_and_gate_depth():
    per_exit, per_image, rows = _evaluation()
    gain = np.array([r3["pq"] - r2["pq"] for r2, r3 in zip(per_image["depth_2"], per_image["depth_3"])])
    difficulty = 10 * gain + 3  # a monotone function of the gain: the same ranks, ties included
    stats = difficulty_statistics(per_image, rows, difficulty, difficulty_name="hops")
    assert stats["difficulty"] == "hops"
    assert stats["spearman_gain_vs_difficulty"] == pytest.approx(1.0)
    depths = np.array([r["depth"] for r in per_image["gate_utility_beta0.01"]])
    rho = stats["spearman_gate_depth_vs_difficulty"]["gate_utility_beta0.01"]
    assert rho == pytest.approx(spearmanr(depths, difficulty).statistic) and rho > 0.5  # hard images routed deeper
    assert stats["gain"]["mean"] == pytest.approx(100 * gain.mean())
    constant = {**per_image, "gate_utility_beta0.01": [dict(r, depth=2) for r in per_image["gate_utility_beta0.01"]]}
    assert difficulty_statistics(constant, rows, difficulty, difficulty_name="hops")[
        "spearman_gate_depth_vs_difficulty"]["gate_utility_beta0.01"] is None


def test_per_exit_counts_round_trip(tmp_path):
    per_exit, _, _ = _evaluation(num_images=6)
    loaded = load_per_exit_counts(save_per_exit_counts(tmp_path / "counts.npz", per_exit))
    assert loaded["exits"] == [2, 3] and loaded["indices"] == list(range(6)) and loaded["thing_ids"] == THINGS
    np.testing.assert_array_equal(loaded["counts"], per_exit["counts"])


def test_maze_benchmark_wiring_of_the_main_job():
    from modeling_ecom2f.data import MazeRoomsConfig
    from modeling_ecom2f.experiments.main_job import (BENCHMARKS, DEFAULT_BENCHMARK, PRESETS, Paths, benchmark_summary,
                                                      build_run_parser, data_config, parent_folder, step1_argv)

    assert DEFAULT_BENCHMARK == "maze"
    args = build_run_parser().parse_args([])
    preset = PRESETS["default"]
    config = data_config(preset, args)
    assert isinstance(config, MazeRoomsConfig)
    assert (config.seed, config.num_train_images, config.num_validation_images) == (0, 1000, 600)
    assert parent_folder(preset, args) == str(BENCHMARKS["maze"].parent)
    assert "--no_augmentation" in step1_argv(preset, Paths("/tmp/job"), args, 10)
    assert benchmark_summary(preset, args)["suffix"] == ""
    shapes = build_run_parser().parse_args(["--benchmark", "shapes"])
    assert not isinstance(data_config(preset, shapes), MazeRoomsConfig)
    assert "--no_augmentation" not in step1_argv(preset, Paths("/tmp/job"), shapes, 10)
    assert benchmark_summary(preset, shapes)["suffix"] == "_shapes"
    assert parent_folder(preset, shapes).endswith("depth_benchmark")


def test_utility_gate_form_per_benchmark_with_command_line_overrides():
    from modeling_ecom2f.experiments.main_job import RecipeError, UtilityGateForm, build_run_parser, utility_gate_form

    def form(*argv):
        return utility_gate_form(build_run_parser().parse_args(list(argv)))

    assert form() == UtilityGateForm(pooling="mean_std", hidden_size=None, input_level=1)  # maze
    assert form("--benchmark", "shapes") == UtilityGateForm(pooling="mean_std", hidden_size=32, input_level=0)
    assert form("--preset", "tiny") == UtilityGateForm()  # the generic generator: no benchmark's form
    assert form("--utility_gate_hidden_size", "16", "--utility_gate_pooling", "mean") == UtilityGateForm(
        pooling="mean", hidden_size=16, input_level=1)
    assert form("--benchmark", "shapes", "--utility_gate_hidden_size", "0").hidden_size is None
    with pytest.raises(RecipeError, match="input_level"):
        form("--utility_gate_input_level", "-1")
    with pytest.raises(ValueError, match="pooling"):
        UtilityGateForm(pooling="max")
    # The model config's rules judge the form: the level must exist in a Mask2Former encoder (3 levels).
    with pytest.raises(ValueError, match="gate_input_level"):
        UtilityGateForm(input_level=3)
    with pytest.raises(ValueError, match="gate_hidden_size"):
        UtilityGateForm(hidden_size=0)
