"""Linear layers through oneDNN at CPU inference, and the `nn.Linear` stand-in that uses them.

On CPU, `nn.Linear` calls BLAS (`addmm`, MKL in the PyTorch wheels), then the activation and the residual add as
separate passes over memory. oneDNN's inner-product primitive (`torch.ops.mkldnn._linear_pointwise`, the kernel
`torch.compile`'s CPU backend emits for linear layers) computes the same products, with the bias and a following
activation or residual add applied while the output block is still in cache; on the AMD EPYC CPUs this project is
measured on it also runs the plain GEMM well above MKL's rate (see `benchmarks/speed_protocol.py`). Used only without
autograd (the op has no backward), on float32 CPU tensors, outside `torch.compile` / `torch.export` tracing and
outside dispatch modes (FLOP counting); anything else takes the stock `nn.functional.linear` path, with the same
result up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

_POINTWISE = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
ACTIVATIONS = {"none": None, "relu": torch.relu, "gelu": nn.functional.gelu}  # gelu: exact (erf), as "gelu"


def observed() -> bool:
    """Whether the ops of this call are traced (`torch.compile`, `torch.export`) or watched by a dispatch mode (FLOP
    counting, memory tracking): stand-ins then take the stock path, so that what is observed is the stock model."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or _get_current_dispatch_mode() is not None


def onednn_usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` takes the oneDNN path for this call."""
    return (
        _POINTWISE is not None
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not observed()
    )


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    activation: str = "none",
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """`activation(x @ weight.T + bias) + residual` (`activation` in `ACTIVATIONS`, applied before the residual;
    `residual` shaped like the output, or `None`; an activation and a residual together are not fused)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    out_features = weight.shape[0]
    if onednn_usable(x, weight) and (residual is None or activation == "none"):
        rows = x.reshape(-1, x.shape[-1])  # (N, in)
        if residual is not None:
            out = _POINTWISE.binary(rows, residual.reshape(-1, out_features), weight, bias, "add")
        else:
            out = _POINTWISE(rows, weight, bias, activation, [], "none" if activation == "gelu" else "")
        return out.view(*x.shape[:-1], out_features)
    out = nn.functional.linear(x, weight, bias)
    if ACTIVATIONS[activation] is not None:
        out = ACTIVATIONS[activation](out)
    return out if residual is None else out + residual


class EcoLinear(nn.Linear):
    """`nn.Linear` (same parameters) computed by `linear`: oneDNN at CPU inference, the stock path otherwise."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)
