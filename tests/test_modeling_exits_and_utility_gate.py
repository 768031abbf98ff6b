"""Every exit from one pass (`forward_exits`), and the utility gate whose trade-off `gate_beta` is set per call."""

from __future__ import annotations

import pytest
import torch

from helpers.models import tiny_eco_config


def _model(**overrides):
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config(**overrides)).eval()


@pytest.mark.parametrize("overrides", [{}, {"token_scaling_layers": [1, 1, 2], "token_recalibration": True,
                                             "light_pixel_embedding": True}])
def test_forward_exits_equals_separate_forwards(overrides):
    model = _model(**overrides)
    pixel_values = torch.randn(3, 3, 64, 80)
    pixel_mask = torch.ones(3, 64, 80, dtype=torch.long)
    pixel_mask[1, :, 60:] = 0  # one padded image
    with torch.no_grad():
        shared = dict(model.forward_exits(pixel_values, pixel_mask=pixel_mask, output_gate_logits=True))
        assert sorted(shared) == model.config.exit_layers
        for depth, out in shared.items():
            alone = model(pixel_values=pixel_values, pixel_mask=pixel_mask, num_encoder_layers=depth,
                          output_gate_logits=True)
            torch.testing.assert_close(out.class_queries_logits, alone.class_queries_logits, rtol=0, atol=0)
            torch.testing.assert_close(out.masks_queries_logits, alone.masks_queries_logits, rtol=0, atol=0)
            torch.testing.assert_close(out.gate_logits, alone.gate_logits, rtol=0, atol=0)
            assert out.encoder_layers_used.tolist() == [depth] * 3


def test_forward_exits_runs_each_encoder_layer_once():
    model = _model()
    calls = []
    for index, layer in enumerate(model.model.pixel_level_module.decoder.encoder.layers):
        layer.register_forward_hook(lambda module, args, output, index=index: calls.append(index))
    with torch.no_grad():
        depths = [depth for depth, _ in model.forward_exits(torch.randn(2, 3, 64, 64), exits=[2, 4])]
    assert depths == [2, 4]
    assert calls == [0, 1, 2, 3]


def test_forward_exits_rejects_a_depth_that_is_no_exit():
    model = _model(exit_layers=[2, 4])
    with pytest.raises(ValueError, match="not an allowed exit"):
        list(model.forward_exits(torch.randn(1, 3, 64, 64), exits=[3]))


def test_utility_gate_picks_argmax_of_gain_minus_beta_depth():
    from modeling_ecom2f.ecom2f_depth import gate_depths

    config = tiny_eco_config(gate_objective="utility", gate_beta=0.0)  # exits 2, 3, 4
    predicted = torch.tensor([[0.0, 0.05, 0.06], [0.0, 0.001, 0.002], [0.0, -0.1, 0.3]])
    assert gate_depths(predicted, config=config).tolist() == [4, 4, 4]
    # beta = 0.02 per layer: image 0 gains 0.05 for one layer (keep 3), image 1 gains too little, image 2 a lot.
    assert gate_depths(predicted, config=config, gate_beta=0.02).tolist() == [3, 2, 4]
    assert gate_depths(predicted, config=config, gate_beta=1.0).tolist() == [2, 2, 2]


def test_gate_beta_per_call_changes_the_depth_and_matches_the_default():
    model = _model(gate_objective="utility", gate_trained=True, gate_hidden_size=8)
    gate = model.model.pixel_level_module.decoder.gate
    with torch.no_grad():  # a gate that predicts large gains for deeper exits
        gate.classifier[-1].weight.zero_()
        gate.classifier[-1].bias.copy_(torch.tensor([0.0, 0.1, 0.15]))
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(pixel_values=pixel_values).encoder_layers_used.tolist() == [4, 4]
        assert model(pixel_values=pixel_values, gate_beta=0.07).encoder_layers_used.tolist() == [3, 3]
        assert model(pixel_values=pixel_values, gate_beta=0.5).encoder_layers_used.tolist() == [2, 2]
        model.config.gate_beta = 0.07
        assert model(pixel_values=pixel_values).encoder_layers_used.tolist() == [3, 3]


def test_gate_beta_is_refused_for_a_classification_gate_and_validated():
    from modeling_ecom2f import EcoMask2FormerConfig

    model = _model(gate_trained=True)
    with pytest.raises(ValueError, match="gate_objective='utility'"):
        model(pixel_values=torch.randn(1, 3, 64, 64), gate_beta=0.01)
    with pytest.raises(ValueError, match="gate_objective"):
        EcoMask2FormerConfig(gate_objective="ranking")
    with pytest.raises(ValueError, match="gate_beta"):
        EcoMask2FormerConfig(gate_beta=-0.1)
    utility = _model(gate_trained=True, gate_objective="utility")
    with pytest.raises(ValueError, match="gate_beta"):
        utility(pixel_values=torch.randn(1, 3, 64, 64), gate_beta=float("nan"))


def test_mean_std_gate_pooling_sees_texture_that_the_mean_misses():
    from modeling_ecom2f.ecom2f_gate import EcoExitGate

    gate = EcoExitGate(in_channels=2, num_exits=3, pooling="mean_std")
    assert gate.classifier.in_features == 4
    flat = torch.zeros(1, 2, 4, 4)
    checker = (torch.arange(16).reshape(1, 1, 4, 4) % 2).float().expand(1, 2, 4, 4) * 2 - 1  # same mean, std 1
    with torch.no_grad():
        gate.classifier.weight.zero_()
        gate.classifier.bias.zero_()
        gate.classifier.weight[0, 2] = 1.0  # score exit 0 by the std of channel 0
        assert gate(flat)[0, 0] == pytest.approx(0.0, abs=1e-5) and gate(checker)[0, 0] == pytest.approx(1.0)
        padded = torch.cat([checker, torch.full((1, 2, 4, 4), 9.0)], dim=3)  # (1, 2, 4, 8), right half padding
        mask = torch.zeros(1, 4, 8, dtype=torch.bool)
        mask[:, :, 4:] = True
        torch.testing.assert_close(gate(padded, mask), gate(checker))
    with pytest.raises(ValueError, match="gate_pooling"):
        EcoExitGate(in_channels=2, num_exits=3, pooling="max")
