"""The deformable encoder with early exit and (optionally) PRO-SCALE token-length stages.

Stock Mask2Former runs every encoder layer over the tokens of all three levels. Here layer `i` attends to the first
`config.encoder_levels_per_layer[i]` levels only (coarse first: 1/32, 1/16, 1/8), and each image may stop after
its own number of layers. Tokens of a level that has not entered yet stay as they came in (its input projection),
which is what the FPN and decoder receive when an image exits before that level enters.

`EcoEarlyExitEncoder` (the forward and `forward_exits`) and `run_early_exit_layers` (the per-image, staged layer
loop itself) are shared with the Deformable DETR encoder (`ecom2f_detr_encoder`), whose levels run fine to coarse in
the token axis: each layer gets a contiguous level span.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderLayer,
    Mask2FormerPixelDecoderEncoderOnly,
)

from .ecom2f_msda import EcoMultiscaleDeformableAttention


def encoder_self_attention(
    config, *, embed_dim: int, num_heads: int, n_levels: int
) -> EcoMultiscaleDeformableAttention:
    """The deformable self-attention of an ecom2f encoder layer over `n_levels` levels, with the config's sampling
    points per head and level (`encoder_n_points`) and sampling core (`deformable_attention_implementation`)."""
    return EcoMultiscaleDeformableAttention(
        embed_dim=embed_dim,
        num_heads=num_heads,
        n_levels=n_levels,
        n_points=config.encoder_n_points,
        implementation=config.deformable_attention_implementation,
    )


class EcoMask2FormerPixelDecoderEncoderLayer(Mask2FormerPixelDecoderEncoderLayer):
    """The stock post-norm deformable encoder layer with its level and point counts and its sampling core taken
    from arguments and config.

    With `n_levels=3` and `n_points=4` it is the stock layer (same parameter names and shapes).
    """

    def __init__(self, config, *, n_levels: int) -> None:
        nn.Module.__init__(self)
        self.embed_dim = config.feature_size
        self.self_attn = encoder_self_attention(
            config, embed_dim=self.embed_dim, num_heads=config.num_attention_heads, n_levels=n_levels
        )
        self.self_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.dropout = config.dropout
        self.activation_fn = nn.functional.relu
        self.activation_dropout = config.dropout
        self.fc1 = nn.Linear(self.embed_dim, config.encoder_feedforward_dim)
        self.fc2 = nn.Linear(config.encoder_feedforward_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)


class EcoEarlyExitEncoder(nn.Module):
    """The forward shared by every ecom2f deformable encoder: per-image exits (ECO-M2F, arXiv 2404.15244) over
    PRO-SCALE token-length stages (arXiv 2404.14657), through `run_early_exit_layers`.

    A subclass builds `self.layers` (the stock `layers.{i}` keys) and `self.level_spans` (per layer, the contiguous
    `(first, end)` levels of the token axis it attends to), and says how its tokens enter (`_encoder_inputs`).
    With one depth for the batch the encoder runs `layers[:depth]`; without token scaling that is exactly the stock
    computation. With one depth per image, layer `i` runs only on the images whose depth exceeds `i` (gathered,
    updated, scattered back), so an image that exited is not computed further and gets what it gets alone.
    """

    layers: nn.ModuleList
    level_spans: list[tuple[int, int]]

    def _encoder_inputs(
        self, inputs_embeds: torch.Tensor, spatial_shapes_list: list[tuple[int, int]], valid_ratios: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens the first layer sees and the reference points `(batch, tokens, levels, 2)`."""
        raise NotImplementedError

    def forward(
        self,
        *,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_embeddings: torch.Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor,
        depths: int | torch.Tensor,
        max_depth: int,
    ) -> torch.Tensor:
        """Run the encoder.

        Args:
            inputs_embeds: flattened multi-scale tokens `(batch, tokens, channels)`, levels in the model's order.
            attention_mask: padding mask `(batch, tokens)`, `True` = padding.
            position_embeddings: position + level embeddings `(batch, tokens, channels)`.
            spatial_shapes_list: `(height, width)` of each level, in token-axis order.
            level_start_index: start of each level in the token axis `(levels,)`.
            valid_ratios: `(batch, levels, 2)`.
            depths: one depth for the batch (`int`) or one per image (LongTensor `(batch,)`).
            max_depth: the deepest allowed exit; the per-image loop stops there.

        Returns:
            The encoded tokens `(batch, tokens, channels)`; tokens of levels that had not entered at an image's exit
            are returned as they came in.
        """
        hidden_states, reference_points = self._encoder_inputs(inputs_embeds, spatial_shapes_list, valid_ratios)
        return run_early_exit_layers(
            self.layers,
            level_spans=self.level_spans,
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            depths=depths,
            max_depth=max_depth,
        )

    def forward_exits(self, *, exits: list[int], **inputs) -> Iterator[tuple[int, torch.Tensor]]:
        """Run the layers once up to the deepest of `exits` and yield `(depth, tokens)` after each exit in `exits`
        (increasing). `inputs` are `forward`'s keyword arguments without `depths` and `max_depth`. The tokens at depth
        `k` are those of `forward(..., depths=k)`: the same layers on the same batch.
        """
        exits = sorted(set(int(k) for k in exits))
        bad = [k for k in exits if not 1 <= k <= len(self.layers)]
        if not exits or bad:
            raise ValueError(f"exits must be a non-empty list of depths in [1, {len(self.layers)}], got {exits}")
        hidden_states, reference_points = self._encoder_inputs(
            inputs.pop("inputs_embeds"), inputs["spatial_shapes_list"], inputs.pop("valid_ratios")
        )
        done = 0
        for depth in exits:
            hidden_states = run_early_exit_layers(
                self.layers[done:depth],
                level_spans=self.level_spans[done:depth],
                hidden_states=hidden_states,
                reference_points=reference_points,
                depths=depth - done,
                max_depth=depth - done,
                **inputs,
            )
            done = depth
            yield depth, hidden_states


