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


@dataclass(repr=False, eq=False)
class EcoImageSizeOutputFields:
    r"""
    Where each image lies in a padded batch (see `ecom2f_size_groups`). In a batch of images of different sizes
    (a `pixel_mask` with padding), every image is computed at its own size, as alone, and the maps are padded at the
    bottom/right to the largest image's: `masks_queries_logits` with `-1e4` (no segment), the other maps with 0.

    image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`):
        Each image's unpadded `(height, width)` in `pixel_values` (its processed size).
    mask_sizes (`torch.LongTensor` of shape `(batch_size, 2)`):
        Each image's own `(height, width)` in `masks_queries_logits` (the rest is padding); the image processor's
        `post_process_*` methods crop there before resizing.
    """

    image_sizes: torch.Tensor | None = None
    mask_sizes: torch.Tensor | None = None


@dataclass
class EcoMask2FormerModelOutput(EcoImageSizeOutputFields, EcoExitOutputFields, Mask2FormerModelOutput):
    r"""
    Stock [`Mask2FormerModelOutput`] plus the depth decision of [`EcoExitOutputFields`] (`encoder_layers_used`,
    `gate_logits`) and the image areas of [`EcoImageSizeOutputFields`] (`image_sizes`, `mask_sizes`).
    """


@dataclass
class EcoMask2FormerForUniversalSegmentationOutput(
    EcoImageSizeOutputFields, EcoExitLossOutputFields, Mask2FormerForUniversalSegmentationOutput
):
    r"""
    Stock [`Mask2FormerForUniversalSegmentationOutput`] (`class_queries_logits` `(batch_size, num_queries,
    num_labels + 1)`, `masks_queries_logits` `(batch_size, num_queries, height/4, width/4)`, ...) plus
    [`EcoExitLossOutputFields`] (`encoder_layers_used`, `gate_logits`, `gate_loss`) and
    [`EcoImageSizeOutputFields`] (`image_sizes`, `mask_sizes`). In a mixed-size batch `masks_queries_logits` is
    `(batch_size, num_queries, h_max, w_max)`, the largest image's mask size, each image's own logits at the
    top-left of its row (`mask_sizes`) and `-1e4` around them.
    """
