"""FLOP accounting: the papers' fvcore convention, the authors' per-layer figure, part attribution, batch additivity."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoderEncoderLayer

from helpers.models import tiny_eco_config, tiny_kwargs, tiny_stock_config
from modeling_ecom2f.ecom2f_flops import (
    count_gflops,
    deformable_encoder_tokens,
    deformable_layer_gflops,
    fvcore_flop_counter,
    to_gflops,
)


def _spatial_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """Encoder levels coarse to fine (1/32, 1/16, 1/8) for an input whose sides are multiples of 32."""
    return [(height // s, width // s) for s in (32, 16, 8)]


def _layer_gflops(layer: nn.Module, shapes: list[tuple[int, int]], *, device: str) -> float:
    """Run one stock deformable encoder layer on the tokens of `shapes` under the counter."""
    tokens = sum(h * w for h, w in shapes)
    d = layer.embed_dim
    hidden = torch.randn(1, tokens, d, device=device)
    with torch.no_grad(), fvcore_flop_counter() as counter:
        layer(
            hidden,
            torch.zeros(1, tokens, dtype=torch.bool, device=device),
            position_embeddings=torch.randn(1, tokens, d, device=device),
            reference_points=torch.rand(1, tokens, 3, 2, device=device),
            spatial_shapes_list=shapes,
            level_start_index=None,
        )
    return to_gflops(counter.get_total_flops())


def _stock_layer(device: str, **overrides) -> nn.Module:
    config = Mask2FormerConfig(**{**tiny_kwargs(), "feature_size": 256, "num_attention_heads": 8,
                                  "encoder_feedforward_dim": 1024, **overrides})
    with torch.device(device):
        return Mask2FormerPixelDecoderEncoderLayer(config).eval()


def test_one_encoder_layer_at_1024x2048_costs_31_47_gflops():
    # The authors' per-exit step at 1024x2048 (Cityscapes, Swin-T) is 31.467 GFLOPs: the per-exit GFLOPs comment
    # [411.981, 443.448, 474.914, 506.381, 537.848] in GYeow/ECO-M2F `mask2former/maskformer_model.py`.
    shapes = _spatial_shapes(1024, 2048)
    assert sum(h * w for h, w in shapes) == 43008 == deformable_encoder_tokens(height=1024, width=2048)
    gflops = _layer_gflops(_stock_layer("meta"), shapes, device="meta")  # shapes only, no 43k-token compute
    assert abs(gflops - 31.467) / 31.467 < 0.005, gflops
    assert gflops == pytest.approx(deformable_layer_gflops(num_tokens=43008), rel=1e-12)


@pytest.mark.parametrize("height,width", [(512, 512), (800, 1216), (640, 640)])
def test_counter_matches_analytic_layer_formula(height, width):
    shapes = _spatial_shapes(height, width)
    gflops = _layer_gflops(_stock_layer("meta"), shapes, device="meta")
    analytic = deformable_layer_gflops(num_tokens=deformable_encoder_tokens(height=height, width=width))
    assert gflops == pytest.approx(analytic, rel=1e-12)


def test_counter_matches_analytic_formula_on_real_cpu_run_with_other_widths():
    layer = _stock_layer("cpu", feature_size=64, num_attention_heads=4, encoder_feedforward_dim=96)
    gflops = _layer_gflops(layer, _spatial_shapes(128, 96), device="cpu")
    analytic = deformable_layer_gflops(num_tokens=4 * 3 + 8 * 6 + 16 * 12, d_model=64, num_heads=4, ffn_dim=96)
    assert gflops == pytest.approx(analytic, rel=1e-12)


def test_fvcore_conventions_for_norms_upsample_and_pool():
    x = torch.randn(2, 32, 6, 8)
    n = x.numel()
    cases = [
        (nn.GroupNorm(8, 32), 5 * n),
        (nn.GroupNorm(8, 32, affine=False), 4 * n),
        (nn.LayerNorm(8), 5 * n),
        (nn.BatchNorm2d(32).eval(), 2 * n),  # fvcore: eval BatchNorm is 2 per element with affine
        (nn.BatchNorm2d(32).train(), 5 * n),  # ... and 5 when training
        (nn.Upsample(scale_factor=2, mode="bilinear"), 4 * 4 * n),
        (nn.Upsample(scale_factor=2, mode="nearest"), 4 * n),
        (nn.AdaptiveAvgPool2d(3), n),
        (nn.Conv2d(32, 16, 3, padding=1, bias=True), 16 * 32 * 9 * 2 * 6 * 8),  # MACs, bias not counted
        (nn.Linear(8, 5), 2 * 32 * 6 * 5 * 8),
    ]
    for module, expected in cases:
        with torch.no_grad(), fvcore_flop_counter() as counter:
            module(x)
        assert counter.get_total_flops() == 2 * expected, module  # the counter counts 2 per multiply-add


def test_deformable_sampling_is_not_counted():
    value = torch.randn(1, 4, 8, 8)
    grid = torch.rand(1, 100, 4, 2) * 2 - 1
    with fvcore_flop_counter() as counter:
        nn.functional.grid_sample(value, grid, align_corners=False)
    assert counter.get_total_flops() == 0


def test_global_flop_registry_is_not_mutated():
    before = dict(flop_registry)
    model = Mask2FormerForUniversalSegmentation(tiny_stock_config()).eval()
    count_gflops(model, torch.randn(1, 3, 64, 64))
    assert flop_registry == before
    assert torch.ops.aten.native_layer_norm not in flop_registry


@pytest.fixture(scope="module")
def stock_model():
    torch.manual_seed(0)
    return Mask2FormerForUniversalSegmentation(tiny_stock_config()).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def test_stock_model_parts_positive_and_sum_to_total(stock_model, images):
    g = count_gflops(stock_model, images[:1])
    assert g.backbone > 0 and g.pixel_decoder_rest > 0 and g.encoder > 0 and g.transformer_decoder > 0
    assert g.gate == 0 and g.other == 0
    assert g.backbone + g.pixel_decoder + g.gate + g.transformer_decoder + g.other == pytest.approx(g.total, rel=1e-12)
    assert g.depths == (4,) and g.per_image == (pytest.approx(g.total),)
    config = stock_model.config
    per_layer = deformable_layer_gflops(
        num_tokens=deformable_encoder_tokens(height=96, width=128), d_model=config.feature_size,
        num_heads=config.num_attention_heads, ffn_dim=config.encoder_feedforward_dim,
    )
    assert g.encoder_layers == pytest.approx((per_layer,) * config.encoder_layers, rel=1e-12)


def test_backbone_sdpa_is_counted_like_eager_attention(stock_model, images):
    eager = copy.deepcopy(stock_model)
    eager.model.pixel_level_module.encoder.set_attn_implementation("eager")
    with torch.no_grad(), FlopCounterMode(display=False) as plain:
        eager(pixel_values=images[:1])
    assert torch.ops.aten._scaled_dot_product_flash_attention_for_cpu not in plain.get_flop_counts()["Global"]
    assert count_gflops(stock_model, images[:1]).backbone == pytest.approx(count_gflops(eager, images[:1]).backbone)


def test_gflops_are_batch_additive(stock_model, images):
    batch = count_gflops(stock_model, images)
    solo = [count_gflops(stock_model, images[i : i + 1]) for i in range(3)]
    for field in ("backbone", "pixel_decoder", "transformer_decoder", "total"):
        assert getattr(batch, field) == pytest.approx(sum(getattr(s, field) for s in solo), rel=1e-12), field
    assert batch.per_image == pytest.approx([s.total for s in solo], rel=1e-12)


@pytest.fixture(scope="module")
def eco_model():
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()


def test_eco_gflops_grow_by_one_encoder_layer_per_depth(eco_model, stock_model, images):
    x = images[:1]
    by_depth = {k: count_gflops(eco_model, x, num_encoder_layers=k) for k in eco_model.config.exit_layers}
    layer = by_depth[2].encoder_layers[0]
    config = eco_model.config
    assert layer == pytest.approx(deformable_layer_gflops(
        num_tokens=deformable_encoder_tokens(height=96, width=128), d_model=config.feature_size,
        num_heads=config.num_attention_heads, ffn_dim=config.encoder_feedforward_dim,
    ), rel=1e-12)
    for k, g in by_depth.items():
        assert g.encoder == pytest.approx(k * layer, rel=1e-12) and g.gate == 0
        assert g.total - by_depth[2].total == pytest.approx((k - 2) * layer, rel=1e-9)
    full = by_depth[eco_model.config.max_exit]
    assert full.total == pytest.approx(count_gflops(stock_model, x).total, rel=1e-12)  # same modules as stock


def test_per_image_depths_equal_solo_counts(eco_model, images):
    depths = torch.tensor([2, 4, 3])
    batch = count_gflops(eco_model, images, num_encoder_layers=depths)
    assert batch.depths == (2, 4, 3)
    solo = [count_gflops(eco_model, images[i : i + 1], num_encoder_layers=int(d)) for i, d in enumerate(depths)]
    assert batch.per_image == pytest.approx([s.total for s in solo], rel=1e-12)
    assert sum(batch.per_image) == pytest.approx(batch.total, rel=1e-12)
    assert batch.encoder == pytest.approx(sum(s.encoder for s in solo), rel=1e-12)


def test_gate_is_counted_when_it_runs(eco_model, images):
    g = count_gflops(eco_model, images[:2], num_encoder_layers=3, output_gate_logits=True)
    config = eco_model.config
    assert g.gate == pytest.approx(to_gflops(2 * 2 * config.feature_size * config.num_exits))  # Linear, 2 images
    assert not math.isclose(g.gate, 0.0)


def test_sampling_core_does_not_change_gflops(eco_model, images):
    """The deformable sampling is not counted, whichever core computes it (grid_sample or the fused CPU core)."""
    attentions = [m for m in eco_model.modules() if hasattr(m, "implementation")]
    if not attentions:
        pytest.skip("this ecom2f build has a single deformable-attention core")
    counts = {}
    for core in ("reference", "embedding_bag"):
        for module in attentions:
            module.implementation = core
        counts[core] = count_gflops(eco_model, images[:1], num_encoder_layers=3)
    for module in attentions:
        module.implementation = eco_model.config.deformable_attention_implementation
    assert counts["reference"] == counts["embedding_bag"]