class EcoMask2FormerPixelDecoderEncoder(EcoEarlyExitEncoder, Mask2FormerPixelDecoderEncoderOnly):
    """Mask2Former's deformable encoder (`layers.{i}`, the stock state-dict keys) with per-image exits and
    token-length stages; its levels run coarse to fine in the token axis, so layer `i` sees the first
    `config.encoder_levels_per_layer[i]` levels.
    """

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.dropout = config.dropout
        self.levels_per_layer = list(config.encoder_levels_per_layer)
        self.level_spans = [(0, n) for n in self.levels_per_layer]  # coarse levels come first in the token axis
        self.layers = nn.ModuleList(
            [EcoMask2FormerPixelDecoderEncoderLayer(config, n_levels=n) for n in self.levels_per_layer]
        )

    def _encoder_inputs(
        self, inputs_embeds: torch.Tensor, spatial_shapes_list: list[tuple[int, int]], valid_ratios: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stock encoder takes its tokens as they come (no input dropout)."""
        return inputs_embeds, self.get_reference_points(spatial_shapes_list, valid_ratios, device=inputs_embeds.device)


def take_tokens(tensor: torch.Tensor, images: torch.Tensor | None, start: int, end: int) -> torch.Tensor:
    """Rows `images` (all when `None`) and tokens `start:end` of a `(batch, tokens, ...)` tensor."""
    if images is not None:
        tensor = tensor.index_select(0, images)
    return tensor if start == 0 and end == tensor.shape[1] else tensor[:, start:end]


def put_tokens(
    hidden_states: torch.Tensor, updated: torch.Tensor, images: torch.Tensor | None, start: int, end: int
) -> torch.Tensor:
    """Write `updated` back into rows `images` (all when `None`) and tokens `start:end` of `hidden_states`."""
    if start == 0 and end == hidden_states.shape[1]:
        return updated if images is None else hidden_states.index_copy(0, images, updated)
    middle = hidden_states[:, start:end]
    middle = updated if images is None else middle.index_copy(0, images, updated)
    parts = [hidden_states[:, :start], middle, hidden_states[:, end:]]
    return torch.cat([part for part in parts if part.shape[1] > 0], dim=1)


def run_early_exit_layers(
    layers: nn.ModuleList,
    *,
    level_spans: list[tuple[int, int]],
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor,
    position_embeddings: torch.Tensor,
    reference_points: torch.Tensor,
    spatial_shapes_list: list[tuple[int, int]],
    level_start_index: torch.Tensor,
    depths: int | torch.Tensor,
    max_depth: int,
) -> torch.Tensor:
    """The staged, per-image early-exit loop shared by every ecom2f deformable encoder (Mask2Former, Deformable DETR).

    Layer `i` attends to the contiguous levels `level_spans[i] = (first, last + 1)` of the token axis (all levels
    without token scaling); the tokens of the other levels pass through unchanged. With one depth for the batch
    (`int`) it runs `layers[:depth]` on every image; with one depth per image (LongTensor `(batch,)`) layer `i` runs
    only on the images whose depth exceeds `i` (gathered, updated, scattered back), up to `max_depth` layers.

    Each layer is called as `layer(hidden_states, attention_mask, position_embeddings=..., reference_points=...,
    spatial_shapes_list=..., level_start_index=...)` and returns a tuple whose first entry is the updated tokens.

    Args:
        layers: the encoder layers; layer `i` is built for `last - first` levels of `level_spans[i]`.
        level_spans: per layer, the `(first, end)` level range it attends to.
        hidden_states: flattened tokens `(batch, tokens, channels)`, levels in `spatial_shapes_list` order.
        attention_mask: `(batch, tokens)`, `True` on padding.
        position_embeddings: `(batch, tokens, channels)`.
        reference_points: `(batch, tokens, levels, 2)`.
        spatial_shapes_list: `(height, width)` of each level.
        level_start_index: `(levels,)` start of each level in the token axis.
        depths: one depth (`int`) or one per image (LongTensor `(batch,)`).
        max_depth: the deepest allowed exit.

    Returns:
        The encoded tokens `(batch, tokens, channels)`.
    """
    # Token offset of every level boundary (Python ints: no tensor iteration, compile friendly).
    level_sizes = [h * w for h, w in spatial_shapes_list]
    offsets = [sum(level_sizes[:n]) for n in range(len(level_sizes) + 1)]
    per_image = not isinstance(depths, int)
    num_layers = max_depth if per_image else depths
    for index, layer in enumerate(layers[:num_layers]):
        first, end = level_spans[index]
        start_token, end_token = offsets[first], offsets[end]
        images = (depths > index).nonzero().squeeze(1) if per_image else None  # (A,) images still inside
        starts = level_start_index[first:end]
        updated = layer(
            take_tokens(hidden_states, images, start_token, end_token),
            take_tokens(attention_mask, images, start_token, end_token),
            position_embeddings=take_tokens(position_embeddings, images, start_token, end_token),
            reference_points=take_tokens(reference_points, images, start_token, end_token)[:, :, first:end],
            spatial_shapes_list=spatial_shapes_list[first:end],
            level_start_index=starts if first == 0 else starts - starts[0],
        )[0]  # (A or B, tokens of the span, C)
        hidden_states = put_tokens(hidden_states, updated, images, start_token, end_token)
    return hidden_states
