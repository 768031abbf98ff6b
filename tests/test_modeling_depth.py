"""Per-image encoder depth: each image stops at its own exit, is not computed further, and gets its solo result."""

from __future__ import annotations

import pytest
import torch

from helpers.models import tiny_eco_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation


def _layer_batch_sizes(model) -> tuple[list[int], list]:
    """Record the batch size each deformable encoder layer sees (one entry per layer call)."""
    calls: list[int] = []
    hooks = [
        layer.register_forward_pre_hook(lambda module, args, i=i: calls.append((i, args[0].shape[0])))
        for i, layer in enumerate(model.model.pixel_level_module.decoder.encoder.layers)
    ]
    return calls, hooks


@pytest.mark.parametrize("depths", [[2, 4], [4, 2], [3, 3], [2, 2]])
def test_per_image_depth_equals_single_image_runs(eco_model, pixel_values, depths):
    with torch.no_grad():
        batched = eco_model(pixel_values=pixel_values, num_encoder_layers=torch.tensor(depths))
        for i, depth in enumerate(depths):
            alone = eco_model(pixel_values=pixel_values[i : i + 1], num_encoder_layers=depth)
            torch.testing.assert_close(batched.masks_queries_logits[i], alone.masks_queries_logits[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(batched.class_queries_logits[i], alone.class_queries_logits[0], rtol=0, atol=1e-5)
    assert batched.encoder_layers_used.tolist() == depths


def test_exited_images_are_not_computed_further(eco_model, pixel_values):
    x = torch.cat([pixel_values, pixel_values[:1]])  # batch of 3
    calls, hooks = _layer_batch_sizes(eco_model)
    with torch.no_grad():
        eco_model(pixel_values=x, num_encoder_layers=torch.tensor([2, 4, 3]))
    for hook in hooks:
        hook.remove()
    # layers 0,1 see all 3 images, layer 2 the two with depth > 2, layer 3 only the depth-4 image.
    assert calls == [(0, 3), (1, 3), (2, 2), (3, 1)]


def test_depth_changes_the_output_and_shallower_runs_fewer_layers(eco_model, pixel_values):
    calls, hooks = _layer_batch_sizes(eco_model)
    with torch.no_grad():
        shallow = eco_model(pixel_values=pixel_values, num_encoder_layers=2)
        deep = eco_model(pixel_values=pixel_values, num_encoder_layers=4)
    for hook in hooks:
        hook.remove()
    assert [i for i, _ in calls] == [0, 1, 0, 1, 2, 3]
    assert not torch.allclose(shallow.masks_queries_logits, deep.masks_queries_logits)
    assert shallow.encoder_layers_used.tolist() == [2, 2]


@pytest.mark.parametrize(
    "bad",
    [1, 5, 0, torch.tensor([2, 5]), torch.tensor([2]), torch.tensor([2.0, 3.0]), torch.tensor([[2, 3]]), "3", True],
)
def test_invalid_depth_raises_listing_the_exits(eco_model, pixel_values, bad):
    with pytest.raises(ValueError, match="num_encoder_layers"):
        eco_model(pixel_values=pixel_values, num_encoder_layers=bad)


def test_gate_decides_only_when_trained(pixel_values):
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(exit_layers=[1, 2, 3, 4])).eval()
    with torch.no_grad():
        untrained = model(pixel_values=pixel_values)
    assert untrained.gate_logits is None and untrained.encoder_layers_used.tolist() == [4, 4]

    gate = model.model.pixel_level_module.decoder.gate.classifier
    with torch.no_grad():  # make the gate prefer exit index 1 (depth 2) for every input
        gate.weight.zero_()
        gate.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
    model.config.gate_trained = True
    with torch.no_grad():
        gated = model(pixel_values=pixel_values)
        fixed = model(pixel_values=pixel_values, num_encoder_layers=2)
    assert gated.gate_logits.shape == (2, 4)
    assert gated.encoder_layers_used.tolist() == [2, 2]
    torch.testing.assert_close(gated.masks_queries_logits, fixed.masks_queries_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.model.compute_gate_logits(pixel_values), gated.gate_logits, rtol=0, atol=1e-6)


def test_gate_picks_per_image(pixel_values):
    torch.manual_seed(0)
    # A decisive gate: the spatial mean of GroupNorm-ed maps is ~0, so mean-pooled logits at the initial scale are
    # ~1e-9 and float rounding alone could flip a near-tied argmax; the std pooling gives logits of order 1.
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(gate_trained=True, gate_pooling="mean_std")).eval()
    torch.nn.init.normal_(model.exit_gate.classifier.weight, std=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
        logits = model.model.compute_gate_logits(pixel_values)
    expected = torch.tensor(model.config.exit_layers)[logits.argmax(-1)]
    assert out.encoder_layers_used.tolist() == expected.tolist()
    with torch.no_grad():
        for i in range(2):
            alone = model(pixel_values=pixel_values[i : i + 1])
            assert alone.encoder_layers_used.tolist() == out.encoder_layers_used[i : i + 1].tolist()
            torch.testing.assert_close(out.masks_queries_logits[i], alone.masks_queries_logits[0], rtol=0, atol=1e-5)


def test_return_dict_false_gives_a_tuple(eco_model, pixel_values):
    with torch.no_grad():
        out = eco_model(pixel_values=pixel_values, num_encoder_layers=3, return_dict=False)
    assert isinstance(out, tuple)


def test_pixel_mask_all_ones_is_stock_and_padding_is_cropped(eco_model, pixel_values):
    ones = torch.ones(2, 96, 128, dtype=torch.long)
    padded = ones.clone()
    padded[1, :, 96:] = 0  # the second image is 96x96, padded on the right
    with torch.no_grad():
        kwargs = {"pixel_values": pixel_values, "output_gate_logits": True, "output_hidden_states": True}
        plain = eco_model(**kwargs)
        with_ones = eco_model(pixel_mask=ones, **kwargs)
        with_pad = eco_model(pixel_mask=padded, **kwargs)
        alone = eco_model(pixel_values=pixel_values[1:, :, :, :96], output_gate_logits=True, output_hidden_states=True)
    torch.testing.assert_close(with_ones.masks_queries_logits, plain.masks_queries_logits, rtol=0, atol=0)
    # The deformable encoder output (1/32 level, values of order 1) of the full image is unchanged; the padded image
    # gets exactly what its 96x96 area gets alone, padded with zeros to the batch's map.
    encoded_plain, encoded_pad = plain.pixel_decoder_hidden_states[0], with_pad.pixel_decoder_hidden_states[0]
    torch.testing.assert_close(encoded_pad[0], encoded_plain[0], rtol=0, atol=1e-5)
    encoded_alone = alone.pixel_decoder_hidden_states[0][0]
    torch.testing.assert_close(encoded_pad[1, :, :, : encoded_alone.shape[-1]], encoded_alone, rtol=0, atol=1e-5)
    assert (encoded_pad[1, :, :, encoded_alone.shape[-1] :] == 0).all()
    assert (encoded_pad[1] - encoded_plain[1]).abs().max() > 1e-2
    torch.testing.assert_close(with_pad.gate_logits[1], alone.gate_logits[0], rtol=0, atol=1e-6)
    assert with_pad.image_sizes.tolist() == [[96, 128], [96, 96]]
    assert with_pad.mask_sizes.tolist() == [[24, 32], [24, 24]]
    gate_only = eco_model.model.compute_gate_logits(pixel_values, pixel_mask=padded)
    torch.testing.assert_close(gate_only, with_pad.gate_logits, rtol=0, atol=1e-6)
