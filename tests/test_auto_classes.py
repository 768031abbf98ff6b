"""`import modeling_ecom2f` registers every model class with the transformers Auto classes, the base models with
`AutoModel` included, so `AutoModel.from_pretrained(folder)` on a saved checkpoint gives our base model."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _detection_fixtures import tiny_eco_detector  # noqa: E402
from conftest import tiny_eco_config  # noqa: E402

from modeling_ecom2f import (  # noqa: E402
    EcoDeformableDetrConfig,
    EcoDeformableDetrModel,
    EcoMask2FormerConfig,
    EcoMask2FormerForUniversalSegmentation,
    EcoMask2FormerModel,
)


def test_auto_model_loads_the_eco_mask2former_base_model(tmp_path):
    torch.manual_seed(0)
    full = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()
    full.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EcoMask2FormerConfig)
    model = AutoModel.from_pretrained(tmp_path)
    assert type(model) is EcoMask2FormerModel
    # The base model's weights are the task model's `model.` weights.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, full.model.state_dict()[name]), name


def test_auto_model_loads_the_eco_deformable_detr_base_model(tmp_path):
    full = tiny_eco_detector()
    full.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EcoDeformableDetrConfig)
    model = AutoModel.from_pretrained(tmp_path)
    assert type(model) is EcoDeformableDetrModel
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, full.model.state_dict()[name]), name


def test_auto_model_from_config_builds_our_base_classes():
    assert type(AutoModel.from_config(tiny_eco_config())) is EcoMask2FormerModel
