"""The faster decoder stand-ins (`ecom2f_decoder`) give the stock modules' outputs, keys and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskPredictor

from helpers.models import tiny_labels, tiny_stock_and_eco
from modeling_ecom2f.ecom2f_decoder import EcoMaskedCrossAttention, EcoMaskPredictor
from modeling_ecom2f.ecom2f_export import export_mode


@pytest.fixture(scope="module")
def pair():
    """A stock model and an ecom2f model holding its weights (both eval)."""
    return tiny_stock_and_eco()


def test_the_model_uses_the_stand_ins_with_stock_keys(pair):
    stock, eco = pair
    decoder = eco.model.transformer_module.decoder
    assert all(type(layer.cross_attn) is EcoMaskedCrossAttention for layer in decoder.layers)
    assert type(decoder.mask_predictor) is EcoMaskPredictor
    stock_keys = {k for k in stock.state_dict() if ".transformer_module." in k}
    assert stock_keys == {k for k in eco.state_dict() if ".transformer_module." in k}


def test_mask_predictor_equals_stock_exactly(pair):
    stock, eco = pair
    fast = eco.model.transformer_module.decoder.mask_predictor
    reference = copy.deepcopy(fast)
    reference.__class__ = Mask2FormerMaskPredictor
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(7, 2, eco.config.hidden_dim, generator=generator)  # (Q, B, C)
    pixels = torch.randn(2, eco.config.mask_feature_size, 16, 20, generator=generator)
    for target in [(2, 3), (4, 5), (8, 10)]:
        expected_masks, expected_attention = reference(queries, pixels, target)
        masks, attention = fast(queries, pixels, target)
        assert torch.equal(masks, expected_masks)
        assert attention.dtype == expected_attention.dtype and torch.equal(attention, expected_attention)


def test_cross_attention_outputs_equal_the_weighted_path():
    torch.manual_seed(0)
    stock = nn.MultiheadAttention(16, 4).eval()
    fast = copy.deepcopy(stock)
    fast.__class__ = EcoMaskedCrossAttention
    generator = torch.Generator().manual_seed(2)
    query, key = torch.randn(5, 2, 16, generator=generator), torch.randn(9, 2, 16, generator=generator)
    mask = torch.rand(2 * 4, 5, 9, generator=generator) < 0.3
    expected, weights = stock(query, key, key, attn_mask=mask)
    got, no_weights = fast(query, key, key, attn_mask=mask)
    assert weights is not None and no_weights is None
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    fast.fused = False  # the export's setting: the stock path again
    assert fast(query, key, key, attn_mask=mask)[1] is not None
    fast.fused = True
    fast.dropout = 0.1  # attention dropout in training keeps the stock path (and its random stream)
    assert fast.train()(query, key, key, attn_mask=mask)[1] is not None


def test_full_model_outputs_and_attentions_equal_stock(pair):
    stock, eco = pair
    pixel_values = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = stock(pixel_values=pixel_values, output_attentions=True)
        got = eco(pixel_values=pixel_values, output_attentions=True)
    for name in ("class_queries_logits", "masks_queries_logits"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-5, msg=name)
    assert len(got.attentions) == len(expected.attentions)
    for a, b in zip(got.attentions, expected.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_training_loss_and_gradients_equal_stock(pair):
    stock, eco = (copy.deepcopy(m).train() for m in pair)
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    mask_labels, class_labels = tiny_labels(2, 64, 64, num_labels=eco.config.num_labels)
    eco.config.exit_loss_weighting = "uniform"
    losses, grads = [], []
    for model in (stock, eco):
        torch.manual_seed(5)  # the loss samples points at random
        loss = model(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels).loss
        loss.backward()
        losses.append(loss)
        grads.append({k: p.grad for k, p in model.named_parameters() if ".transformer_module." in k})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for name, expected in grads[0].items():
        torch.testing.assert_close(grads[1][name], expected, rtol=1e-4, atol=1e-6 + 1e-4 * expected.abs().max(),
                                   msg=name)


def test_export_mode_unfuses_and_restores_the_cross_attention(pair):
    _, eco = pair
    cross = [layer.cross_attn for layer in eco.model.transformer_module.decoder.layers]
    with export_mode(eco):
        assert not any(m.fused for m in cross)
    assert all(m.fused for m in cross) and all("fused" not in vars(m) for m in cross)
