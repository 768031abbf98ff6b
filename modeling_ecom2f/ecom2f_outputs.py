"""Output dataclasses of EcoMask2Former: the stock Mask2Former outputs plus the per-image depth decision."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerForUniversalSegmentationOutput,
    Mask2FormerModelOutput,
)
from transformers.utils import ModelOutput

from .ecom2f_early_exit import EcoExitLossOutputFields, EcoExitOutputFields


@dataclass
class EcoMask2FormerPixelDecoderOutput(ModelOutput):
    r"""
    mask_features (`torch.FloatTensor` of shape `(batch_size, mask_feature_size, height/4, width/4)`):
        Per-pixel embeddings at 1/4 resolution.
    multi_scale_features (`tuple(torch.FloatTensor)`):
        Encoder outputs at 1/32, 1/16 and 1/8 resolution, each `(batch_size, feature_size, h_l, w_l)`.
    encoder_layers_used (`torch.LongTensor` of shape `(batch_size,)`):
        Number of deformable encoder layers each image went through.
    gate_logits (`torch.FloatTensor` of shape `(batch_size, num_exits)`, *optional*):
        Gate scores over `config.exit_layers`; `None` when the gate did not run.
    """

    mask_features: torch.Tensor | None = None
    multi_scale_features: tuple[torch.Tensor, ...] | None = None
    encoder_layers_used: torch.Tensor | None = None
    gate_logits: torch.Tensor | None = None


@dataclass
class EcoMask2FormerModelOutput(EcoExitOutputFields, Mask2FormerModelOutput):
    r"""
    Stock [`Mask2FormerModelOutput`] plus the depth decision of [`EcoExitOutputFields`] (`encoder_layers_used`,
    `gate_logits`).
    """


@dataclass
class EcoMask2FormerForUniversalSegmentationOutput(EcoExitLossOutputFields, Mask2FormerForUniversalSegmentationOutput):
    r"""
    Stock [`Mask2FormerForUniversalSegmentationOutput`] (`class_queries_logits` `(batch_size, num_queries,
    num_labels + 1)`, `masks_queries_logits` `(batch_size, num_queries, height/4, width/4)`, ...) plus
    [`EcoExitLossOutputFields`] (`encoder_layers_used`, `gate_logits`, `gate_loss`).
    """
