"""Output dataclasses of EcoDeformableDetr: the stock Deformable DETR outputs plus the per-image depth decision."""

from __future__ import annotations

from dataclasses import dataclass

from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrModelOutput,
    DeformableDetrObjectDetectionOutput,
)

from .ecom2f_early_exit import EcoExitLossOutputFields, EcoExitOutputFields


@dataclass
class EcoDeformableDetrModelOutput(EcoExitOutputFields, DeformableDetrModelOutput):
    r"""
    Stock [`DeformableDetrModelOutput`] (`last_hidden_state` `(batch_size, num_queries, d_model)`,
    `intermediate_hidden_states` `(batch_size, decoder_layers, num_queries, d_model)`, `encoder_last_hidden_state`
    `(batch_size, tokens, d_model)`, ...) plus the depth decision of [`EcoExitOutputFields`] (`encoder_layers_used`,
    `gate_logits`).

    `encoder_hidden_states` and `encoder_attentions` are always `None` (the early-exit encoder does not record them).
    """


@dataclass
class EcoDeformableDetrObjectDetectionOutput(EcoExitLossOutputFields, DeformableDetrObjectDetectionOutput):
    r"""
    Stock [`DeformableDetrObjectDetectionOutput`] (`logits` `(batch_size, num_queries, num_labels)`, `pred_boxes`
    `(batch_size, num_queries, 4)` normalised `(center_x, center_y, width, height)`, ...) plus
    [`EcoExitLossOutputFields`] (`encoder_layers_used`, `gate_logits`, `gate_loss`).
    """


__all__ = ["EcoDeformableDetrModelOutput", "EcoDeformableDetrObjectDetectionOutput"]
