"""The accuracy study (`benchmarks/accuracy_study.py`): its warm start, the PRO-SCALE load path it relies on, and a
tiny end-to-end smoke run that checks the published JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.models import tiny_eco_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import accuracy_study

CONTRACT = ("family", "token_scaling_layers", "token_recalibration", "light_pixel_embedding", "depth", "pq",
            "pq_things", "pq_stuff", "miou", "mask_ap", "pixel_decoder_gflops_ratio", "total_gflops_ratio",
            "latency_ratio")


def test_warm_start_copies_mapped_layers_and_slices_coarsest_levels():
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    parent = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=3))
    child = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=6, token_scaling_layers=[2, 2, 2]))
    copied = accuracy_study.warm_start(child, parent.state_dict(), 3)
    assert copied > 0
    prefix = "model.pixel_level_module.decoder.encoder.layers."
    heads, points = child.config.num_attention_heads, child.config.encoder_n_points
    parent_state, child_state = parent.state_dict(), child.state_dict()
    for layer in range(6):
        source = layer * 3 // 6
        torch.testing.assert_close(child_state[f"{prefix}{layer}.fc1.weight"], parent_state[f"{prefix}{source}.fc1.weight"])
        offsets = child_state[f"{prefix}{layer}.self_attn.sampling_offsets.weight"]
        levels = offsets.shape[0] // (heads * points * 2)
        assert levels == layer // 2 + 1  # stages (2, 2, 2): 1, 1, 2, 2, 3, 3 levels
        expected = parent_state[f"{prefix}{source}.self_attn.sampling_offsets.weight"].reshape(heads, 3, points * 2, -1)
        torch.testing.assert_close(offsets, expected[:, :levels].reshape(offsets.shape))
        weights = child_state[f"{prefix}{layer}.self_attn.attention_weights.bias"]
        expected = parent_state[f"{prefix}{source}.self_attn.attention_weights.bias"].reshape(heads, 3, points)
        torch.testing.assert_close(weights, expected[:, :levels].reshape(weights.shape))


def test_loading_a_parent_with_more_stage_layers_sets_encoder_layers(tmp_path):
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
    from modeling_ecom2f.recipe.modeling import load_model

    EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=3)).save_pretrained(tmp_path)
    model = load_model(tmp_path, overrides={"token_scaling_layers": [2, 2, 2]})
    assert model.config.encoder_layers == 6
    assert model.config.exit_layers == [2, 3, 4, 5, 6]
    model = load_model(tmp_path, overrides={"token_scaling_layers": [1, 1, 2], "exit_layers": [4]})
    assert (model.config.encoder_layers, model.config.exit_layers) == (4, [4])
    stock_depth = load_model(tmp_path, overrides={"exit_layers": [3]})  # the gate's size changes with the exits
    assert stock_depth.config.num_exits == 1


def test_workers_take_the_variant_of_their_own_preset():
    assert accuracy_study.variant_named("eco", preset="default").exits == (2, 3, 4, 5, 6)
    assert accuracy_study.variant_named("eco", preset="tiny").exits == (2, 3)
    with pytest.raises(SystemExit, match="unknown variant"):
        accuracy_study.variant_named("proscale_114_trc_lpe", preset="tiny")


def test_unknown_variant_is_refused():
    args = accuracy_study.build_parser().parse_args(["--variants", "nope"])
    with pytest.raises(SystemExit, match="unknown"):
        accuracy_study.variants_of(args)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, str(REPO / "benchmarks" / "accuracy_study.py"), "--preset", "tiny", "--output_dir",
               str(out), "--docs_dir", str(tmp_path / "docs"), "--jobs", "2"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "docs" / "accuracy_study.json").read_text())
    assert {"command", "wall_seconds", "validation_images", "variants"} <= set(result)
    assert result["validation_images"] == accuracy_study.PRESETS["tiny"].validation_images
    families = {row["family"] for row in result["variants"]}
    assert families == {"stock", "eco", "proscale", "combined"}
    for row in result["variants"]:
        assert set(CONTRACT) <= set(row)
        assert row["pixel_decoder_gflops_ratio"] > 0 and row["total_gflops_ratio"] > 0 and row["latency_ratio"] > 0
        assert (row["token_scaling_layers"] is None) == (row["family"] in ("stock", "eco"))
    stock = next(r for r in result["variants"] if r["family"] == "stock")
    assert stock["total_gflops_ratio"] == pytest.approx(0.5, abs=0.5)  # a 3-layer tiny model vs Swin-T's 6 layers
    gates = [r for r in result["variants"] if r["depth"] is None]
    assert {r["family"] for r in gates} == {"eco", "combined"}
    assert all("gain_over_frontier" in r and "gain_over_random_routing" in r for r in gates)
    proscale = next(r for r in result["variants"] if r["family"] == "proscale")
    assert proscale["pixel_decoder_gflops_ratio"] < stock["pixel_decoder_gflops_ratio"]
    for name in ("accuracy_study.md", "accuracy_study.png"):
        assert (tmp_path / "docs" / name).stat().st_size > 0
    # a rerun finds every stage done and only re-measures
    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0
    assert (out / "stock.log").read_text().count("stock: train done") == 1
