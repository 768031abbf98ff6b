"""Detection GFLOPs: parts sum to the total, stock and ecom2f agree at full depth, exits cost less, per-image split."""

from __future__ import annotations

import pytest
import torch
from transformers import DeformableDetrForObjectDetection

from helpers.detection import detection_pixels, tiny_eco_detector, tiny_stock_detr_config
from modeling_ecom2f.ecom2f_detr_flops import count_detection_gflops, detection_gflops_per_exit


@pytest.fixture(scope="module")
def models():
    eco = tiny_eco_detector()
    stock = DeformableDetrForObjectDetection(tiny_stock_detr_config()).eval()
    stock.load_state_dict({k: v for k, v in eco.state_dict().items() if not k.startswith("model.gate")})
    return eco, stock


def test_full_depth_equals_stock_and_parts_sum(models):
    eco, stock = models
    pixel_values = detection_pixels(1, 64, 96)
    ours, theirs = count_detection_gflops(eco, pixel_values), count_detection_gflops(stock, pixel_values)
    assert ours.total == pytest.approx(theirs.total, rel=1e-9)
    assert ours.encoder_layers == pytest.approx(theirs.encoder_layers, rel=1e-9)
    for g in (ours, theirs):
        parts = g.backbone + g.input_projections + g.encoder + g.gate + g.token_recalibration + g.decoder + g.other
        assert parts == pytest.approx(g.total, rel=1e-12)
        assert g.backbone > 0 and g.decoder > 0 and all(f > 0 for f in g.encoder_layers)
    assert ours.gate == 0.0  # the gate does not run when the depth is fixed / the gate is untrained
    # Counting switches requires_grad off and restores it (the stock backbone's first stage stays frozen).
    assert [n for n, p in eco.named_parameters() if not p.requires_grad] == [
        n for n, p in tiny_eco_detector().named_parameters() if not p.requires_grad]


def test_exits_and_per_image_split(models):
    eco, _ = models
    pixel_values = detection_pixels(2, 64, 96)
    per_exit = detection_gflops_per_exit(eco, pixel_values[:1])
    totals = [per_exit[d].total for d in eco.config.exit_layers]
    assert totals == sorted(totals) and totals[0] < totals[-1]
    assert per_exit[2].encoder_layers[2:] == (0.0, 0.0)
    mixed = count_detection_gflops(eco, pixel_values, num_encoder_layers=torch.tensor([2, 4]))
    assert mixed.per_image == pytest.approx((per_exit[2].total, per_exit[4].total), rel=1e-6)
    assert sum(mixed.per_image) == pytest.approx(mixed.total, rel=1e-9)


def test_token_scaling_cuts_encoder_flops():
    plain = tiny_eco_detector()
    staged = tiny_eco_detector(token_scaling_layers=[1, 1, 1, 1], token_recalibration=True)
    pixel_values = detection_pixels(1, 64, 96)
    a, b = count_detection_gflops(plain, pixel_values), count_detection_gflops(staged, pixel_values)
    assert b.encoder < a.encoder and b.token_recalibration > 0
