"""EcoDeformableDetr: stock checkpoints load unchanged and match the stock detector at full depth; per-image depth;
token scaling; gradients; save/load; bad config values."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, DeformableDetrForObjectDetection

from helpers.detection import (
    detection_labels,
    detection_pixels,
    tiny_eco_detector,
    tiny_eco_detr_config,
    tiny_stock_detr_config,
)
from modeling_ecom2f import EcoDeformableDetrConfig, EcoDeformableDetrForObjectDetection

GATE_KEYS = {"model.gate.classifier.weight", "model.gate.classifier.bias"}
OUTPUT_NAMES = ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state", "intermediate_hidden_states")


def _stock_and_eco(tmp_path_factory, name: str, **overrides):
    torch.manual_seed(0)
    stock = DeformableDetrForObjectDetection(tiny_stock_detr_config(**overrides)).eval()
    folder = tmp_path_factory.mktemp(name)
    stock.save_pretrained(folder)
    eco, info = EcoDeformableDetrForObjectDetection.from_pretrained(folder, output_loading_info=True)
    return stock, eco.eval(), info, folder


@pytest.fixture(scope="module")
def stock_and_eco(tmp_path_factory):
    return _stock_and_eco(tmp_path_factory, "stock")


def test_stock_checkpoint_loads_with_unchanged_keys(stock_and_eco, tmp_path):
    stock, eco, info, folder = stock_and_eco
    assert set(info["missing_keys"]) == GATE_KEYS
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    stock_state, eco_state = stock.state_dict(), eco.state_dict()
    assert set(eco_state) - set(stock_state) == GATE_KEYS and not set(stock_state) - set(eco_state)
    for key, value in stock_state.items():
        torch.testing.assert_close(eco_state[key], value, rtol=0, atol=0, msg=key)
    # Our save_pretrained writes the stock file keys (plus the gate), and loading our folder gives the same state.
    eco.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) - set(load_file(folder / "model.safetensors")) == GATE_KEYS
    # A plain state-dict copy works too.
    fresh = EcoDeformableDetrForObjectDetection(tiny_eco_detr_config())
    missing, unexpected = fresh.load_state_dict(stock_state, strict=False)
    assert set(missing) == GATE_KEYS and not unexpected


@pytest.mark.parametrize("implementation", ["auto", "reference"])
def test_full_depth_outputs_equal_stock(stock_and_eco, implementation):
    stock, eco, _, _ = stock_and_eco
    eco.config.deformable_attention_implementation = implementation
    for layer in eco.model.encoder.layers:
        layer.self_attn.implementation = implementation
    pixel_values = detection_pixels(2, 64, 96, seed=3)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, :, 70:] = 0  # padding on the second image: each image must get what stock gives it alone
    with torch.no_grad():
        expected = [stock(pixel_values=pixel_values[:1]), stock(pixel_values=pixel_values[1:, :, :, :70])]
        unpadded = stock(pixel_values=pixel_values)
        got = eco(pixel_values=pixel_values, pixel_mask=pixel_mask)
        explicit = eco(pixel_values=pixel_values, pixel_mask=pixel_mask, num_encoder_layers=eco.config.encoder_layers)
        all_ones = eco(pixel_values=pixel_values, pixel_mask=torch.ones_like(pixel_mask))
    for name in OUTPUT_NAMES:
        for i, alone in enumerate(expected):
            want = getattr(alone, name)[0]  # encoder tokens: the image's own, then zeros up to the longest image's
            for output in (got, explicit):
                value = getattr(output, name)[i]
                torch.testing.assert_close(value[: len(want)], want, rtol=0, atol=1e-5, msg=name)
                assert (value[len(want) :] == 0).all(), name
        torch.testing.assert_close(getattr(all_ones, name), getattr(unpadded, name), rtol=0, atol=1e-5, msg=name)
    assert got.encoder_layers_used.tolist() == [4, 4] and got.gate_logits is None


def test_box_refinement_equals_stock(tmp_path_factory):
    stock, eco, info, _ = _stock_and_eco(tmp_path_factory, "refine", with_box_refine=True)
    assert set(info["missing_keys"]) == GATE_KEYS and not info["unexpected_keys"]
    pixel_values = detection_pixels(1, 64, 96, seed=5)
    with torch.no_grad():
        expected, got = stock(pixel_values=pixel_values), eco(pixel_values=pixel_values)
    for name in ("logits", "pred_boxes"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-5, msg=name)


def test_single_level_token_stages_equal_stock(stock_and_eco, tmp_path):
    """`token_scaling_layers=[0, 0, 0, L]` is every layer on every level: still the stock model."""
    stock, eco, _, folder = stock_and_eco
    config = EcoDeformableDetrConfig.from_pretrained(folder, token_scaling_layers=[0, 0, 0, 4])
    staged = EcoDeformableDetrForObjectDetection.from_pretrained(folder, config=config).eval()
    pixel_values = detection_pixels(1, 64, 96, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(staged(pixel_values=pixel_values).logits, stock(pixel_values=pixel_values).logits,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"token_scaling_layers": [1, 1, 1, 1], "token_recalibration": True}])
def test_per_image_depth_equals_single_image_runs(overrides):
    model = tiny_eco_detector(**overrides)
    pixel_values = detection_pixels(3, 64, 80, seed=7)
    depths = torch.tensor([2, 4, 3])
    with torch.no_grad():
        batched = model(pixel_values=pixel_values, num_encoder_layers=depths)
        for index, depth in enumerate(depths.tolist()):
            single = model(pixel_values=pixel_values[index : index + 1], num_encoder_layers=depth)
            for name in ("logits", "pred_boxes"):
                torch.testing.assert_close(getattr(batched, name)[index : index + 1], getattr(single, name),
                                           rtol=0, atol=1e-5, msg=f"{name} image {index}")
            # Encoder tokens reach |x| ~ 3; batch-size-dependent rounding of the backbone convolutions alone gives
            # ~2e-5 there (also with one depth for the whole batch), so they are compared with a looser bound.
            torch.testing.assert_close(batched.encoder_last_hidden_state[index : index + 1],
                                       single.encoder_last_hidden_state, rtol=1e-5, atol=1e-4)
    assert batched.encoder_layers_used.tolist() == [2, 4, 3]


def test_shallower_exit_changes_outputs_and_skips_layers():
    model = tiny_eco_detector()
    pixel_values = detection_pixels(1, 64, 96, seed=8)
    with torch.no_grad():
        deep, shallow = model(pixel_values=pixel_values), model(pixel_values=pixel_values, num_encoder_layers=2)
    assert not torch.allclose(deep.encoder_last_hidden_state, shallow.encoder_last_hidden_state)
    assert shallow.encoder_layers_used.tolist() == [2]


def test_token_scaling_passes_late_levels_through():
    """An exit before a level enters returns that level's input projection unchanged (stock order: fine first)."""
    model = tiny_eco_detector(token_scaling_layers=[2, 1, 0, 1])
    assert [layer.self_attn.n_levels for layer in model.model.encoder.layers] == [1, 1, 2, 4]
    pixel_values = detection_pixels(1, 64, 96, seed=9)
    with torch.no_grad():
        at_two = model(pixel_values=pixel_values, num_encoder_layers=2).encoder_last_hidden_state
        sources, _, _ = model.model._multi_scale_inputs(pixel_values, torch.ones(1, 64, 96, dtype=torch.long))
    fine_tokens = sum(s.shape[2] * s.shape[3] for s in sources[:-1])
    flat = torch.cat([s.flatten(2).transpose(1, 2) for s in sources], 1)
    torch.testing.assert_close(at_two[:, :fine_tokens], flat[:, :fine_tokens], rtol=0, atol=0)
    assert not torch.allclose(at_two[:, fine_tokens:], flat[:, fine_tokens:])


