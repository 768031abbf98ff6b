"""`import modeling_ecom2f` registers every model class with the transformers Auto classes, the base models with
`AutoModel` included, so `AutoModel.from_pretrained(folder)` on a saved checkpoint gives our base model."""

from __future__ import annotations


import pytest
import torch
from transformers import AutoConfig, AutoModel

from helpers.detection import tiny_eco_detector  # noqa: E402
from helpers.models import tiny_eco_config  # noqa: E402

from modeling_ecom2f import (  # noqa: E402
    EcoDeformableDetrConfig,
    EcoDeformableDetrModel,
    EcoMask2FormerConfig,
    EcoMask2FormerForUniversalSegmentation,
    EcoMask2FormerModel,
)


def _eco_mask2former():
    torch.manual_seed(0)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()


@pytest.mark.parametrize("make,config_class,base_class", [
    (_eco_mask2former, EcoMask2FormerConfig, EcoMask2FormerModel),
    (tiny_eco_detector, EcoDeformableDetrConfig, EcoDeformableDetrModel),
], ids=["eco_mask2former", "eco_deformable_detr"])
def test_auto_model_loads_our_base_model(make, config_class, base_class, tmp_path):
    full = make()
    full.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), config_class)
    model = AutoModel.from_pretrained(tmp_path)
    assert type(model) is base_class
    # The base model's weights are the task model's `model.` weights.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, full.model.state_dict()[name]), name


def test_auto_model_from_config_builds_our_base_classes():
    assert type(AutoModel.from_config(tiny_eco_config())) is EcoMask2FormerModel
