"""The demo's engine (`demo/demo_engine.py`): uploads, budgets -> depths, GFLOPs against full depth, overlays, and
clear errors; on the shipped model (`demo/model`) and on tiny models with other gates."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from helpers.demo import DEMO, demo_engine
from helpers.hub_fixtures import tiny_processor, trained_gate_model
from modeling_ecom2f.ecom2f_flops import count_gflops
from modeling_ecom2f.recipe.routing import calibrate_beta, utility_depths

engine = demo_engine()


@pytest.fixture(scope="module")
def examples():
    paths = engine.example_images(DEMO / "examples")
    return [engine.load_image(p, max_side=1024)[0] for p in paths]


@pytest.fixture(scope="module")
def shipped(examples):
    return engine.DemoSegmenter.from_pretrained(str(DEMO / "model"), calibration_images=examples)


@pytest.mark.parametrize("folder", ["model", "examples"])
def test_shipped_files_match_their_checksums(folder):
    lines = (DEMO / folder / "SHA256SUMS").read_text().split("\n")
    listed = dict(reversed(line.split("  ")) for line in lines if line)
    assert listed, "empty SHA256SUMS"
    for name, digest in listed.items():
        assert hashlib.sha256((DEMO / folder / name).read_bytes()).hexdigest() == digest, name


def test_non_image_upload_is_a_message(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"%PDF-1.4 not a picture")
    with pytest.raises(engine.DemoError, match="'photo.jpg' is not an image"):
        engine.load_image(path, max_side=1024)


def test_huge_image_is_resized_and_said_so(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((2000, 3000, 3), np.uint8)).save(path)
    image, notes = engine.load_image(path, max_side=1024)
    assert image.shape == (683, 1024, 3)
    assert len(notes) == 1 and "3000x2000" in notes[0] and "1024x683" in notes[0]
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(small)  # grayscale: converted to RGB, not resized
    image, notes = engine.load_image(small, max_side=1024)
    assert image.shape == (40, 50, 3) and notes == []


def test_missing_or_empty_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(engine.DemoError, match="does not exist"):
        engine.DemoSegmenter.from_pretrained(str(tmp_path / "no_model"))
    with pytest.raises(engine.DemoError, match="cannot load a segmentation model"):
        engine.DemoSegmenter.from_pretrained(str(tmp_path))


def test_gate_beta_and_budget_choose_the_depths_the_gate_predicts(shipped, examples):
    exits = shipped.exits
    depths = {}
    for index, picture in enumerate(examples):
        at_zero = shipped.segment(picture, budget=engine.Budget("gate", beta=0.0))
        gains = np.array([[at_zero.predicted_gains[k] for k in exits]])
        for beta in (0.0, 0.0002, 0.005, 0.01, 0.02, 0.05):
            depths[index, beta] = shipped.segment(picture, budget=engine.Budget("gate", beta=beta)).depth
            assert depths[index, beta] == utility_depths(gains, exits, beta)[0]
        row = [depths[index, beta] for beta in (0.0, 0.0002, 0.005, 0.01, 0.02, 0.05)]
        assert row == sorted(row, reverse=True)  # a larger beta never buys depth
    # the shipped gate (maze rooms) decides per image: at one beta, the examples do not all get the same depth
    assert len({depths[index, 0.01] for index in range(len(examples))}) > 1
    image = examples[-1]

    for share in (shipped.shallowest_share + 1e-3, 0.5, 1.0):
        beta, achieved = shipped.beta_for_share(share)
        calibration = shipped._calibration
        assert (beta, achieved) == calibrate_beta(calibration.predictions, exits, target_fraction=round(share, 4),
                                                  exit_costs=calibration.exit_costs)
        result = shipped.segment(image, budget=engine.Budget("budget", share=share))
        assert result.depth == shipped.segment(image, budget=engine.Budget("gate", beta=beta)).depth
        assert result.notes and f"{achieved:.0%}" in result.notes[0]
    with pytest.raises(engine.DemoError, match="not an exit"):
        shipped.segment(image, budget=engine.Budget("fixed", depth=1))


def test_gflops_are_the_counter_s_at_the_chosen_and_full_depth(shipped, examples):
    image = examples[0]
    inputs = shipped.processor(images=[image], return_tensors="pt")
    full = count_gflops(shipped.model, inputs["pixel_values"], pixel_mask=inputs["pixel_mask"],
                        num_encoder_layers=shipped.max_depth)
    previous = None
    for depth in shipped.exits:
        result = shipped.segment(image, budget=engine.Budget("fixed", depth=depth))
        assert result.depth == depth
        assert result.encoder_gflops == pytest.approx(sum(full.encoder_layers[:depth]), rel=1e-9)
        assert (result.full_encoder_gflops, result.full_total_gflops) == (full.encoder, full.total)
        if previous is not None:
            assert result.total_gflops > previous.total_gflops and result.encoder_gflops > previous.encoder_gflops
        previous = result
    assert previous.total_gflops == pytest.approx(full.total)


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic"])
def test_every_task_draws_an_overlay_with_segments(shipped, examples, task):
    import torch

    result = shipped.segment(examples[1], task=task, budget=engine.Budget("fixed", depth=4))
    assert result.overlay.ndim == 3 and result.overlay.shape[2] == 3 and result.overlay.dtype == np.uint8
    assert result.segments >= 1
    with torch.inference_mode():
        outputs = shipped.model(**shipped._inputs([examples[1]]), num_encoder_layers=4)
    segmentation, info = shipped._post_process(outputs, task, examples[1].shape[:2])
    # 0 is void for the overlay (instance post-processing numbers segments from 0 and marks void -1)
    assert int(segmentation.min()) >= 0 and {s["id"] for s in info} <= set(segmentation.unique().tolist()) - {0}


def test_every_exit_side_by_side(shipped, examples):
    result = shipped.segment(examples[0], budget=engine.Budget("fixed", depth=3), all_exits=True)
    assert result.exits.shape[0] == result.overlay.shape[0]
    assert result.exits.shape[1] == len(shipped.exits) * result.overlay.shape[1]


def test_other_gates_say_why_the_budget_does_not_apply(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)
    classification = engine.DemoSegmenter(model=trained_gate_model(), processor=tiny_processor())
    result = classification.segment(image, budget=engine.Budget("budget", share=0.5))
    assert "classification gate" in result.decided_by and "do not change it" in result.notes[0]
    untrained = engine.DemoSegmenter(model=trained_gate_model(gate_trained=False), processor=tiny_processor())
    result = untrained.segment(image, budget=engine.Budget("gate", beta=0.01))
    assert result.depth == untrained.max_depth and "not trained" in result.notes[0]
    with pytest.raises(engine.DemoError, match="needs a trained utility gate"):
        untrained.beta_for_share(0.5)


def test_a_stock_mask2former_folder_runs_at_fixed_depths(tmp_path):
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    from helpers.models import tiny_stock_config

    Mask2FormerForUniversalSegmentation(tiny_stock_config()).save_pretrained(tmp_path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(tmp_path)
    stock = engine.DemoSegmenter.from_pretrained(str(tmp_path))
    assert stock.gate_kind is None
    image = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    shallow = stock.segment(image, task="semantic", budget=engine.Budget("fixed", depth=min(stock.exits)))
    full = stock.segment(image, task="semantic", budget=engine.Budget("gate"))
    assert (shallow.depth, full.depth) == (min(stock.exits), stock.max_depth)
    assert shallow.encoder_gflops < full.encoder_gflops == full.full_encoder_gflops
