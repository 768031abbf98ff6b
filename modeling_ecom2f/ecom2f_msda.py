"""Multi-scale deformable attention with a choice of sampling core.

`reference` is transformers' pure-PyTorch core (one `grid_sample` per level). `embedding_bag` computes the same sum
in one pass over all levels: the four bilinear corners of every sampling point become row indices into a
zero-bordered value table and their bilinear x attention weights become `per_sample_weights` of
`F.embedding_bag(mode="sum")`, so the weighted gather-and-sum runs in one fused kernel without materialising the
sampled values. The zero border stands for grid_sample's `padding_mode="zeros"`. `auto` picks `embedding_bag` on CPU (measured faster
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


def _zero_padded_table(
    value: torch.Tensor, spatial_shapes_list: list[tuple[int, int]]
) -> tuple[torch.Tensor, list[int], int]:
    """The value maps with a zero border (1 pixel top/left, 2 bottom/right) as embedding rows `(b, head, token)`.

    Returns the table `(batch * heads * padded_tokens, head_dim)`, each level's first padded token and
    `padded_tokens`.
    """
    batch, _, heads, head_dim = value.shape
    padded_sizes = [(h + 3) * (w + 3) for h, w in spatial_shapes_list]
    table = value.new_zeros(batch, heads, sum(padded_sizes), head_dim)
    starts, start, padded_start = [], 0, 0
    for (h, w), padded_size in zip(spatial_shapes_list, padded_sizes):
        level = value[:, start : start + h * w].permute(0, 2, 1, 3).reshape(batch, heads, h, w, head_dim)
        window = table[:, :, padded_start : padded_start + padded_size].view(batch, heads, h + 3, w + 3, head_dim)
        window[:, :, 1 : h + 1, 1 : w + 1] = level
        starts.append(padded_start)
        start, padded_start = start + h * w, padded_start + padded_size
    return table.view(-1, head_dim), starts, padded_start


def multi_scale_deformable_attention_embedding_bag(
    value: torch.Tensor,
    spatial_shapes_list: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable attention core, equal to the reference up to float rounding.

    Every level gets a zero border (`_zero_padded_table`) and pixel coordinates are clamped to `[-1, size]`: inside
    that range the four bilinear corners are rows of the padded table and the zeros stand for grid_sample's
    `padding_mode="zeros"`; a point further out is clamped onto the border, where the corner weights put it entirely
    on zero rows, so it reads 0 as in the reference. No inside masks, no per-corner bounds checks. A NaN or infinite
    location or weight gives NaN for its (query, head), as the reference does, and touches no other query or image.

    Args:
        value: `(batch, tokens, heads, head_dim)`, levels concatenated in `spatial_shapes_list` order.
        spatial_shapes_list: `(height, width)` of each level.
        sampling_locations: `(batch, queries, heads, levels, points, 2)`, normalised `(x, y)` in [0, 1].
        attention_weights: `(batch, queries, heads, levels, points)`.

    Returns:
        `(batch, queries, heads * head_dim)`.
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    device = sampling_locations.device
    # Coordinates and row indices in at least float32: half precision cannot hold row numbers above 2048 (bf16: 256).
    dtype = torch.promote_types(sampling_locations.dtype, torch.float32)
    sampling_locations = sampling_locations.to(dtype)
    table, starts, padded_tokens = _zero_padded_table(value, spatial_shapes_list)

    def per_level(values: list[int]) -> torch.Tensor:
        # (levels, points), contiguous: on CPU broadcasting a whole (L, P) block is several times faster than (L, 1)
        return torch.tensor(values, dtype=dtype, device=device).view(levels, 1).expand(levels, points).contiguous()

    widths = per_level([w for _, w in spatial_shapes_list])
    heights = per_level([h for h, _ in spatial_shapes_list])
    row_length = per_level([w + 3 for _, w in spatial_shapes_list])
    # grid_sample with align_corners=False: pixel coordinate = normalised * size - 0.5.
    half = torch.tensor(-0.5, dtype=dtype, device=device)
    x_pixel = torch.addcmul(half, sampling_locations[..., 0], widths)  # (B, Q, H, L, P)
    y_pixel = torch.addcmul(half, sampling_locations[..., 1], heights)
    # A NaN coordinate goes to the far (size) border like +Inf, -Inf to -1: every row index stays inside the table,
    # never an out-of-range gather (NaN used to become int64-min).
    minus_one, far = torch.tensor(-1.0, dtype=dtype, device=device), torch.finfo(dtype).max
    x = torch.clamp(x_pixel.nan_to_num(nan=far), min=minus_one, max=widths)
    y = torch.clamp(y_pixel.nan_to_num(nan=far), min=minus_one, max=heights)
    x0, y0 = x.floor(), y.floor()
    # The reference's grid_sample returns NaN for a (query, head) with a NaN/Inf location: `pixel * 0` is NaN there and
    # 0 elsewhere, so adding it to the bilinear fractions makes that bag's per-sample weights NaN, and nothing else.
    zero = torch.zeros((), dtype=dtype, device=device)
    fx, fy = torch.addcmul(x - x0, x_pixel, zero), torch.addcmul(y - y0, y_pixel, zero)
    # Padded row of the top-left corner: level start + (y0 + 1) * (w + 3) + (x0 + 1); exact integers in float.
    first = per_level([start + w + 4 for start, (_, w) in zip(starts, spatial_shapes_list)])
    local = torch.addcmul(x0 + first, y0, row_length)
    base = (torch.arange(batch, device=device)[:, None] * heads + torch.arange(heads, device=device)) * padded_tokens
    top_left = local.long() + base.view(batch, 1, heads, 1, 1)
    bottom_left = top_left + row_length.long()
    # Corners stacked before the (level, point) axes: each bag `(b, q, h)` holds 4 x levels x points entries.
    indices = torch.stack((top_left, top_left + 1, bottom_left, bottom_left + 1), dim=3)  # (B, Q, H, 4, L, P)
    gx = 1 - fx
    fy = fy * attention_weights
    gy = attention_weights - fy
    weights = torch.stack((gy * gx, gy * fx, fy * gx, fy * fx), dim=3)
    bags, bag_size = batch * queries * heads, 4 * levels * points
    output = nn.functional.embedding_bag(
        indices.view(bags, bag_size), table, per_sample_weights=weights.view(bags, bag_size).to(table.dtype),
        mode="sum",
    )
    return output.view(batch, queries, heads * head_dim)


def resolve_msda_implementation(implementation: str, device: torch.device) -> str:
    """`auto` -> the core measured fastest for the device; other names pass through."""
    if implementation == "auto":
        return "embedding_bag" if device.type == "cpu" else "reference"
    return implementation


class EcoMultiscaleDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """The stock deformable attention (same parameters and keys) with a selectable sampling core.

    Used by every ecom2f deformable encoder (Mask2Former's pixel decoder, Deformable DETR); the old name
    `EcoMask2FormerMultiscaleDeformableAttention` is kept as an alias.

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


def init_deformable_attention_(module: EcoMultiscaleDeformableAttention) -> None:
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


#: The attention's former, Mask2Former-specific name (saved code and user code may import it).
EcoMask2FormerMultiscaleDeformableAttention = EcoMultiscaleDeformableAttention
