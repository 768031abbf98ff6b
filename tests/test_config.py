"""EcoMask2FormerConfig: defaults, validation errors naming the field (at construction, in `validate_architecture`
after a field changed, in `validate()` and `save_pretrained`, as transformers' configs), and JSON round trips."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, Mask2FormerConfig

from helpers.models import tiny_eco_config, tiny_kwargs
from modeling_ecom2f import EcoDeformableDetrConfig, EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.recipe.modeling import gate_module, rebuild_gate


def test_defaults_follow_the_authors_code():
    config = EcoMask2FormerConfig()
    assert config.model_type == "eco_mask2former"
    assert isinstance(config, Mask2FormerConfig)
    assert config.exit_layers == [2, 3, 4, 5, 6]  # exits 2..6 of a 6-layer encoder
    assert config.exit_loss_weighting == "linear"
    assert config.exit_loss_weight(4) == 4.0
    assert config.gate_hidden_size is None and config.gate_trained is False
    assert EcoMask2FormerConfig(encoder_layers=3).exit_layers == [2, 3]
    assert EcoMask2FormerConfig(encoder_layers=1).exit_layers == [1]
    assert EcoMask2FormerConfig(exit_layers=[1, 2, 3, 4, 5, 6]).num_exits == 6
    assert EcoMask2FormerConfig(exit_loss_weighting="uniform").exit_loss_weight(5) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exit_layers": [2, 7]}, "exit_layers"),
        ({"exit_layers": [0, 2]}, "exit_layers"),
        ({"exit_layers": []}, "exit_layers"),
        ({"exit_layers": [4, 3]}, "exit_layers"),
        ({"exit_loss_weighting": "quadratic"}, "exit_loss_weighting"),
        ({"gate_hidden_size": 0}, "gate_hidden_size"),
        ({"gate_input_level": 3}, "gate_input_level"),
        ({"encoder_n_points": 0}, "encoder_n_points"),
        ({"deformable_attention_implementation": "cuda"}, "deformable_attention_implementation"),
        ({"token_scaling_layers": [3, 3]}, "token_scaling_layers"),  # stage count != levels
        ({"token_scaling_layers": [3, 3, 3]}, "token_scaling_layers"),  # sum != encoder_layers (6)
        ({"token_scaling_layers": [-1, 1, 6]}, "token_scaling_layers"),
        ({"token_scaling_layers": [3, 3, 0]}, "token_scaling_layers"),  # last stage empty
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EcoMask2FormerConfig(**kwargs)


def test_token_scaling_levels_per_layer():
    assert EcoMask2FormerConfig().encoder_levels_per_layer == [3] * 6
    config = EcoMask2FormerConfig(encoder_layers=9, token_scaling_layers=[3, 3, 3])
    assert config.encoder_levels_per_layer == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert config.exit_layers == list(range(2, 10))
    assert EcoMask2FormerConfig(token_scaling_layers=[0, 0, 6]).encoder_levels_per_layer == [3] * 6


def test_round_trip_and_auto_config(tmp_path):
    config = tiny_eco_config(exit_layers=[1, 3, 4], exit_loss_weighting="uniform", gate_hidden_size=8)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "eco_mask2former" and saved["exit_layers"] == [1, 3, 4]
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is EcoMask2FormerConfig
    assert (loaded.exit_layers, loaded.exit_loss_weighting, loaded.gate_hidden_size) == ([1, 3, 4], "uniform", 8)


def test_stock_config_loads_into_eco_config(tmp_path):
    Mask2FormerConfig(**tiny_kwargs()).save_pretrained(tmp_path)
    loaded = EcoMask2FormerConfig.from_pretrained(tmp_path)
    assert loaded.model_type == "eco_mask2former"
    assert loaded.exit_layers == [2, 3, 4] and loaded.encoder_layers == 4


@pytest.mark.parametrize(
    ("make", "field", "bad"),
    [
        (EcoMask2FormerConfig, "gate_pooling", "max"),
        (EcoMask2FormerConfig, "exit_layers", [2, 9]),
        (EcoMask2FormerConfig, "gate_input_level", 3),
        (EcoMask2FormerConfig, "gate_beta", float("nan")),
        (EcoMask2FormerConfig, "token_scaling_layers", [3, 3]),
        (EcoDeformableDetrConfig, "exit_layers", [0, 2]),
        (EcoDeformableDetrConfig, "two_stage", True),
        (EcoDeformableDetrConfig, "gate_objective", "ranking"),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value),
)
def test_a_field_changed_after_construction_fails_validation_and_save(make, field, bad, tmp_path):
    config = make()
    config.validate()  # valid as built
    setattr(config, field, bad)
    with pytest.raises(ValueError, match=field):
        config.validate_architecture()
    # transformers' strict-dataclass entry point, which `save_pretrained` runs before writing, wraps the ValueError.
    for check in (config.validate, lambda: config.save_pretrained(tmp_path)):
        with pytest.raises(StrictDataclassClassValidationError, match=field) as info:
            check()
        assert isinstance(info.value.__cause__, ValueError) and field in str(info.value.__cause__)
    assert not (tmp_path / "config.json").exists()


def test_a_model_with_a_bad_config_field_is_not_saved(tmp_path):
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config())
    model.config.exit_layers = [1, 2, 5]  # the tiny encoder has 4 layers
    with pytest.raises(StrictDataclassClassValidationError, match="exit_layers"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_the_recipe_gate_rebuild_validates_the_changed_fields():
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config())
    gate = rebuild_gate(model, hidden_size=8, objective="utility", pooling="mean_std")
    assert gate_module(model) is gate
    assert (model.config.gate_hidden_size, model.config.gate_objective, model.config.gate_pooling) == (
        8, "utility", "mean_std")
    with pytest.raises(ValueError, match="gate_hidden_size"):
        rebuild_gate(model, hidden_size=0, objective="utility", pooling="mean")
    with pytest.raises(ValueError, match="gate_objective"):
        rebuild_gate(model, hidden_size=None, objective="ranking", pooling="mean")
    assert gate_module(model) is gate  # no gate was built for the bad options
