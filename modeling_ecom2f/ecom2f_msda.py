"""Multi-scale deformable attention with a choice of sampling core.

`reference` is transformers' pure-PyTorch core (one `grid_sample` per level). `embedding_bag` computes the same sum
in one pass over all levels: the four bilinear corners of every sampling point become row indices into a
zero-bordered value table and their bilinear x attention weights become `per_sample_weights` of
`F.embedding_bag(mode="sum")`, so the weighted gather-and-sum runs in one fused kernel without materialising the
sampled values. The zero border stands for grid_sample's `padding_mode="zeros"`; its backward is hand-written
(`ecom2f_msda_autograd`). `auto` picks, from measurements (benchmarks/benchmark_msda_core.py), `embedding_bag` on
CPU for inference, and for training when heads have at least `EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM` channels; the
reference on CPU for training with narrower heads and on every other device.
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

from .ecom2f_msda_autograd import (
    EcoEmbeddingBagSampling,
    corner_geometry,
    corner_weights,
    sample_embedding_bag,
    zero_padded_table,
)

MSDA_IMPLEMENTATIONS = ("auto", "reference", "embedding_bag")

#: Channels per head from which `auto` also trains with the embedding-bag core on CPU. Forward + backward of the core
#: alone, one thread (`benchmarks/benchmark_msda_core.py --measure train`): with 8 channels per head the embedding-bag core is slower than
#: the reference at every measured size (about 0.7x: the reference's fused grid_sample kernels win on such narrow
#: rows), with 16 it is faster, with 32 (Mask2Former's 256 / 8 heads) up to twice as fast.
EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM = 16


def multi_scale_deformable_attention_embedding_bag(
    value: torch.Tensor,
    spatial_shapes_list: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable attention core, equal to the reference up to float rounding (values and gradients).

    Every level gets a zero border and pixel coordinates are clamped to `[-1, size]` (`corner_geometry`): no inside
    masks, no per-corner bounds checks. A NaN or infinite location or weight gives NaN for its (query, head), as the
    reference does, and touches no other query or image. When a gradient is needed the call goes through
    `EcoEmbeddingBagSampling` (hand-written backward); otherwise the same forward runs without autograd.

    Args:
        value: `(batch, tokens, heads, head_dim)`, levels concatenated in `spatial_shapes_list` order.
        spatial_shapes_list: `(height, width)` of each level.
        sampling_locations: `(batch, queries, heads, levels, points, 2)`, normalised `(x, y)` in [0, 1].
        attention_weights: `(batch, queries, heads, levels, points)`.

    Returns:
        `(batch, queries, heads * head_dim)`.
    """
    batch, _, heads, head_dim = value.shape
    queries = sampling_locations.shape[1]
    shapes = list(spatial_shapes_list)
    # Under torch.compile the plain ops are traced (autograd through embedding_bag), as before the custom backward.
    if _needs_grad(value, sampling_locations, attention_weights) and not torch.compiler.is_compiling():
        output = EcoEmbeddingBagSampling.apply(value, sampling_locations, attention_weights, shapes)
    else:
        table, starts, padded_tokens = zero_padded_table(value, shapes)
        geometry = corner_geometry(sampling_locations, shapes, heads=heads, starts=starts, padded_tokens=padded_tokens)
        output = sample_embedding_bag(table, geometry.indices, corner_weights(geometry, attention_weights))
    return output.view(batch, queries, heads * head_dim)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _softmax_last(logits: torch.Tensor, needs_grad: bool) -> torch.Tensor:
    """Softmax over the last dimension (levels x points, a dozen values). Without autograd it is computed as
    `exp(x - max) / sum` in place: the same values up to float rounding, several times faster on CPU than
    `torch.softmax` over such a short dimension."""
    if needs_grad:
        return logits.softmax(-1)
    exp = (logits - logits.amax(-1, keepdim=True)).exp_()
    return exp.div_(exp.sum(-1, keepdim=True))


def resolve_msda_implementation(
    implementation: str, device: torch.device, *, head_dim: int | None = None, needs_grad: bool = False
) -> str:
    """`auto` -> the core measured fastest for the device, the pass (`needs_grad`: a backward will follow) and the
    channels per head (`head_dim`; None: wide enough); other names pass through."""
    if implementation != "auto":
        return implementation
    if device.type != "cpu":
        return "reference"
    if needs_grad and head_dim is not None and head_dim < EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM:
        return "reference"
    return "embedding_bag"


class EcoMultiscaleDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """The stock deformable attention (same parameters and keys) with a selectable sampling core.

    Used by every ecom2f deformable encoder (Mask2Former's pixel decoder, Deformable DETR).

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
        needs_grad = _needs_grad(value, offsets, weights, reference_points)
        weights = _softmax_last(weights, needs_grad).view(batch, num_queries, self.n_heads, self.n_levels, self.n_points)
        # Offsets are in pixels of each level: normalise by (width, height). The divisor is expanded to the offsets'
        # trailing (heads, levels, points, 2) block: broadcasting a (levels, 1, 2) one is several times slower on CPU.
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes_list], dtype=queries.dtype, device=queries.device)
        normalizer = normalizer[:, None, :].expand(self.n_heads, self.n_levels, self.n_points, 2).contiguous()
        locations = torch.addcdiv(reference_points[:, :, None, :, None, :], offsets, normalizer)
        core = resolve_msda_implementation(self.implementation, queries.device, head_dim=value.shape[-1],
                                           needs_grad=needs_grad)
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
