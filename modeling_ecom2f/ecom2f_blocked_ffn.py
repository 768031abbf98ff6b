"""The feed-forward block of a transformer layer (`fc1`, activation, `fc2`, residual, optional norms) computed in
blocks of rows at inference.

The stock layers run `fc1` over every token at once: at 800x800 that is a `(13125, 1024)` activation in the
deformable encoder and a `(40000, 384)` one in Swin's first stage, tens of MB each, written and read back by the
activation as a separate pass, in fresh memory every layer. Per block of `BLOCK_ROWS` tokens the intermediate stays in
the cache and its memory is reused, and the activation and the residual add are fused into the linear layers
(`ecom2f_onednn_linear`). The arithmetic per token is the stock one (float rounding aside). Callers run the stock
unblocked path when autograd is on.
"""

from __future__ import annotations

import torch
from torch import nn

from .ecom2f_onednn_linear import linear

BLOCK_ROWS = 512


def blocked_feed_forward(
    hidden_states: torch.Tensor,
    *,
    fc1: nn.Linear,
    fc2: nn.Linear,
    activation: str,
    pre_norm: nn.LayerNorm | None = None,
    post_norm: nn.LayerNorm | None = None,
    block_rows: int | None = None,
) -> torch.Tensor:
    """`post_norm(x + fc2(act(fc1(pre_norm(x)))))` for `x = hidden_states` `(..., C)`, without autograd.

    Args:
        activation: `"relu"` or `"gelu"` (exact GELU, transformers' `"gelu"`).
        pre_norm: applied to the input of `fc1` only (pre-norm layer, e.g. Swin); `None` for none.
        post_norm: applied to the sum (post-norm layer, e.g. the deformable encoder); `None` for none.
        block_rows: tokens per block (`BLOCK_ROWS` when `None`).

    Returns:
        A tensor shaped like `hidden_states`.
    """
    block_rows = BLOCK_ROWS if block_rows is None else block_rows
    shape = hidden_states.shape
    rows = hidden_states.reshape(-1, shape[-1])  # (N, C)
    out = torch.empty_like(rows)
    for start in range(0, rows.shape[0], block_rows):
        x = rows[start:start + block_rows]  # (n, C)
        h = linear(x if pre_norm is None else pre_norm(x), fc1.weight, fc1.bias, activation=activation)  # (n, F)
        block = linear(h, fc2.weight, fc2.bias, residual=x)  # (n, C)
        out[start:start + block_rows] = block if post_norm is None else post_norm(block)
    return out.view(shape)
