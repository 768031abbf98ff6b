"""PRO-SCALE: token-length stages, TRC, LPE, stock weights, and early exit inside a staged encoder."""

from __future__ import annotations

import pytest
import torch
from transformers import Mask2FormerForUniversalSegmentation

from helpers.models import tiny_eco_config, tiny_stock_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_token_scaling import EcoTokenRecalibration

STAGED = {"token_scaling_layers": [1, 1, 2], "exit_layers": [1, 2, 3, 4]}


def _model(**overrides) -> EcoMask2FormerForUniversalSegmentation:
    torch.manual_seed(0)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config(**{**STAGED, **overrides})).eval()


def _encoder_inputs(model, pixel_values):
    """Capture the keyword inputs of the deformable encoder and its output."""
    captured = {}
    encoder = model.model.pixel_level_module.decoder.encoder

    def hook(module, args, kwargs, output):
        captured.update(kwargs, output=output)

    handle = encoder.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(pixel_values=pixel_values)
    handle.remove()
    return captured


def test_each_stage_uses_exactly_its_scales(pixel_values):
    model = _model()
    encoder = model.model.pixel_level_module.decoder.encoder
    assert [layer.self_attn.n_levels for layer in encoder.layers] == [1, 2, 3, 3]
    seen = _encoder_inputs(model, pixel_values)
    shapes = seen["spatial_shapes_list"]
    sizes = [h * w for h, w in shapes]
    reference_points = encoder.get_reference_points(shapes, seen["valid_ratios"], device=pixel_values.device)
    # A plain reference that slices by hand: stage s runs its layers on the first s levels only.
    hidden = seen["inputs_embeds"].clone()
    for layer, n in zip(encoder.layers, [1, 2, 3, 3]):
        t = sum(sizes[:n])
        with torch.no_grad():
            hidden[:, :t] = layer(
                hidden[:, :t],
                seen["attention_mask"][:, :t],
                position_embeddings=seen["position_embeddings"][:, :t],
                reference_points=reference_points[:, :t, :n],
                spatial_shapes_list=shapes[:n],
                level_start_index=seen["level_start_index"][:n],
            )[0]
    torch.testing.assert_close(seen["output"], hidden, rtol=0, atol=1e-6)


