"""The embedding-bag deformable sampling core: its geometry, its forward and a hand-written backward.

Forward (`sample_embedding_bag`): every level's value map gets a zero border (`zero_padded_table`), pixel
coordinates are clamped to `[-1, size]`, and the four bilinear corners of every sampling point become rows of one
fused, weighted `F.embedding_bag(mode="sum")` over all levels (`corner_geometry` gives the rows and the bilinear
fractions). The zero border stands for grid_sample's `padding_mode="zeros"`.

Backward (`EcoEmbeddingBagSampling`): autograd through `embedding_bag` sorts every row index to build the table's
gradient (several times slower than the whole forward); the hand-written backward needs no sort. Chunk by chunk of
`(b, q, h)` bags it
- gathers each point's two corner pairs (left and right corners are neighbouring rows of the padded table) and takes
  one dot product per corner, `<grad_output[b, q, h], table[corner]>`; the attention-weight gradient is the bilinear
  sum of those dots and the location gradient their bilinear derivative (differences of neighbouring corners),
  elementwise;
- scatters `corner weight x grad_output` with one `index_add_` row per point (its four corners side by side) and
  shifts the four corner planes onto their rows (`table_gradient_to_value`).
Same math as grid_sample's backward (bilinear, zero padding, align_corners=False), so the gradients equal the
reference core's up to float rounding (tests/test_msda.py). Measured (benchmarks/benchmark_msda_core.py): faster
than the reference's forward + backward for 16 or more channels per head; with 8 it is slower, so `auto` trains
with the reference core there (`ecom2f_msda.resolve_msda_implementation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def zero_padded_table(
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


@dataclass
class CornerGeometry:
    """Where the bilinear corners of every sampling point lie in the padded table, all `(B, Q, H, L, P)`.

    `indices` `(B, Q, H, 4, L, P)`: table rows of the corners (top-left, top-right, bottom-left, bottom-right);
    `fx`, `fy`: bilinear fractions (NaN where the location is not finite, so that the (query, head) reads NaN as in
    the reference); `x_pixel`, `y_pixel`: unclamped pixel coordinates; `sizes`: `(width, height)` per (level, point).
    """

    indices: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    x_pixel: torch.Tensor
    y_pixel: torch.Tensor
    sizes: tuple[torch.Tensor, torch.Tensor]


def corner_geometry(
    sampling_locations: torch.Tensor, spatial_shapes_list: list[tuple[int, int]], *, heads: int, starts: list[int],
    padded_tokens: int,
) -> CornerGeometry:
    """The corners of `sampling_locations` `(B, Q, H, L, P, 2)` (normalised `(x, y)`) in the padded table.

    Pixel coordinates are clamped to `[-1, size]`: inside that range the four corners are rows of the padded table
    and the zeros stand for grid_sample's `padding_mode="zeros"`; a point further out is clamped onto the border,
    where the corner weights put it entirely on zero rows, so it reads 0 as in the reference. A NaN coordinate goes
    to the far (size) border like +Inf, -Inf to -1: every row index stays inside the table (NaN used to become
    int64-min).
    """
    batch, _, _, levels, points, _ = sampling_locations.shape
    device = sampling_locations.device
    # Coordinates and row indices in at least float32: half precision cannot hold row numbers above 2048 (bf16: 256).
    dtype = torch.promote_types(sampling_locations.dtype, torch.float32)
    sampling_locations = sampling_locations.to(dtype)

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
    minus_one, far = torch.tensor(-1.0, dtype=dtype, device=device), torch.finfo(dtype).max
    x = torch.clamp(x_pixel.nan_to_num(nan=far), min=minus_one, max=widths)
    y = torch.clamp(y_pixel.nan_to_num(nan=far), min=minus_one, max=heights)
    x0, y0 = x.floor(), y.floor()
    # The reference's grid_sample returns NaN for a (query, head) with a NaN/Inf location: `pixel * 0` is NaN there
    # and 0 elsewhere, so adding it to the bilinear fractions makes that bag's weights NaN, and nothing else.
    zero = torch.zeros((), dtype=dtype, device=device)
    fx, fy = torch.addcmul(x - x0, x_pixel, zero), torch.addcmul(y - y0, y_pixel, zero)
    # Padded row of the top-left corner: level start + (y0 + 1) * (w + 3) + (x0 + 1); exact integers in float.
    first = per_level([start + w + 4 for start, (_, w) in zip(starts, spatial_shapes_list)])
    local = torch.addcmul(x0 + first, y0, row_length)
    base = (torch.arange(batch, device=device)[:, None] * heads + torch.arange(heads, device=device)) * padded_tokens
    # Corners before the (level, point) axes: each bag `(b, q, h)` holds 4 x levels x points entries; written in
    # place (no stack of four temporaries).
    indices = torch.empty(*local.shape[:3], 4, levels, points, dtype=torch.long, device=device)  # (B, Q, H, 4, L, P)
    top_left, top_right, bottom_left, bottom_right = indices.unbind(3)
    torch.add(local.long(), base.view(batch, 1, heads, 1, 1), out=top_left)
    torch.add(top_left, 1, out=top_right)
    torch.add(top_left, row_length.long(), out=bottom_left)
    torch.add(bottom_left, 1, out=bottom_right)
    return CornerGeometry(indices, fx, fy, x_pixel, y_pixel, (widths, heights))


def corner_weights(geometry: CornerGeometry, attention_weights: torch.Tensor) -> torch.Tensor:
    """Bilinear weight x attention weight of every corner, `(B, Q, H, 4, L, P)` in `geometry.indices` order."""
    fx, fy = geometry.fx, geometry.fy * attention_weights
    gx, gy = 1 - fx, attention_weights - fy
    weights = gy.new_empty(*fx.shape[:3], 4, *fx.shape[3:], dtype=torch.promote_types(gy.dtype, fx.dtype))
    for corner, (a, b) in enumerate(((gy, gx), (gy, fx), (fy, gx), (fy, fx))):
        torch.mul(a, b, out=weights[:, :, :, corner])
    return weights


def sample_embedding_bag(table: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over each bag `(b, q, h)` of corner rows of `table` times `weights` (both `(B, Q, H, 4, L, P)`):
    `(B * Q * H, head_dim)`."""
    batch, queries, heads, *bag_shape = indices.shape
    bags, bag_size = batch * queries * heads, math.prod(bag_shape)  # explicit sizes: a batch may hold no query
    return nn.functional.embedding_bag(
        indices.reshape(bags, bag_size), table, per_sample_weights=weights.reshape(bags, bag_size).to(table.dtype),
        mode="sum",
    )


