"""A faster stand-in for the Swin Transformer block of the backbone (transformers' `SwinLayer`): the same parameters
(state-dict keys) and outputs (float rounding aside), fewer passes over memory at inference.

The stock block (Liu et al., arXiv 2103.14030, Sec. 3.2) normalises the tokens, pads the map to whole windows,
rolls it (shifted windows), partitions it into windows (a copy each), projects q, k and v on every padded token,
adds the relative position bias to the shift mask for every window of the batch (`(batch * windows, heads, 49, 49)`),
then reverses partition, roll and padding (a copy each) before the residual. Here:

- q, k and v come from one GEMM over the real tokens only (the three weights concatenated); padding tokens, zeros
  after the stock norm, get the bias, which is what the stock projections give them;
- one precomputed row index gathers the projected tokens straight into shifted windows (the roll, padding and
  partition in one copy), and one index brings the attention output back (the reverse in one copy, padding
  dropped before the output projection);
- the windows that the shift mask touches (the last row and column of windows) come last in that order and get
  their own attention call with bias + mask; the others use the bias alone, broadcast, so the full
  `(windows, heads, 49, 49)` mask is never built;
- the linear layers go through oneDNN at inference, with the residual adds fused (`ecom2f_onednn_linear`), and the
  MLP runs in row blocks (`ecom2f_blocked_ffn`).

Training, the eager attention (used by the ONNX export), attention outputs, tracing and FLOP counting
(`ecom2f_onednn_linear.observed`) take the stock forward.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn
from transformers.models.swin.modeling_swin import SwinLayer

from .ecom2f_blocked_ffn import blocked_feed_forward
from .ecom2f_onednn_linear import linear, observed


@dataclass(frozen=True)
class EcoWindowPlan:
    """Row indices between tokens `(batch * height * width)` and shifted, padded windows `(batch * padded, ...)`.

    Attributes:
        gather: `(batch * padded,)` token row of every window slot (0 for padding slots, overwritten after).
        padding: `(num_padding,)` window slots that are padding.
        scatter: `(batch * height * width,)` window slot of every token.
        interior: windows (over the batch) the shift mask leaves alone; they come first.
        shift_mask: `(boundary windows of the batch, 1, window^2, window^2)` 0 / -100 (stock values) or `None`.
    """

    gather: torch.Tensor
    padding: torch.Tensor
    scatter: torch.Tensor
    interior: int
    shift_mask: torch.Tensor | None


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached tensors must serve autograd calls too
def window_plan(batch: int, height: int, width: int, window: int, shift: int, device: torch.device) -> EcoWindowPlan:
    """The `EcoWindowPlan` of a `(batch, height, width)` token map in windows of `window` shifted by `shift`."""
    height_pad, width_pad = -(-height // window) * window, -(-width // window) * window
    rows, cols = height_pad // window, width_pad // window
    # padded coordinates of every slot, windows row-major over the rolled map (torch.roll by -shift)
    wy, wx, ay, ax = torch.meshgrid(*(torch.arange(n) for n in (rows, cols, window, window)), indexing="ij")
    py = (wy * window + ay + shift) % height_pad  # (rows, cols, window, window)
    px = (wx * window + ax + shift) % width_pad
    real = (py < height) & (px < width)
    token = torch.where(real, py * width + px, 0).reshape(rows * cols, window * window)
    real = real.reshape(rows * cols, window * window)
    stock_mask = SwinLayer.get_attn_mask(  # the stock shift mask (window, shift_size are all it reads)
        SimpleNamespace(window_size=window, shift_size=shift), height_pad, width_pad, dtype=torch.float32,
        device=torch.device("cpu"),
    )  # (windows, w^2, w^2) or None
    if stock_mask is None:
        boundary = torch.zeros(rows * cols, dtype=torch.bool)
    else:
        boundary = (stock_mask != 0).flatten(1).any(1)  # windows the shift mask touches
    order = torch.cat([(~boundary).nonzero().squeeze(1), boundary.nonzero().squeeze(1)])  # interior windows first
    n_interior = int((~boundary).sum())
    tokens = height * width
    groups = [order[:n_interior], order[n_interior:]]
    # slot order: interior windows of image 0, 1, ..., then boundary windows of image 0, 1, ...
    gather = torch.cat([(token[g][None] + tokens * torch.arange(batch)[:, None, None]).flatten() for g in groups])
    is_real = torch.cat([real[g][None].expand(batch, -1, -1).flatten() for g in groups])
    scatter = torch.empty(batch * tokens, dtype=torch.long)
    scatter[gather[is_real]] = is_real.nonzero().squeeze(1)
    shift_mask = None
    if stock_mask is not None and groups[1].numel():
        shift_mask = stock_mask[groups[1]].repeat(batch, 1, 1).unsqueeze(1)  # (batch * boundary, 1, w^2, w^2)
    return EcoWindowPlan(
        gather=gather.to(device), padding=(~is_real).nonzero().squeeze(1).to(device), scatter=scatter.to(device),
        interior=batch * n_interior, shift_mask=None if shift_mask is None else shift_mask.to(device),
    )


class EcoSwinLayer(SwinLayer):
    """`SwinLayer` with the windowed attention on precomputed row indices and a row-blocked MLP at inference."""

    def forward(
        self, hidden_states: torch.Tensor, input_dimensions: tuple[int, int], always_partition: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention = self.attention
        if (self.training or kwargs.get("output_attentions") or attention.config._attn_implementation != "sdpa"
                or observed()):
            return super().forward(hidden_states, input_dimensions, always_partition=always_partition, **kwargs)
        if not always_partition:
            self.set_shift_and_window_size(input_dimensions)
        height, width = input_dimensions
        batch, tokens, channels = hidden_states.shape
        window, heads = self.window_size, attention.num_attention_heads
        plan = window_plan(batch, height, width, window, self.shift_size, hidden_states.device)

        weight = torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight])  # (3C, C)
        bias = None
        if attention.q_proj.bias is not None:
            bias = torch.cat([attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias])  # (3C,)
        rows = hidden_states.reshape(batch * tokens, channels)
        qkv = linear(self.layernorm_before(rows), weight, bias)  # (B * L, 3C)
        windows = qkv.index_select(0, plan.gather)  # (B * padded, 3C): rolled, padded, partitioned
        if plan.padding.numel():
            value = windows.new_zeros(windows.shape[1]) if bias is None else bias
            windows.index_copy_(0, plan.padding, value.expand(plan.padding.numel(), -1))
        position_bias = attention.relative_position_bias()  # (1, heads, w^2, w^2)
        area = window * window
        outputs = []
        for first, count, mask in (
            (0, plan.interior, position_bias),
            (plan.interior, windows.shape[0] // area - plan.interior, None if plan.shift_mask is None
             else position_bias + plan.shift_mask.to(position_bias.dtype)),
        ):
            if count == 0:
                continue
            group = windows[first * area:(first + count) * area].view(count, area, 3, heads, -1)
            q, k, v = group.permute(2, 0, 3, 1, 4).unbind(0)  # each (windows, heads, w^2, head_dim)
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attention.scaling)
            outputs.append(out.transpose(1, 2).reshape(count * area, channels))  # (windows * w^2, C)
        attended = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        attended = attended.index_select(0, plan.scatter)  # (B * L, C): windows reversed, padding dropped
        hidden_states = linear(attended, attention.o_proj.weight, attention.o_proj.bias, residual=rows)
        hidden_states = hidden_states.view(batch, tokens, channels)

        if torch.is_grad_enabled() or self.mlp.activation_fn.__class__.__name__ != "GELUActivation":
            return hidden_states + self.mlp(self.layernorm_after(hidden_states)), None
        mlp = self.mlp
        return blocked_feed_forward(hidden_states, fc1=mlp.fc1, fc2=mlp.fc2, activation="gelu",
                                    pre_norm=self.layernorm_after), None
