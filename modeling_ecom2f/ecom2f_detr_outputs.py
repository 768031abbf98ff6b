"""Output dataclasses of EcoDeformableDetr: the stock Deformable DETR outputs plus the per-image depth decision."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrModelOutput,
    DeformableDetrObjectDetectionOutput,
)


@dataclass
class EcoDeformableDetrModelOutput(DeformableDetrModelOutput):
    r"""
    Stock [`DeformableDetrModelOutput`] (`last_hidden_state` `(batch_size, num_queries, d_model)`,
    `intermediate_hidden_states` `(batch_size, decoder_layers, num_queries, d_model)`, `encoder_last_hidden_state`
    `(batch_size, tokens, d_model)`, ...) plus:

    encoder_layers_used (`torch.LongTensor` of shape `(batch_size,)`):
        Number of deformable encoder layers each image went through.
    gate_logits (`torch.FloatTensor` of shape `(batch_size, num_exits)`, *optional*):
        Gate scores over `config.exit_layers`; `None` when the gate did not run.

    `encoder_hidden_states` and `encoder_attentions` are always `None` (the early-exit encoder does not record them).
    """

    encoder_layers_used: torch.Tensor | None = None
    gate_logits: torch.Tensor | None = None


@dataclass
class EcoDeformableDetrObjectDetectionOutput(DeformableDetrObjectDetectionOutput):
    r"""
    Stock [`DeformableDetrObjectDetectionOutput`] (`logits` `(batch_size, num_queries, num_labels)`, `pred_boxes`
    `(batch_size, num_queries, 4)` normalised `(center_x, center_y, width, height)`, ...) plus:

    encoder_layers_used (`torch.LongTensor` of shape `(batch_size,)`):
        Number of deformable encoder layers each image went through.
    gate_logits (`torch.FloatTensor` of shape `(batch_size, num_exits)`, *optional*):
        Gate scores over `config.exit_layers`; `None` when the gate did not run.
    gate_loss (`torch.FloatTensor`, *optional*):
        Cross-entropy of the gate against `exit_labels`, when those were given (ECO-M2F step 3).
    """

    encoder_layers_used: torch.Tensor | None = None
    gate_logits: torch.Tensor | None = None
    gate_loss: torch.Tensor | None = None


__all__ = ["EcoDeformableDetrModelOutput", "EcoDeformableDetrObjectDetectionOutput"]
