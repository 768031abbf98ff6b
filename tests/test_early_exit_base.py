"""The early-exit base both models share (ECO-M2F, arXiv 2404.15244): task-neutral module names with the old names
kept, one gate access and freezing rule, one loss combination, one config field set, one encoder forward."""

from __future__ import annotations

import dataclasses

import torch
from helpers.detection import tiny_eco_detector, tiny_eco_detr_config
from helpers.models import tiny_eco_config

from configuration.configuration_ecom2f import EcoEarlyExitConfigMixin
from modeling_ecom2f import (
    EcoDeformableDetrConfig,
    EcoMask2FormerConfig,
    EcoMask2FormerForUniversalSegmentation,
)
from modeling_ecom2f.ecom2f_early_exit import EcoEarlyExitMixin


def test_shared_modules_have_one_task_neutral_name():
    """The shared modules are exported under their task-neutral names only (no `EcoMask2Former*` aliases)."""
    import modeling_ecom2f
    from modeling_ecom2f import ecom2f_gate, ecom2f_msda, ecom2f_token_scaling

    assert modeling_ecom2f.EcoExitGate is ecom2f_gate.EcoExitGate
    for module, old in ((ecom2f_gate, "EcoMask2FormerGate"), (ecom2f_msda, "EcoMask2FormerMultiscaleDeformableAttention"),
                        (ecom2f_token_scaling, "EcoMask2FormerTokenRecalibration"), (modeling_ecom2f, "EcoMask2FormerGate")):
        assert not hasattr(module, old), old


def test_both_models_share_the_early_exit_base_gate_access_and_freezing():
    torch.manual_seed(0)
    segmenter = EcoMask2FormerForUniversalSegmentation(tiny_eco_config())
    detector = tiny_eco_detector()
    for model, gate in (
        (segmenter, segmenter.model.pixel_level_module.decoder.gate),
        (detector, detector.model.gate),
    ):
        assert isinstance(model, EcoEarlyExitMixin)
        assert model.exit_gate is gate and model.model.exit_gate is gate
        params = model.freeze_all_but_gate()
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        assert trainable == {id(p) for p in gate.parameters()} == {id(p) for p in params}


def test_combine_exit_losses_weights_the_task_loss_and_adds_the_gate_loss():
    detector = tiny_eco_detector(exit_layers=[1, 2])
    outputs = type("Outputs", (), {})()
    outputs.encoder_layers_used = torch.tensor([1, 2])
    outputs.gate_logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    task = torch.tensor(3.0)
    loss, gate_loss = detector.combine_exit_losses(task, num_encoder_layers=None, outputs=outputs, exit_labels=None)
    assert gate_loss is None and torch.allclose(loss, task * 1.5)  # "linear": mean depth of the images
    loss, _ = detector.combine_exit_losses(task, num_encoder_layers=2, outputs=outputs, exit_labels=None)
    assert torch.allclose(loss, task * 2)
    labels = torch.tensor([1, 2])
    loss, gate_loss = detector.combine_exit_losses(None, num_encoder_layers=2, outputs=outputs, exit_labels=labels)
    expected = torch.nn.functional.cross_entropy(outputs.gate_logits, torch.tensor([0, 1]))
    assert torch.allclose(gate_loss, expected) and loss is gate_loss


def test_both_configs_carry_the_same_early_exit_fields():
    shared = {field.name: field.default for field in dataclasses.fields(EcoEarlyExitConfigMixin)}
    for config_class in (EcoMask2FormerConfig, EcoDeformableDetrConfig):
        assert issubclass(config_class, EcoEarlyExitConfigMixin)
        fields = {field.name: field.default for field in dataclasses.fields(config_class)}
        assert {name: fields[name] for name in shared} == shared
    assert tiny_eco_detr_config(gate_pooling="mean_std").to_dict()["gate_pooling"] == "mean_std"


def test_detection_encoder_forward_exits_matches_forward():
    """The shared encoder gives the Deformable DETR encoder `forward_exits` too: one pass, each exit's tokens equal
    to a forward at that depth, also over PRO-SCALE stages (arXiv 2404.14657)."""
    encoder = tiny_eco_detector(exit_layers=[1, 2, 4], token_scaling_layers=[1, 1, 1, 1]).model.encoder.eval()
    torch.manual_seed(0)
    levels = encoder.layers[-1].self_attn.n_levels
    shapes = [(2 ** (levels + 1 - i), 2 ** (levels + 1 - i)) for i in range(levels)]  # fine to coarse
    tokens = sum(h * w for h, w in shapes)
    channels = encoder.layers[0].hidden_size
    sizes = torch.tensor([h * w for h, w in shapes])
    inputs = dict(
        inputs_embeds=torch.randn(2, tokens, channels),
        attention_mask=torch.zeros(2, tokens, dtype=torch.bool),
        position_embeddings=torch.randn(2, tokens, channels),
        spatial_shapes_list=shapes,
        level_start_index=torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]]),
        valid_ratios=torch.ones(2, levels, 2),
    )
    with torch.no_grad():
        exits = dict(encoder.forward_exits(exits=[1, 2, 4], **inputs))
        for depth in (1, 2, 4):
            torch.testing.assert_close(exits[depth], encoder(**inputs, depths=depth, max_depth=4))
        assert not torch.equal(exits[1], exits[4])
