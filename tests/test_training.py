"""Step-1 and step-3 training behaviour: gradients at every exit, depth-weighted loss, gate-only training, save/load."""

from __future__ import annotations

import random

import pytest
import torch

from helpers.models import UNUSED_IN_STOCK, tiny_eco_config, tiny_labels
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, sample_exit_depth


def _encoder_layer_index(name: str) -> int | None:
    marker = "pixel_level_module.decoder.encoder.layers."
    return int(name.split(marker)[1].split(".")[0]) if marker in name else None


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_gradient_reaches_every_parameter_used_at_each_exit(depth):
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).train()
    pixel_values = torch.randn(2, 3, 64, 64)
    mask_labels, class_labels = tiny_labels(2, 64, 64)
    out = model(
        pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels, num_encoder_layers=depth,
        exit_labels=torch.tensor([2, depth]),
    )
    out.loss.backward()
    for name, param in model.named_parameters():
        if any(marker in name for marker in UNUSED_IN_STOCK):
            continue
        layer = _encoder_layer_index(name)
        if layer is not None and layer >= depth:
            assert param.grad is None, f"{name} is past exit {depth} but got a gradient"
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} got no gradient at exit {depth}"


def test_loss_is_stock_loss_times_depth_weight():
    torch.manual_seed(0)
    linear = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).train()
    uniform = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(exit_loss_weighting="uniform")).train()
    uniform.load_state_dict(linear.state_dict())
    pixel_values = torch.randn(2, 3, 64, 64)
    mask_labels, class_labels = tiny_labels(2, 64, 64)
    losses = {}
    for name, model in (("linear", linear), ("uniform", uniform)):
        torch.manual_seed(7)  # the loss samples points at random
        losses[name] = model(
            pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels, num_encoder_layers=3
        ).loss
    torch.testing.assert_close(losses["linear"], 3 * losses["uniform"])
    assert losses["uniform"] > 0


def test_depth_sampler_is_seeded_and_uniform():
    exits = [2, 3, 4, 5, 6]
    first = [sample_exit_depth(exits, rng=random.Random(5)) for _ in range(3)]
    assert first == [sample_exit_depth(exits, rng=random.Random(5)) for _ in range(3)]
    rng = random.Random(0)
    draws = [sample_exit_depth(exits, rng=rng) for _ in range(5000)]
    counts = [draws.count(k) for k in exits]
    assert set(draws) == set(exits)
    assert max(counts) - min(counts) < 150  # ~1000 each


def test_gate_only_training_learns_the_depth_labels():
    # 64 channels in the input projection's 32 GroupNorm groups: with the helpers' 32 channels each channel is
    # normalised alone, so its spatial mean (what the paper's gate pools) is the same for every image and the gate
    # could only learn the label prior.
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(exit_layers=[1, 2, 3, 4], feature_size=64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = model.freeze_all_but_gate()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "model.pixel_level_module.decoder.gate.classifier.weight",
        "model.pixel_level_module.decoder.gate.classifier.bias",
    ]
    optimizer = torch.optim.AdamW(params, lr=0.05)
    generator = torch.Generator().manual_seed(2)
    ramp = torch.linspace(-1, 1, 64)
    smooth = (ramp[:, None] * ramp[None, :]).expand(3, 64, 64)  # (3, H, W)
    images = torch.stack([smooth + 0.05 * torch.randn(3, 64, 64, generator=generator) for _ in range(2)]
                         + [torch.randn(3, 64, 64, generator=generator) for _ in range(2)])  # smooth vs noise
    labels = torch.tensor([1, 1, 4, 4])
    model.eval()  # frozen parts in inference mode; the gate is trained on their features
    for _ in range(60):
        loss = model(pixel_values=images, exit_labels=labels, num_encoder_layers=1).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model.model.compute_gate_logits(images)
    assert torch.tensor(model.config.exit_layers)[logits.argmax(-1)].tolist() == [1, 1, 4, 4]
    for key, value in model.state_dict().items():
        if ".gate." not in key:
            assert torch.equal(value, before[key]), f"{key} changed during gate training"


def test_exit_labels_outside_exits_raise(eco_model, pixel_values):
    with pytest.raises(ValueError, match="exit_labels"):
        eco_model(pixel_values=pixel_values, exit_labels=torch.tensor([2, 9]))


def test_save_load_round_trip_keeps_weights_config_and_gate(tmp_path, pixel_values):
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(
        tiny_eco_config(exit_layers=[1, 3, 4], gate_hidden_size=8, gate_trained=True)
    ).eval()
    model.save_pretrained(tmp_path)
    loaded, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    loaded.eval()
    assert not any(info.values())
    assert (loaded.config.exit_layers, loaded.config.gate_hidden_size, loaded.config.gate_trained) == ([1, 3, 4], 8, True)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        a, b = model(pixel_values=pixel_values), loaded(pixel_values=pixel_values)
    assert torch.equal(a.encoder_layers_used, b.encoder_layers_used)
    torch.testing.assert_close(a.gate_logits, b.gate_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.masks_queries_logits, b.masks_queries_logits, rtol=0, atol=0)


def test_auto_classes_resolve_after_import(tmp_path, eco_model):
    from transformers import AutoModelForImageSegmentation, AutoModelForUniversalSegmentation

    eco_model.save_pretrained(tmp_path)
    assert type(AutoModelForUniversalSegmentation.from_pretrained(tmp_path)) is EcoMask2FormerForUniversalSegmentation
    assert type(AutoModelForImageSegmentation.from_pretrained(tmp_path)) is EcoMask2FormerForUniversalSegmentation
