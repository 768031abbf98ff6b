"""GFLOPs of Mask2Former-family models in the papers' convention, broken down by part.

Convention: fvcore's, which Mask2Former, ECO-M2F and PRO-SCALE report (facebookresearch/Mask2Former
`tools/analyze_model.py`; GYeow/ECO-M2F `test_net.py`).

* One multiply-add is one FLOP. `torch.utils.flop_counter.FlopCounterMode` counts 2 FLOPs per multiply-add, so every
  count below is the mode's count divided by 2 (our extra formulas return twice fvcore's value for that reason).
* The deformable sampling is not counted: detectron2 ran it as a custom CUDA op that fvcore could not see. Here it is
  `aten.grid_sampler_2d` plus elementwise weighting, neither of which has a formula, so both add 0. (fvcore itself
  would count a grid_sampler at 4 per output element; we deliberately do not register one.)
* Ops FlopCounterMode does not count but fvcore does (fvcore/nn/flop_count.py `_DEFAULT_SUPPORTED_OPS`):
  LayerNorm / GroupNorm: 5 x input numel with affine, 4 without; BatchNorm: eval 2 x numel with affine (1 without),
  training 5 x (4 without); bilinear upsample: 4 per output element; nearest upsample: 1 per output element;
  adaptive average pooling: 1 per input element. Softmax, activations, elementwise ops and max-pooling: 0, as fvcore.
* Swin's attention runs as `aten._scaled_dot_product_flash_attention_for_cpu` on CPU, which FlopCounterMode does not
  know. We count it with torch's own SDPA formula (the two attention matmuls, i.e. exactly what fvcore sees in the
  eager attention), so backbone GFLOPs are complete with the default "sdpa" attention (tested against "eager").

Registry choice: the extra formulas are passed to each `FlopCounterMode(custom_mapping=...)`, so the process-global
`torch.utils.flop_counter.flop_registry` is never mutated (nothing to make idempotent, no clash with other code).

Attribution is by module path (FlopCounterMode's ModuleTracker): backbone = `pixel_level_module.encoder`; encoder
layer i = `pixel_level_module.decoder.encoder.layers.{i}`; gate = `pixel_level_module.decoder.gate` (ecom2f only, and
only when it runs); rest of pixel decoder = the remainder of `pixel_level_module.decoder` (input projections, FPN
lateral/output convs, mask projection); transformer decoder = `transformer_module` + `class_predictor`; anything else
(e.g. a loss) is `other`, so the parts always sum to the total.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten

# --- extra formulas (each returns 2 x fvcore's count, see the module docstring) ---------------------------------------


def _layer_norm_flop(input_shape, normalized_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    """fvcore `norm_flop_counter`: 5 per input element with affine, 4 without."""
    return 2 * math.prod(input_shape) * (5 if weight is not None else 4)


def _group_norm_flop(input_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    """`native_group_norm(input, weight, bias, N, C, HxW, group, eps)`; fvcore: as LayerNorm."""
    return 2 * math.prod(input_shape) * (5 if weight is not None else 4)


def _batch_norm_flop(input_shape, weight=None, bias=None, running_mean=None, running_var=None, training=False,
                     *args, out_shape=None, **kwargs) -> int:
    """`native_batch_norm(input, weight, bias, mean, var, training, ...)`; fvcore `batchnorm_flop_jit`."""
    per_element = (5 if weight is not None else 4) if training else (2 if weight is not None else 1)
    return 2 * math.prod(input_shape) * per_element


def _bn_no_training_flop(input_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(input_shape) * (2 if weight is not None else 1)


def _bn_legit_flop(input_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    """`_native_batch_norm_legit(input, weight, bias, [mean, var,] training, ...)`: the training flag's index varies."""
    training = next((a for a in args if isinstance(a, bool)), True)
    return _batch_norm_flop(input_shape, weight, None, None, None, training)


