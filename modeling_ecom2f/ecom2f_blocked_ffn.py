"""The feed-forward block of a transformer layer (`fc1`, activation, `fc2`, residual, optional norms) computed in
blocks of rows at inference.

The stock layers run `fc1` over every token at once: at 800x800 that is a `(13125, 1024)` activation in the
deformable encoder and a `(40000, 384)` one in Swin's first stage, tens of MB each, written and read back by the
activation as a separate pass, in fresh memory every layer. Per block of `BLOCK_ROWS` tokens the intermediate stays in
the cache and its memory is reused, the activation runs in place and the residual is the `addmm` accumulator. The
arithmetic per token is the stock one (float rounding aside); with autograd on, the stock unblocked path runs.
"""

from __future__ import annotations

import torch
from torch import nn

BLOCK_ROWS = 1024

_INPLACE_ACTIVATIONS = {"relu": torch.relu_, "gelu": torch.ops.aten.gelu_}


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
    act_ = _INPLACE_ACTIVATIONS[activation]
    block_rows = BLOCK_ROWS if block_rows is None else block_rows
    shape = hidden_states.shape
    rows = hidden_states.reshape(-1, shape[-1])  # (N, C)
    out = torch.empty_like(rows)
    w1, w2 = fc1.weight.t(), fc2.weight.t()
    for start in range(0, rows.shape[0], block_rows):
        x = rows[start:start + block_rows]  # (n, C)
        h = torch.addmm(fc1.bias, x if pre_norm is None else pre_norm(x), w1)  # (n, F)
        act_(h)
        block = out[start:start + block_rows]
        torch.addmm(x, h, w2, out=block)  # residual + h @ W2^T
        block.add_(fc2.bias)
        if post_norm is not None:
            block.copy_(post_norm(block))
    return out.view(shape)