#: Elements of the corner rows gathered (and of the scatter source built) at once in the backward: small enough that
#: a chunk's gather, dot products and scatter stay in cache, large enough that the Python loop costs little.
_CHUNK_ELEMENTS = 1 << 18


def _pair_table(table: torch.Tensor) -> torch.Tensor:
    """`table` `(rows, D)` read as overlapping pairs of neighbouring rows `(rows - 1, 2 D)` (a view, no copy): row
    `r` of it holds a point's left and right corners when `r` is its top-left (or bottom-left) corner."""
    rows, head_dim = table.shape
    return table.as_strided((max(rows - 1, 0), 2 * head_dim), (head_dim, 1))


def _corner_dots_and_scatter(
    table: torch.Tensor, pair_rows: torch.Tensor, weights: torch.Tensor | None, grad: torch.Tensor, *,
    need_dots: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both halves of the backward of the embedding-bag sum, chunk by chunk of bags.

    `pair_rows` `(bags, samples, 2)`: the top-left and bottom-left table row of every sampling point;
    `weights` `(bags, 4, samples)`: the weights of its corners (top-left, top-right, bottom-left, bottom-right), as
    the forward summed them, or None when the table's gradient is not needed; `grad` `(bags, D)`.

    Returns `dots` `(bags, samples, 2, 2)`, `<grad[bag], table[corner]>` of every corner (pairs of neighbouring rows
    gathered, then a batched matmul), and `corner_grads` `(table rows, 4, D)`: `[r, k]` sums `weight x grad[bag]`
    over the corners `k` of the points whose top-left corner is row `r` (one `index_add_` row per point carries its
    four corners; `table_gradient_to_value` moves each plane onto its own row). The chunk buffers are allocated
    once: a fresh large allocation per chunk costs page faults.
    """
    bags, samples, _ = pair_rows.shape
    head_dim = grad.shape[1]
    pairs = _pair_table(table)
    chunk = max(1, _CHUNK_ELEMENTS // (4 * samples * head_dim))
    dots = corners = corner_grads = source = None
    if need_dots:
        dots = grad.new_empty(bags, samples * 4)
        corners = grad.new_empty(min(chunk, bags) * samples * 2, 2 * head_dim)
    if weights is not None:
        corner_grads = grad.new_zeros(table.shape[0], 4, head_dim)
        source = grad.new_empty(min(chunk, bags), samples, 4, head_dim)
        weights = weights.transpose(1, 2).contiguous()  # (bags, samples, 4): a point's corners side by side
    for start in range(0, bags, chunk):
        end = min(start + chunk, bags)
        grad_chunk = grad[start:end]
        if need_dots:
            gathered = corners[: (end - start) * samples * 2]
            torch.index_select(pairs, 0, pair_rows[start:end].reshape(-1), out=gathered)
            torch.bmm(gathered.view(end - start, samples * 4, head_dim), grad_chunk[:, :, None],
                      out=dots[start:end, :, None])
        if weights is not None:
            rows = source[: end - start]
            torch.mul(weights[start:end, :, :, None], grad_chunk[:, None, None, :], out=rows)
            corner_grads.index_add_(0, pair_rows[start:end, :, 0].reshape(-1), rows.view(-1, 4, head_dim))
    return (dots.view(bags, samples, 2, 2) if need_dots else None), corner_grads


def table_gradient_to_value(
    corner_grads: torch.Tensor, spatial_shapes_list: list[tuple[int, int]], *, batch: int, heads: int,
) -> torch.Tensor:
    """The value gradient `(B, tokens, H, D)` from `corner_grads` `(B*H*padded_tokens, 4, D)`: a value pixel
    `(y, x)` is the top-left corner of the points whose top-left corner is `(y, x)`, the top-right of `(y, x-1)`'s,
    the bottom-left of `(y-1, x)`'s and the bottom-right of `(y-1, x-1)`'s (padded coordinates, so no index leaves
    the map); the zero border's own gradient (grid_sample's padding) is dropped."""
    head_dim = corner_grads.shape[-1]
    padded_tokens = sum((h + 3) * (w + 3) for h, w in spatial_shapes_list)
    per_map = corner_grads.view(batch, heads, padded_tokens, 4, head_dim)
    tokens = sum(h * w for h, w in spatial_shapes_list)
    grad_value = corner_grads.new_empty(batch, tokens, heads, head_dim)
    start = padded_start = 0
    for h, w in spatial_shapes_list:
        grid = per_map[:, :, padded_start : padded_start + (h + 3) * (w + 3)].view(batch, heads, h + 3, w + 3, 4,
                                                                                   head_dim)
        # the level's (B, h*w, H, D) slice of the output seen as (B, H, h, w, D), the layout of `grid`
        out = grad_value[:, start : start + h * w].view(batch, h, w, heads, head_dim).permute(0, 3, 1, 2, 4)
        torch.add(grid[:, :, 1 : h + 1, 1 : w + 1, 0], grid[:, :, 1 : h + 1, 0:w, 1], out=out)
        out += grid[:, :, 0:h, 1 : w + 1, 2]
        out += grid[:, :, 0:h, 0:w, 3]
        start, padded_start = start + h * w, padded_start + (h + 3) * (w + 3)
    return grad_value


class EcoEmbeddingBagSampling(torch.autograd.Function):
    """The embedding-bag sampling core with its hand-written backward (module docstring). Inputs as
    `multi_scale_deformable_attention_embedding_bag`; output `(B * Q * H, D)`.

    Saved for the backward: the padded table, the top-left and bottom-left rows of every point, its bilinear
    fractions and pixel coordinates, and the attention weights (a few values per point; the reference core keeps
    every sampled value, `D` per point)."""

    @staticmethod
    def forward(ctx, value, sampling_locations, attention_weights, spatial_shapes_list):
        heads = value.shape[2]
        table, starts, padded_tokens = zero_padded_table(value, spatial_shapes_list)
        geometry = corner_geometry(sampling_locations, spatial_shapes_list, heads=heads, starts=starts,
                                   padded_tokens=padded_tokens)
        weights = corner_weights(geometry, attention_weights)
        output = sample_embedding_bag(table, geometry.indices, weights)
        pair_rows = torch.stack((geometry.indices[:, :, :, 0], geometry.indices[:, :, :, 2]), dim=-1)
        ctx.save_for_backward(table, pair_rows, weights, geometry.fx, geometry.fy, geometry.x_pixel,
                              geometry.y_pixel, attention_weights, *geometry.sizes)
        ctx.value_shape, ctx.value_dtype = value.shape, value.dtype
        ctx.locations_dtype, ctx.weights_dtype = sampling_locations.dtype, attention_weights.dtype
        ctx.spatial_shapes_list = spatial_shapes_list
        return output

    @staticmethod
    def backward(ctx, grad_output):
        table, pair_rows, weights, fx, fy, x_pixel, y_pixel, attention, width, height = ctx.saved_tensors
        need_value, need_locations, need_weights = ctx.needs_input_grad[:3]
        batch, _, heads, head_dim = ctx.value_shape
        # Computed in at least float32 (as the geometry is), returned in the dtypes of the inputs.
        dtype = fx.dtype
        grad = grad_output.to(dtype).reshape(-1, head_dim)
        bags, samples = grad.shape[0], fx.shape[-2] * fx.shape[-1]  # explicit: a batch may hold no query
        attention = attention.to(dtype)
        # Where the point lies within [-1, size] on both axes (False for NaN/Inf): a point further out reads only
        # zero padding, so, as in grid_sample's backward, it scatters nothing (not even a NaN weight's NaN).
        inside_x, inside_y = (x_pixel >= -1) & (x_pixel <= width), (y_pixel >= -1) & (y_pixel <= height)
        scatter_weights = None
        if need_value:
            inside = (inside_x & inside_y)[:, :, :, None]  # (B, Q, H, 1, L, P), as the corners' weights
            scatter_weights = torch.where(inside, weights.to(dtype), 0.0).view(bags, 4, samples)
        dots, corner_grads = _corner_dots_and_scatter(table.to(dtype), pair_rows.view(bags, samples, 2),
                                                      scatter_weights, grad, need_dots=need_locations or need_weights)
        grad_value = grad_locations = grad_weights = None
        if need_value:
            grad_value = table_gradient_to_value(corner_grads, ctx.spatial_shapes_list, batch=batch, heads=heads)
            grad_value = grad_value.to(ctx.value_dtype)
        if dots is not None:
            dots = dots.view(*fx.shape, 2, 2)  # (B, Q, H, L, P, top/bottom, left/right)
            left, right = dots[..., 0], dots[..., 1]  # (..., 2): top and bottom rows
            across = right - left  # d/dx of each row
            if need_weights:
                rows = torch.addcmul(left, across, fx[..., None])  # each row interpolated in x
                grad_weights = torch.lerp(rows[..., 0], rows[..., 1], fy).to(ctx.weights_dtype)
            if need_locations:
                # The bilinear sum's derivative, zero where the clamp to [-1, size] holds the point (it reads zeros;
                # multiplied rather than selected, so that a NaN weight still gives NaN, as in grid_sample).
                d_x = torch.lerp(across[..., 0], across[..., 1], fy)
                down = dots[..., 1, :] - dots[..., 0, :]  # (..., 2): d/dy of the left and right columns
                d_y = torch.lerp(down[..., 0], down[..., 1], fx)
                grad_x = d_x * attention * (width * inside_x.to(dtype))
                grad_y = d_y * attention * (height * inside_y.to(dtype))
                grad_locations = torch.stack((grad_x, grad_y), dim=-1).to(ctx.locations_dtype)
        return grad_value, grad_locations, grad_weights, None