def test_trained_gate_decides_per_image():
    model = tiny_eco_detector()
    model.config.gate_trained = True
    with torch.no_grad():
        model.model.gate.classifier.weight.zero_()
        model.model.gate.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # exits [2, 3, 4]: picks 3
        out = model(pixel_values=detection_pixels(2, 64, 96))
    assert out.encoder_layers_used.tolist() == [3, 3] and out.gate_logits.shape == (2, 3)
    logits = model.model.compute_gate_logits(detection_pixels(2, 64, 96))
    torch.testing.assert_close(logits, out.gate_logits)


@pytest.mark.parametrize(
    "overrides", [{}, {"token_scaling_layers": [1, 1, 1, 1], "token_recalibration": True, "gate_hidden_size": 8}]
)
def test_gradient_reaches_every_trainable_parameter(overrides):
    model = tiny_eco_detector(**overrides).train()
    pixel_values = detection_pixels(2, 64, 96, seed=10)
    out = model(pixel_values=pixel_values, labels=detection_labels(2), num_encoder_layers=4,
                exit_labels=torch.tensor([2, 4]))
    assert out.gate_loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    no_grad = [name for name, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, no_grad
    assert any(name.startswith("model.gate") for name in trainable)


def test_depth_loss_weighting_and_gate_freezing():
    model = tiny_eco_detector().train()
    torch.manual_seed(0)
    pixel_values, labels = detection_pixels(1, 64, 96, seed=11), detection_labels(1)
    model.config.dropout = 0.0
    model.eval()  # deterministic: the weighting is the only difference
    base = model(pixel_values=pixel_values, labels=labels, num_encoder_layers=2)
    uniform = EcoDeformableDetrConfig(**{**model.config.to_dict(), "exit_loss_weighting": "uniform"})
    assert uniform.exit_loss_weight(2) == 1.0
    assert model.config.exit_loss_weight(2) == 2.0
    torch.testing.assert_close(base.loss, 2.0 * sum(
        base.loss_dict[k] * w for k, w in {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}.items()
    ))
    params = model.freeze_all_but_gate()
    assert {id(p) for p in params} == {id(p) for p in model.model.gate.parameters()}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["model.gate.classifier.weight",
                                                                         "model.gate.classifier.bias"]


def test_save_load_round_trip_and_auto_config(tmp_path):
    model = tiny_eco_detector(token_scaling_layers=[1, 1, 1, 1], token_recalibration=True, exit_layers=[1, 3, 4])
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "eco_deformable_detr"
    loaded = EcoDeformableDetrForObjectDetection.from_pretrained(tmp_path).eval()
    assert type(AutoConfig.from_pretrained(tmp_path)) is EcoDeformableDetrConfig
    assert loaded.config.token_scaling_layers == [1, 1, 1, 1] and loaded.config.exit_layers == [1, 3, 4]
    pixel_values = detection_pixels(2, 64, 96, seed=12)
    with torch.no_grad():
        for depth in (1, torch.tensor([3, 4])):
            a, b = model(pixel_values=pixel_values, num_encoder_layers=depth), loaded(
                pixel_values=pixel_values, num_encoder_layers=depth)
            torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)


