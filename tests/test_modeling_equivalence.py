"""Stock Mask2Former checkpoints load unchanged and give the stock outputs at full depth."""

from __future__ import annotations

import pytest
import torch
from transformers import Mask2FormerForUniversalSegmentation
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from helpers.models import tiny_stock_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

GATE_KEYS = {"model.pixel_level_module.decoder.gate.classifier.weight", "model.pixel_level_module.decoder.gate.classifier.bias"}


@pytest.fixture(scope="module")
def stock_and_eco(tmp_path_factory):
    torch.manual_seed(0)
    stock = Mask2FormerForUniversalSegmentation(tiny_stock_config()).eval()
    folder = tmp_path_factory.mktemp("stock")
    stock.save_pretrained(folder)
    eco, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(folder, output_loading_info=True)
    return stock, eco.eval(), info


def test_only_gate_weights_are_missing(stock_and_eco):
    stock, eco, info = stock_and_eco
    assert set(info["missing_keys"]) == GATE_KEYS
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    stock_state, eco_state = stock.state_dict(), eco.state_dict()
    assert set(eco_state) - set(stock_state) == GATE_KEYS
    for key, value in stock_state.items():
        torch.testing.assert_close(eco_state[key], value, rtol=0, atol=0, msg=key)


def test_full_depth_outputs_equal_stock(stock_and_eco):
    stock, eco, _ = stock_and_eco
    pixel_values = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = stock(pixel_values=pixel_values, output_hidden_states=True)
        got = eco(pixel_values=pixel_values, output_hidden_states=True)
        explicit = eco(pixel_values=pixel_values, num_encoder_layers=eco.config.encoder_layers)
    for name in ("class_queries_logits", "masks_queries_logits", "pixel_decoder_last_hidden_state"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-5, msg=name)
        torch.testing.assert_close(getattr(explicit, name), getattr(expected, name), rtol=0, atol=1e-5, msg=name)
    for a, b in zip(got.pixel_decoder_hidden_states, expected.pixel_decoder_hidden_states):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert got.encoder_layers_used.tolist() == [4, 4]
    assert got.gate_logits is None


def _same_segments(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["segmentation"], y["segmentation"])
        assert [(s["id"], s["label_id"]) for s in x["segments_info"]] == [(s["id"], s["label_id"]) for s in y["segments_info"]]
        for s, t in zip(x["segments_info"], y["segments_info"]):
            assert abs(s["score"] - t["score"]) < 1e-5


def test_post_processing_equal_stock(stock_and_eco):
    stock, eco, _ = stock_and_eco
    processor = Mask2FormerImageProcessorPil(size={"height": 96, "width": 128})
    pixel_values = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, got = stock(pixel_values=pixel_values), eco(pixel_values=pixel_values)
    sizes = [(96, 128), (60, 80)]
    _same_segments(
        processor.post_process_panoptic_segmentation(expected, threshold=0.0, target_sizes=sizes),
        processor.post_process_panoptic_segmentation(got, threshold=0.0, target_sizes=sizes),
    )
    _same_segments(
        processor.post_process_instance_segmentation(expected, threshold=0.0, target_sizes=sizes),
        processor.post_process_instance_segmentation(got, threshold=0.0, target_sizes=sizes),
    )
    for a, b in zip(
        processor.post_process_semantic_segmentation(expected, target_sizes=sizes),
        processor.post_process_semantic_segmentation(got, target_sizes=sizes),
    ):
        assert torch.equal(a, b)