def _bilinear_flop(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * 4 * math.prod(out_shape)


def _nearest_flop(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(out_shape)


def _adaptive_avg_pool_flop(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(input_shape)


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """As torch's CUDA SDPA formulas: q @ k^T and attn @ v (2 per multiply-add), what fvcore sees in eager attention.

    Shapes: query `(batch, heads, q_len, head_dim)`, key `(batch, kv_heads, k_len, head_dim)`, value `(..., v_dim)`.
    """
    batch, heads, q_len, head_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * q_len * k_len * (head_dim + v_dim)


FVCORE_EXTRA_FORMULAS: dict = {
    aten.native_layer_norm: _layer_norm_flop,
    aten.native_group_norm: _group_norm_flop,
    aten.native_batch_norm: _batch_norm_flop,
    aten._native_batch_norm_legit: _bn_legit_flop,
    aten._native_batch_norm_legit_no_training: _bn_no_training_flop,
    aten.upsample_bilinear2d: _bilinear_flop,
    aten.upsample_nearest2d: _nearest_flop,
    aten._adaptive_avg_pool2d: _adaptive_avg_pool_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
}


def _with_overloads(formulas: dict) -> dict:
    """Add every overload of each op as a key too. FlopCounterMode looks formulas up by packet, but decides whether
    to decompose an op by its overload; without the overload key a decomposable op (e.g. `upsample_nearest2d`) is
    split into uncounted primitives before its formula is consulted."""
    mapping = dict(formulas)
    for packet, formula in formulas.items():
        mapping.update({getattr(packet, name): formula for name in packet.overloads()})
    return mapping


_COUNTER_MAPPING = _with_overloads(FVCORE_EXTRA_FORMULAS)


def fvcore_flop_counter() -> FlopCounterMode:
    """A `FlopCounterMode` with the fvcore extras (local mapping, global registry untouched). Counts are 2 x fvcore."""
    return FlopCounterMode(display=False, custom_mapping=_COUNTER_MAPPING)


def to_gflops(counter_flops: int | float) -> float:
    """FlopCounterMode count (2 per multiply-add) -> GFLOPs in the fvcore/papers' convention (1 per multiply-add)."""
    return counter_flops / 2 / 1e9


# --- analytic cost of one deformable encoder layer (fvcore convention) ------------------------------------------------


def deformable_encoder_tokens(*, height: int, width: int, strides: tuple[int, ...] = (8, 16, 32)) -> int:
    """Tokens the deformable encoder sees for an `height x width` input: the sum of the 1/8, 1/16, 1/32 map sizes.

    Swin/ResNet round up at each stride-2 step (patch size 4, then halvings), so the sizes are repeated ceilings.
    """
    total, h, w, stride = 0, math.ceil(height / 4), math.ceil(width / 4), 4
    while stride < max(strides):
        h, w, stride = math.ceil(h / 2), math.ceil(w / 2), stride * 2
        if stride in strides:
            total += h * w
    return total


def deformable_layer_gflops(
    *, num_tokens: int, d_model: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4,
    ffn_dim: int = 1024,
) -> float:
    """Analytic fvcore GFLOPs of one multi-scale deformable encoder layer over `num_tokens` tokens.

    Per token: value + output projections `2 d^2`, sampling offsets `d * (h L P 2)`, attention weights `d * (h L P)`,
    FFN `2 d ffn`, two LayerNorms `2 * 5 d`. For d=256, h=8, P=4, ffn=1024: `F(L) = 657,920 + 24,576 L`.
    """
    hlp = num_heads * num_levels * num_points
    per_token = 2 * d_model**2 + d_model * hlp * 2 + d_model * hlp + 2 * d_model * ffn_dim + 2 * 5 * d_model
    return num_tokens * per_token / 1e9


# --- whole-model accounting -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderExitGFlops:
    """GFLOPs (fvcore convention) of one forward over a batch, by part: the parts every early-exit model has
    (ECO-M2F, arXiv 2404.15244). A model's subclass adds its own parts; `total` is the sum of all parts.

    Attributes:
        backbone: the backbone.
        encoder_layers: per deformable encoder layer `(num_layers,)`; 0.0 for layers no image reached.
        gate: the ECO-M2F gate (0.0 for a stock model or when the depth is given and the gate does not run).
        other: everything outside the named parts (0.0 for an inference forward).
        total: all counted FLOPs of the forward.
        depths: encoder layers used by each image `(batch,)`.
        per_image: total GFLOPs of each image `(batch,)`; they sum to `total`.
    """

    backbone: float
    encoder_layers: tuple[float, ...]
    gate: float
    other: float
    total: float
    depths: tuple[int, ...]
    per_image: tuple[float, ...]

    @property
    def encoder(self) -> float:
        """All deformable encoder layers."""
        return sum(self.encoder_layers)

    @property
    def batch_size(self) -> int:
        return len(self.depths)

    def as_dict(self) -> dict:
        """The fields plus the derived sums (`encoder`, and a subclass's own)."""
        return {**asdict(self), **self._sums()}

    def _sums(self) -> dict[str, float]:
        return {"encoder": self.encoder}


@dataclass(frozen=True)
class EcoMask2FormerGFlops(EncoderExitGFlops):
    """[`EncoderExitGFlops`] of a Mask2Former-family model: backbone = `pixel_level_module.encoder`, plus

    Attributes:
        pixel_decoder_rest: the pixel decoder without its encoder layers and gate (projections, FPN, mask projection).
        transformer_decoder: `transformer_module` + `class_predictor`.
    """

    pixel_decoder_rest: float
    transformer_decoder: float

    @property
    def pixel_decoder(self) -> float:
        """Pixel decoder as the papers report it: encoder layers + the rest (the gate is reported apart)."""
        return self.encoder + self.pixel_decoder_rest

    def _sums(self) -> dict[str, float]:
        return {"encoder": self.encoder, "pixel_decoder": self.pixel_decoder}


def _tracker_names(model: nn.Module) -> dict[int, str]:
    """Module id -> the name FlopCounterMode's ModuleTracker gives it when `model` is the called root."""
    root = type(model).__name__
    return {id(module): f"{root}.{name}" if name else root for name, module in model.named_modules()}


def count_flops_by_module(
    model: nn.Module, pixel_values: torch.Tensor, **forward_kwargs
) -> tuple[object, Callable[[nn.Module | None], int], int]:
    """One forward `model(pixel_values=..., **forward_kwargs)` under `torch.no_grad()`, counted.

    Returns:
        The outputs, `part(module)` (the FlopCounterMode count of a submodule, 0 for `None`) and the total count
        (counts are 2 per multiply-add, exact ints; see `to_gflops`).
    """
    counter = fvcore_flop_counter()
    # Some models (Deformable DETR) slice a parameter into views; under no_grad such views still say requires_grad
    # (without a grad_fn), which FlopCounterMode's module tracker cannot hook. Counting with the parameters'
    # requires_grad off (restored afterwards) avoids that without changing any computation.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.no_grad(), counter:
            outputs = model(pixel_values=pixel_values, **forward_kwargs)
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    names = _tracker_names(model)

    def part(module: nn.Module | None) -> int:
        return 0 if module is None else counts.get(names[id(module)], 0)

    return outputs, part, counts.get("Global", 0)


def encoder_exit_gflops(
    outputs, *, num_encoder_layers: int | torch.Tensor | None, batch_size: int, backbone: int,
    encoder_layers: list[int], gate: int, other: int, total: int,
) -> dict:
    """The [`EncoderExitGFlops`] fields from counts (2 per multiply-add): GFLOPs, each image's depth and total."""
    depths = _depths_used(outputs, num_encoder_layers, batch_size=batch_size, num_layers=len(encoder_layers))
    return {
        "backbone": to_gflops(backbone),
        "encoder_layers": tuple(to_gflops(f) for f in encoder_layers),
        "gate": to_gflops(gate),
        "other": to_gflops(other),
        "total": to_gflops(total),
        "depths": depths,
        "per_image": _per_image_gflops(total, encoder_layers, depths),
    }


def count_gflops(
    model: nn.Module,
    pixel_values: torch.Tensor,
    *,
    num_encoder_layers: int | torch.Tensor | None = None,
    **forward_kwargs,
) -> EcoMask2FormerGFlops:
    """Count the GFLOPs of `model(pixel_values=..., [num_encoder_layers=...], **forward_kwargs)` by part.

    Works for `transformers.Mask2FormerForUniversalSegmentation` / `Mask2FormerModel` (then leave
    `num_encoder_layers` as None) and for the EcoMask2Former classes. Runs one forward under `torch.no_grad()` in the
    model's current mode (call `model.eval()` first for inference numbers; BatchNorm is counted per mode, as fvcore).

    Per-image totals come from the one batched forward plus attribution, not from solo runs: every counted op has a
    shape-only cost linear in the batch, so the shared parts split evenly over the batch, and encoder layer `i`, run
    on the `A_i` images with depth > i, costs `encoder_layers[i] / A_i` per image. (Tested equal to solo runs.)

    Args:
        model: the model; its forward must accept `pixel_values` (and `num_encoder_layers` when given).
        pixel_values: `(batch, 3, height, width)`.
        num_encoder_layers: an int or a LongTensor `(batch,)` of encoder depths (ecom2f models only).
        **forward_kwargs: passed to the forward (e.g. `pixel_mask`, `output_gate_logits=True`).

    Returns:
        An [`EcoMask2FormerGFlops`].
    """
    if num_encoder_layers is not None:
        forward_kwargs["num_encoder_layers"] = num_encoder_layers
    base = model.model if hasattr(model, "model") and hasattr(model.model, "pixel_level_module") else model
    pixel_decoder = base.pixel_level_module.decoder
    outputs, part, total = count_flops_by_module(model, pixel_values, **forward_kwargs)

    backbone = part(base.pixel_level_module.encoder)
    encoder_layers = [part(layer) for layer in pixel_decoder.encoder.layers]
    gate = part(getattr(pixel_decoder, "gate", None))
    transformer_decoder = part(base.transformer_module) + part(getattr(model, "class_predictor", None))
    return EcoMask2FormerGFlops(
        **encoder_exit_gflops(
            outputs, num_encoder_layers=num_encoder_layers, batch_size=pixel_values.shape[0], backbone=backbone,
            encoder_layers=encoder_layers, gate=gate, total=total,
            other=total - backbone - part(pixel_decoder) - transformer_decoder,
        ),
        pixel_decoder_rest=to_gflops(part(pixel_decoder) - sum(encoder_layers) - gate),
        transformer_decoder=to_gflops(transformer_decoder),
    )


def _per_image_gflops(total: float, encoder_layers: list[float], depths: tuple[int, ...]) -> tuple[float, ...]:
    """Each image's GFLOPs: the parts outside the encoder split evenly over the batch, encoder layer `i` split over
    the images that ran it (every counted op has a shape-only cost linear in the batch)."""
    shared = (total - sum(encoder_layers)) / len(depths)
    active = [sum(d > i for d in depths) for i in range(len(encoder_layers))]  # A_i: images that ran layer i
    return tuple(to_gflops(shared + sum(encoder_layers[i] / active[i] for i in range(depth))) for depth in depths)


def _depths_used(
    outputs, num_encoder_layers: int | torch.Tensor | None, *, batch_size: int, num_layers: int
) -> tuple[int, ...]:
    """Per-image encoder depth: the model's `encoder_layers_used` if it reports one, else the request, else all."""
    used = getattr(outputs, "encoder_layers_used", None)
    if used is None:
        used = num_encoder_layers if num_encoder_layers is not None else num_layers
    if isinstance(used, torch.Tensor) and used.dim() > 0:
        return tuple(int(d) for d in used.tolist())
    return (int(used),) * batch_size


__all__ = [
    "EcoMask2FormerGFlops",
    "EncoderExitGFlops",
    "FVCORE_EXTRA_FORMULAS",
    "count_flops_by_module",
    "count_gflops",
    "deformable_encoder_tokens",
    "deformable_layer_gflops",
    "encoder_exit_gflops",
    "fvcore_flop_counter",
    "to_gflops",
]