def test_return_dict_false_gives_a_tuple():
    model = tiny_eco_detector()
    with torch.no_grad():
        out = model(pixel_values=detection_pixels(1, 64, 96), return_dict=False)
    assert isinstance(out, tuple)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exit_layers": [2, 5]}, "exit_layers"),
        ({"exit_layers": [3, 2]}, "exit_layers"),
        ({"exit_layers": []}, "exit_layers"),
        ({"exit_loss_weighting": "quadratic"}, "exit_loss_weighting"),
        ({"gate_hidden_size": 0}, "gate_hidden_size"),
        ({"gate_input_level": 4}, "gate_input_level"),
        ({"deformable_attention_implementation": "cuda"}, "deformable_attention_implementation"),
        ({"token_scaling_layers": [2, 2]}, "token_scaling_layers"),
        ({"token_scaling_layers": [1, 1, 1, 2]}, "token_scaling_layers"),
        ({"token_scaling_layers": [2, 2, 0, 0]}, "token_scaling_layers"),
        ({"token_scaling_layers": [-1, 1, 1, 3]}, "token_scaling_layers"),
        ({"two_stage": True, "with_box_refine": True}, "two_stage"),
    ],
)
def test_bad_config_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tiny_eco_detr_config(**kwargs)


def test_config_defaults():
    config = EcoDeformableDetrConfig()
    assert config.model_type == "eco_deformable_detr" and config.exit_layers == [2, 3, 4, 5, 6]
    assert config.encoder_levels_per_layer == [4] * 6 and config.num_exits == 5
    assert EcoDeformableDetrConfig(token_scaling_layers=[1, 1, 2, 2]).encoder_levels_per_layer == [1, 2, 3, 3, 4, 4]


def test_bad_depth_requests_raise():
    model = tiny_eco_detector()
    pixel_values = detection_pixels(2, 64, 96)
    for bad in (1, torch.tensor([2, 5]), torch.tensor([2.0, 3.0]), torch.tensor([2, 3, 4])):
        with pytest.raises(ValueError, match="num_encoder_layers"):
            model(pixel_values=pixel_values, num_encoder_layers=bad)
