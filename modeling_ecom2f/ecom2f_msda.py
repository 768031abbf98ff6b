"""Multi-scale deformable attention with a choice of sampling core.

`reference` is transformers' pure-PyTorch core (one `grid_sample` per level). `embedding_bag` computes the same sum
in one pass over all levels: the four bilinear corners of every sampling point become row indices into the value
table and their bilinear x attention weights become `per_sample_weights` of `F.embedding_bag(mode="sum")`, so the
weighted gather-and-sum runs in one fused kernel without materialising the sampled values. Zero padding outside a
level (grid_sample's `padding_mode="zeros"`) is a zero weight. `auto` picks `embedding_bag` on CPU (measured faster
there, see benchmarks/) and the reference elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
    multi_scale_deformable_attention,
)

MSDA_IMPLEMENTATIONS = ("auto", "reference", "embedding_bag")


def multi_scale_deformable_attention_embedding_bag(
    value: torch.Tensor,
    spatial_shapes_list: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable attention core, equal to the reference up to float rounding.

    Args:
        value: `(batch, tokens, heads, head_dim)`, levels concatenated in `spatial_shapes_list` order.
        spatial_shapes_list: `(height, width)` of each level.
        sampling_locations: `(batch, queries, heads, levels, points, 2)`, normalised `(x, y)` in [0, 1].
        attention_weights: `(batch, queries, heads, levels, points)`.

    Returns:
        `(batch, queries, heads * head_dim)`.
    """
    batch, tokens, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    device, dtype = sampling_locations.device, sampling_locations.dtype
    table = value.transpose(1, 2).reshape(batch * heads * tokens, head_dim)  # rows ordered (b, h, token)

    heights = torch.tensor([h for h, _ in spatial_shapes_list], device=device).view(1, 1, 1, levels, 1)
    widths = torch.tensor([w for _, w in spatial_shapes_list], device=device).view(1, 1, 1, levels, 1)
    starts = [0]
    for h, w in spatial_shapes_list[:-1]:
        starts.append(starts[-1] + h * w)
    level_start = torch.tensor(starts, device=device).view(1, 1, 1, levels, 1)
    # grid_sample with align_corners=False: pixel coordinate = normalised * size - 0.5.
    x = sampling_locations[..., 0] * widths.to(dtype) - 0.5  # (B, Q, H, L, P)
    y = sampling_locations[..., 1] * heights.to(dtype) - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    row_base = (
        (torch.arange(batch, device=device).view(batch, 1, 1) * heads + torch.arange(heads, device=device).view(1, 1, heads))
        * tokens
    ).view(batch, 1, heads, 1, 1)

    indices, weights = [], []
    for dy, dx, corner_weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < widths) & (yi >= 0) & (yi < heights)
        index = row_base + level_start + yi.clamp(min=0) * widths + xi.clamp(min=0)
        indices.append(torch.where(inside, index, row_base))  # any in-range row; its weight is 0
        weights.append(corner_weight * attention_weights * inside)
    indices = torch.stack(indices, -1).reshape(batch * queries * heads, levels * points * 4)  # bags ordered (b, q, h)
    weights = torch.stack(weights, -1).reshape(batch * queries * heads, levels * points * 4)
    output = nn.functional.embedding_bag(indices, table, per_sample_weights=weights.to(table.dtype), mode="sum")
    return output.view(batch, queries, heads * head_dim)


def resolve_msda_implementation(implementation: str, device: torch.device) -> str:
    """`auto` -> the core measured fastest for the device; other names pass through."""
    if implementation == "auto":
        return "embedding_bag" if device.type == "cpu" else "reference"
    return implementation


class EcoMask2FormerMultiscaleDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """The stock deformable attention (same parameters and keys) with a selectable sampling core.

    Args:
        embed_dim, num_heads, n_levels, n_points: as the stock module.
        implementation: one of `MSDA_IMPLEMENTATIONS`.
    """

    def __init__(self, *, embed_dim: int, num_heads: int, n_levels: int, n_points: int, implementation: str) -> None:
        super().__init__(embed_dim=embed_dim, num_heads=num_heads, n_levels=n_levels, n_points=n_points)
        self.implementation = implementation

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
        level_start_index: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if reference_points.shape[-1] != 2:
            raise ValueError(f"reference_points must be points (last dim 2), got {reference_points.shape[-1]}")
        queries = hidden_states if position_embeddings is None else hidden_states + position_embeddings
        batch, num_queries, _ = queries.shape
        _, sequence_length, _ = encoder_hidden_states.shape
        value = self.value_proj(encoder_hidden_states)
        if attention_mask is not None:
            value = value.masked_fill(attention_mask[..., None], 0.0)  # True = padding
        value = value.view(batch, sequence_length, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(queries).view(batch, num_queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(queries).view(batch, num_queries, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(batch, num_queries, self.n_heads, self.n_levels, self.n_points)
        # Offsets are in pixels of each level: normalise by (width, height).
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes_list], dtype=queries.dtype, device=queries.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        core = resolve_msda_implementation(self.implementation, queries.device)
        if core == "embedding_bag":
            output = multi_scale_deformable_attention_embedding_bag(value, spatial_shapes_list, locations, weights)
        else:
            output = multi_scale_deformable_attention(value, spatial_shapes_list, locations, weights)
        return self.output_proj(output), weights


def init_deformable_attention_(module: EcoMask2FormerMultiscaleDeformableAttention) -> None:
    """Deformable DETR's initialisation of a deformable attention module (also Mask2Former's): zero offset weights,
    offset biases on a ring of `n_heads` directions growing with the point index, uniform attention weights,
    xavier-uniform value and output projections with zero biases."""
    init.constant_(module.sampling_offsets.weight, 0.0)
    thetas = torch.arange(module.n_heads, dtype=torch.int64).to(torch.get_default_dtype()) * (
        2.0 * math.pi / module.n_heads
    )
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)  # (heads, 2)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(module.n_heads, 1, 1, 2)
    grid = grid.repeat(1, module.n_levels, module.n_points, 1)  # (heads, levels, points, 2)
    grid = grid * torch.arange(1, module.n_points + 1, dtype=grid.dtype).view(1, 1, -1, 1)
    init.copy_(module.sampling_offsets.bias, grid.reshape(-1))
    init.constant_(module.attention_weights.weight, 0.0)
    init.constant_(module.attention_weights.bias, 0.0)
    init.xavier_uniform_(module.value_proj.weight)
    init.constant_(module.value_proj.bias, 0.0)
    init.xavier_uniform_(module.output_proj.weight)
    init.constant_(module.output_proj.bias, 0.0)