def test_all_levels_from_the_start_is_stock(tmp_path, pixel_values):
    torch.manual_seed(0)
    stock = Mask2FormerForUniversalSegmentation(tiny_stock_config()).eval()
    stock.save_pretrained(tmp_path)
    config = tiny_eco_config(token_scaling_layers=[0, 0, 4])
    eco, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert {k.split(".gate.")[0] for k in info["missing_keys"]} == {"model.pixel_level_module.decoder"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        expected, got = stock(pixel_values=pixel_values), eco.eval()(pixel_values=pixel_values)
    torch.testing.assert_close(got.masks_queries_logits, expected.masks_queries_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.class_queries_logits, expected.class_queries_logits, rtol=0, atol=1e-5)


def test_stock_weights_load_where_shapes_fit(tmp_path):
    torch.manual_seed(0)
    stock = Mask2FormerForUniversalSegmentation(tiny_stock_config())
    stock.save_pretrained(tmp_path)
    config = tiny_eco_config(token_scaling_layers=[1, 1, 2], token_recalibration=True, light_pixel_embedding=True)
    eco, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(
        tmp_path, config=config, ignore_mismatched_sizes=True, output_loading_info=True
    )
    mismatched = {entry[0] if isinstance(entry, tuple) else entry for entry in info["mismatched_keys"]}
    prefix = "model.pixel_level_module.decoder."
    # The 1- and 2-level layers cannot take the 3-level offset/weight heads; everything else fits.
    assert mismatched == {
        f"{prefix}encoder.layers.{i}.self_attn.{name}.{p}"
        for i in (0, 1) for name in ("sampling_offsets", "attention_weights") for p in ("weight", "bias")
    }
    assert set(info["unexpected_keys"]) == {f"{prefix}layer_1.0.weight"}  # the 3x3 conv that LPE removes
    assert set(info["missing_keys"]) == {
        f"{prefix}{name}" for name in ("gate.classifier.weight", "gate.classifier.bias",
                                       "token_recalibration.proj.weight", "token_recalibration.proj.bias")
    }
    eco_state, stock_state = eco.state_dict(), stock.state_dict()
    for key, value in stock_state.items():
        if key in eco_state and key not in mismatched:
            assert torch.equal(eco_state[key], value), key


@pytest.mark.parametrize("options", [{}, {"token_recalibration": True, "light_pixel_embedding": True}])
def test_gradient_reaches_every_parameter(options):
    from helpers.models import UNUSED_IN_STOCK, tiny_labels

    model = _model(**options).train()
    mask_labels, class_labels = tiny_labels(2, 64, 64)
    out = model(
        pixel_values=torch.randn(2, 3, 64, 64), mask_labels=mask_labels, class_labels=class_labels,
        num_encoder_layers=4, exit_labels=torch.tensor([1, 3]),
    )
    out.loss.backward()
    for name, param in model.named_parameters():
        if not any(marker in name for marker in UNUSED_IN_STOCK):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_exit_inside_a_stage_passes_unentered_levels_as_projections(pixel_values):
    model = _model(token_recalibration=True)
    decoder = model.model.pixel_level_module.decoder
    with torch.no_grad():
        out = model(pixel_values=pixel_values, num_encoder_layers=1, output_hidden_states=True)
        backbone = out.encoder_hidden_states  # strides 4, 8, 16, 32
        projected = [decoder.input_projections[i](x) for i, x in enumerate(backbone[::-1][:3])]
        recalibrated = decoder.token_recalibration(projected)
    coarse, middle, fine = out.pixel_decoder_hidden_states
    torch.testing.assert_close(fine, projected[2], rtol=0, atol=1e-6)  # 1/8 has not entered: its projection
    torch.testing.assert_close(middle, recalibrated[1], rtol=0, atol=1e-6)  # 1/16: projection re-weighted by TRC
    assert not torch.allclose(coarse, recalibrated[0], atol=1e-3)  # 1/32 went through one layer


def test_per_image_depth_inside_stages_equals_single_runs(pixel_values):
    model = _model(token_recalibration=True, light_pixel_embedding=True)
    with torch.no_grad():
        batched = model(pixel_values=pixel_values, num_encoder_layers=torch.tensor([1, 3]))
        for i, depth in enumerate([1, 3]):
            alone = model(pixel_values=pixel_values[i : i + 1], num_encoder_layers=depth)
            torch.testing.assert_close(batched.masks_queries_logits[i], alone.masks_queries_logits[0], rtol=0, atol=1e-5)


def test_token_recalibration_reads_channels_per_position():
    torch.manual_seed(0)
    trc = EcoTokenRecalibration(feature_size=32, temperature=0.1)
    maps = [torch.randn(2, 32, 2, 3), torch.randn(2, 32, 4, 6), torch.randn(2, 32, 8, 12)]
    out = trc(maps)
    resized = torch.nn.functional.interpolate(maps[2], size=(2, 3), mode="bilinear", align_corners=False)
    for b in range(2):
        for y in range(2):
            for x in range(3):  # the reference: one position's channel vector through the linear map
                w = torch.sigmoid(0.1 * (trc.proj.weight[0] @ resized[b, :, y, x] + trc.proj.bias[0]))
                torch.testing.assert_close(out[0][b, :, y, x], maps[0][b, :, y, x] * w)
    assert torch.equal(out[2], maps[2])


def test_light_pixel_embedding_replaces_the_output_convolution():
    model = _model(light_pixel_embedding=True)
    decoder = model.model.pixel_level_module.decoder
    assert isinstance(decoder.layer_1[0], torch.nn.MaxPool2d) and isinstance(decoder.layer_1[1], torch.nn.GroupNorm)
    assert decoder.output_convolutions[0] is decoder.layer_1
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in decoder.modules())


def test_round_trip(tmp_path, pixel_values):
    model = _model(token_recalibration=True, light_pixel_embedding=True, gate_trained=True)
    model.save_pretrained(tmp_path)
    loaded, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values())
    assert loaded.config.token_scaling_layers == [1, 1, 2] and loaded.config.light_pixel_embedding
    with torch.no_grad():
        a, b = model(pixel_values=pixel_values), loaded.eval()(pixel_values=pixel_values)
    torch.testing.assert_close(a.masks_queries_logits, b.masks_queries_logits, rtol=0, atol=0)
    assert torch.equal(a.encoder_layers_used, b.encoder_layers_used)
