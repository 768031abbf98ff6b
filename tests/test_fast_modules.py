"""The stand-ins installed by `ecom2f_fast_modules` (Swin block, deformable encoder layer, masked-attention decoder)
give the stock modules' outputs (max |diff| <= 1e-5), keep the stock keys, and pass gradients as stock does."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import SwinConfig
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskedAttentionDecoder
from transformers.models.swin.modeling_swin import SwinLayer

from helpers.models import tiny_stock_and_eco
from modeling_ecom2f.ecom2f_blocked_ffn import blocked_feed_forward
from modeling_ecom2f.ecom2f_encoder import EcoMask2FormerPixelDecoderEncoderLayer
from modeling_ecom2f.ecom2f_fast_encoder_layer import EcoFastPixelDecoderEncoderLayer
from modeling_ecom2f.ecom2f_fast_modules import STAND_INS
from modeling_ecom2f.ecom2f_masked_decoder import EcoMaskedAttentionDecoder, unblock_full_rows
from modeling_ecom2f.ecom2f_swin_layer import EcoSwinLayer

ATOL = 1e-5


def randomize(module: torch.nn.Module, seed: int, std: float = 0.3) -> None:
    """Every parameter random (the stock init leaves biases and the relative position table at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def stock_copy(module: torch.nn.Module, stock_class: type) -> torch.nn.Module:
    reference = copy.deepcopy(module)
    reference.__class__ = stock_class
    return reference


@pytest.fixture(scope="module")
def pair():
    """A stock model and an ecom2f model holding its weights, randomised (both eval)."""
    return tiny_stock_and_eco(prepare_stock=lambda stock: randomize(stock, seed=1, std=0.1))


def test_every_stand_in_is_installed_with_the_stock_keys(pair):
    stock, eco = pair
    types = {type(m) for m in eco.modules()}
    assert set(STAND_INS.values()) <= types and not set(STAND_INS) & types
    assert set(stock.state_dict()) == {k for k in eco.state_dict() if ".gate." not in k}


@pytest.mark.parametrize("size", [(64, 64), (75, 53)])
def test_full_model_logits_equal_stock(pair, size):
    stock, eco = pair
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        a, b = stock(pixel_values=x), eco(pixel_values=x)
    assert (a.class_queries_logits - b.class_queries_logits).abs().max() <= ATOL
    assert (a.masks_queries_logits - b.masks_queries_logits).abs().max() <= ATOL


# --- Swin block -----------------------------------------------------------------------------------------------------


def swin_layer(shift: int, seed: int) -> SwinLayer:
    config = SwinConfig(embed_dim=24, window_size=4, num_heads=[3], hidden_act="gelu", qkv_bias=True)
    config._attn_implementation = "sdpa"
    layer = SwinLayer(config, dim=24, input_resolution=(8, 8), num_heads=3, shift_size=shift).eval()
    randomize(layer, seed=seed)
    return layer


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("batch, height, width", [(1, 8, 8), (2, 11, 9), (3, 5, 13), (2, 4, 6)])
def test_swin_layer_equals_stock(shift, batch, height, width):
    stock = swin_layer(shift, seed=shift)
    fast = copy.deepcopy(stock)
    fast.__class__ = EcoSwinLayer
    x = torch.randn(batch, height * width, 24, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected, _ = stock(x, (height, width))
        got, weights = fast(x, (height, width))
    assert weights is None and got.shape == expected.shape
    assert (got - expected).abs().max() <= ATOL


def test_swin_layer_gradients_equal_stock():
    stock = swin_layer(2, seed=5)
    fast = stock_copy(stock, EcoSwinLayer)
    x = torch.randn(2, 11 * 9, 24, generator=torch.Generator().manual_seed(6))
    grads = []
    for layer in (stock, fast):
        xi = x.clone().requires_grad_(True)
        out, _ = layer(xi, (11, 9))
        out.square().sum().backward()
        grads.append([xi.grad] + [p.grad for p in layer.parameters()])
    for g_stock, g_fast in zip(*grads):
        assert g_fast is not None and torch.allclose(g_fast, g_stock, atol=1e-4, rtol=1e-4)


# --- deformable encoder layer ---------------------------------------------------------------------------------------


def captured_call(eco, path: str, x: torch.Tensor) -> tuple[torch.nn.Module, tuple, dict]:
    """The submodule at `path` and the arguments it receives in `eco(pixel_values=x)`."""
    module = eco.get_submodule(path)
    captured = {}
    handle = module.register_forward_pre_hook(lambda _, a, k: captured.update(args=a, kwargs=k), with_kwargs=True)
    with torch.no_grad():
        eco(pixel_values=x)
    handle.remove()
    return module, captured["args"], captured["kwargs"]


ENCODER_LAYER, DECODER = "model.pixel_level_module.decoder.encoder.layers.0", "model.transformer_module.decoder"


def stand_in_and_stock(eco, path: str, stand_in: type, stock: type, seed: int):
    """The stand-in at `path` (checked to be installed), a stock-class copy of it and their captured arguments, from a
    batch of 2 images of 75x53 (padding in Swin's windows)."""
    x = torch.randn(2, 3, 75, 53, generator=torch.Generator().manual_seed(seed))
    module, args, kwargs = captured_call(eco, path, x)
    assert type(module) is stand_in
    return module, stock_copy(module, stock), args, kwargs


def test_encoder_layer_equals_stock(pair):
    _, eco = pair
    layer, reference, args, kwargs = stand_in_and_stock(
        eco, ENCODER_LAYER, EcoFastPixelDecoderEncoderLayer, EcoMask2FormerPixelDecoderEncoderLayer, seed=7
    )
    with torch.inference_mode():
        assert (layer(*args, **kwargs)[0] - reference(*args, **kwargs)[0]).abs().max() <= ATOL


def test_encoder_layer_gradients_flow(pair):
    _, eco = pair
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    layer, args, kwargs = captured_call(eco, ENCODER_LAYER, x)
    layer = copy.deepcopy(layer)
    layer(*args, **kwargs)[0].square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


@pytest.mark.parametrize("pre_norm", [False, True])
def test_blocked_feed_forward_equals_unblocked(pre_norm):
    torch.manual_seed(9)
    fc1, fc2, norm = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8), torch.nn.LayerNorm(8)
    randomize(norm, seed=10)
    x = torch.randn(2, 23, 8)
    act = torch.nn.functional.gelu if pre_norm else torch.relu
    expected = x + fc2(act(fc1(norm(x) if pre_norm else x)))
    expected = expected if pre_norm else norm(expected)
    with torch.no_grad():
        got = blocked_feed_forward(x, fc1=fc1, fc2=fc2, activation="gelu" if pre_norm else "relu", block_rows=7,
                                   pre_norm=norm if pre_norm else None, post_norm=None if pre_norm else norm)
    assert (got - expected).abs().max() <= ATOL


# --- masked-attention decoder ---------------------------------------------------------------------------------------


def test_unblock_full_rows_matches_the_stock_rule():
    mask = torch.rand(6, 5, 7, generator=torch.Generator().manual_seed(11)) < 0.6
    mask[1, 2] = True
    mask[4, 0] = True  # rows blocking every pixel
    expected = mask * (mask.sum(-1) != mask.shape[-1]).to(mask.dtype).unsqueeze(-1)
    assert torch.equal(unblock_full_rows(mask.clone()), expected)
    with torch.no_grad():
        assert torch.equal(unblock_full_rows(mask.clone()), expected)
    assert not unblock_full_rows(mask.clone())[1, 2].any() and unblock_full_rows(mask.clone())[0].equal(mask[0])


def test_masked_decoder_equals_stock(pair):
    _, eco = pair
    decoder, reference, args, kwargs = stand_in_and_stock(
        eco, DECODER, EcoMaskedAttentionDecoder, Mask2FormerMaskedAttentionDecoder, seed=12
    )
    with torch.inference_mode():
        got, expected = decoder(*args, **kwargs), reference(*args, **kwargs)
    for a, b in zip(got.masks_queries_logits + got.intermediate_hidden_states,
                    expected.masks_queries_logits + expected.intermediate_hidden_states):
        assert (a - b).abs().max() <= ATOL


def test_masked_decoder_gradients_equal_stock(pair):
    _, eco = pair
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(13))
    decoder, args, kwargs = captured_call(eco, DECODER, x)
    grads = []
    for module in (copy.deepcopy(decoder), stock_copy(decoder, Mask2FormerMaskedAttentionDecoder)):
        out = module(*args, **kwargs)
        (out.masks_queries_logits[-1].square().mean() + out.last_hidden_state.square().mean()).backward()
        grads.append([p.grad for p in module.parameters()])
    for g_fast, g_stock in zip(*grads):
        assert (g_fast is None) == (g_stock is None)
        if g_fast is not None:
            assert torch.allclose(g_fast, g_stock, atol=1e-5, rtol=1e-4)
