"""Bad input to the model forward gives a `ValueError` naming `pixel_values`, not an error from deep
inside torch; the smallest runnable size is derived from the config (backbone stride, GroupNorm groups)."""

from __future__ import annotations

import pytest
import torch
from transformers import ResNetConfig

from helpers.models import tiny_eco_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_input_checks import backbone_stage_strides, coarsest_backbone_stride


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()


def test_empty_batch(model):
    with pytest.raises(ValueError, match="pixel_values holds 0 images"):
        model(pixel_values=torch.zeros(0, 3, 64, 64))


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count(model, channels):
    with pytest.raises(ValueError, match=f"pixel_values has {channels} channels, the backbone expects 3"):
        model(pixel_values=torch.zeros(1, channels, 64, 64))


def test_not_a_batch(model):
    with pytest.raises(ValueError, match="pixel_values must be a 4-D tensor"):
        model(pixel_values=torch.zeros(3, 64, 64))


def test_minimum_size_is_derived_from_the_config():
    """Tiny Swin: patch 4, 4 stages -> stride 32 at stage4; a ResNet-style config: 4 * 2**3."""
    assert coarsest_backbone_stride(tiny_eco_config()) == 32
    assert backbone_stage_strides(tiny_eco_config().backbone_config)["stage2"] == 8
    resnet = ResNetConfig(depths=[1, 1, 1], hidden_sizes=[8, 16, 32], out_features=["stage1", "stage2", "stage3"])
    assert backbone_stage_strides(resnet) == {"stage1": 4, "stage2": 8, "stage3": 16}


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (32, 32), (32, 8)])
def test_too_small_images_are_refused_by_name(model, size):
    """The tiny config's pixel decoder has GroupNorm(32 groups, 32 channels) on the stride-32 map: a 1x1 map holds one
    value per group, which torch refuses from deep inside ("Expected more than 1 value per channel")."""
    with pytest.raises(ValueError, match=rf"pixel_values has images of {size[0]}x{size[1]} pixels, too small.*"
                                         r"stride 32.*taller or wider than 32 pixels"):
        model(pixel_values=torch.zeros(1, 3, *size))


@pytest.mark.parametrize("size", [(33, 33), (32, 64), (8, 200)])
def test_images_just_above_the_bound_run(model, size):
    with torch.no_grad():
        outputs = model(pixel_values=torch.randn(1, 3, *size))
    assert torch.isfinite(outputs.masks_queries_logits).all()


def test_bound_follows_the_group_size():
    """With 2 channels per GroupNorm group (feature_size 64, 32 groups) a 1x1 coarsest map is enough."""
    torch.manual_seed(0)
    wide = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(feature_size=64, mask_feature_size=64)).eval()
    with torch.no_grad():
        outputs = wide(pixel_values=torch.randn(1, 3, 32, 32))
    assert torch.isfinite(outputs.masks_queries_logits).all()


def test_detector_bound_counts_its_extra_level():
    """Tiny Deformable DETR: ResNet stage4 (stride 32) plus one stride-2 extra level -> stride 64; 64x64 fails
    in torch's GroupNorm, 65x65 runs."""
    from helpers.detection import tiny_eco_detector

    detector = tiny_eco_detector().eval()
    with pytest.raises(ValueError, match=r"images of 64x64 pixels, too small.*stride 64"):
        detector(pixel_values=torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="pixel_values holds 0 images"):
        detector(pixel_values=torch.zeros(0, 3, 96, 96))
    with torch.no_grad():
        assert torch.isfinite(detector(pixel_values=torch.randn(1, 3, 65, 65)).logits).all()
