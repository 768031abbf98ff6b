"""GFLOPs of Deformable DETR detectors (stock transformers and EcoDeformableDetr) by part, per encoder exit.

Same convention as `ecom2f_flops`: fvcore's, one multiply-add = one FLOP, the deformable
sampling itself (grid_sample or embedding_bag) not counted, norms / bilinear upsampling / SDPA counted with the
fvcore extras of `ecom2f_flops.fvcore_flop_counter`.

Attribution by module path: backbone = `model.backbone`; input projections = `model.input_proj` (incl. the extra
stride-2 levels); encoder layer i = `model.encoder.layers.{i}`; gate = `model.gate`; TRC = `model.token_recalibration`
(both ecom2f only); decoder = `model.decoder` + `model.reference_points` + `model.query_position_embeddings` +
`class_embed` + `bbox_embed`; everything else (position embeddings, masks, a loss) is `other`, so the parts sum to
the total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .ecom2f_flops import _depths_used, _per_image_gflops, _tracker_names, fvcore_flop_counter, to_gflops


@dataclass(frozen=True)
class EcoDeformableDetrGFlops:
    """GFLOPs (fvcore convention) of one detector forward over a batch, by part; `total` is the sum of the parts.

    Attributes:
        backbone, input_projections, gate, token_recalibration, decoder, other, total: see the module docstring.
        encoder_layers: per deformable encoder layer `(num_layers,)`; 0.0 for layers no image reached.
        depths: encoder layers used by each image `(batch,)`.
        per_image: total GFLOPs of each image `(batch,)`; they sum to `total`.
    """

    backbone: float
    input_projections: float
    encoder_layers: tuple[float, ...]
    gate: float
    token_recalibration: float
    decoder: float
    other: float
    total: float
    depths: tuple[int, ...]
    per_image: tuple[float, ...]

    @property
    def encoder(self) -> float:
        """All deformable encoder layers."""
        return sum(self.encoder_layers)

    def as_dict(self) -> dict:
        return {**asdict(self), "encoder": self.encoder}


def count_detection_gflops(
    model: nn.Module,
    pixel_values: torch.Tensor,
    *,
    num_encoder_layers: int | torch.Tensor | None = None,
    **forward_kwargs,
) -> EcoDeformableDetrGFlops:
    """Count the GFLOPs of `model(pixel_values=..., [num_encoder_layers=...], **forward_kwargs)` by part.

    Works for `transformers.DeformableDetrForObjectDetection` (leave `num_encoder_layers` as None) and
    `EcoDeformableDetrForObjectDetection`. One forward under `torch.no_grad()` in the model's current mode.
    Per-image totals split the shared parts evenly over the batch and encoder layer `i` over the images that ran it
    (every counted op has a shape-only cost linear in the batch), as `ecom2f_flops.count_gflops` does.
    """
    if num_encoder_layers is not None:
        forward_kwargs["num_encoder_layers"] = num_encoder_layers
    base = model.model
    layers = base.encoder.layers
    counter = fvcore_flop_counter()
    # Deformable DETR slices its query embedding weight into views; under no_grad such views of a parameter still
    # say requires_grad (without a grad_fn), which FlopCounterMode's module tracker cannot hook. Counting with the
    # parameters' requires_grad off (restored afterwards) avoids that without changing any computation.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.no_grad(), counter:
            outputs = model(pixel_values=pixel_values, **forward_kwargs)
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}  # 2 per multiply-add
    names = _tracker_names(model)

    def part(module: nn.Module | None) -> int:
        return 0 if module is None else counts.get(names[id(module)], 0)

    total = counts.get("Global", 0)
    backbone = part(base.backbone)
    input_projections = part(base.input_proj)
    encoder_layers = [part(layer) for layer in layers]
    gate = part(getattr(base, "gate", None))
    trc = part(getattr(base, "token_recalibration", None))
    decoder = (
        part(base.decoder) + part(getattr(base, "reference_points", None))
        + part(getattr(base, "query_position_embeddings", None))
        + part(getattr(model, "class_embed", None)) + part(getattr(model, "bbox_embed", None))
    )
    other = total - backbone - input_projections - sum(encoder_layers) - gate - trc - decoder

    batch_size = pixel_values.shape[0]
    depths = _depths_used(outputs, num_encoder_layers, batch_size=batch_size, num_layers=len(layers))
    per_image = _per_image_gflops(total, encoder_layers, depths)
    return EcoDeformableDetrGFlops(
        backbone=to_gflops(backbone),
        input_projections=to_gflops(input_projections),
        encoder_layers=tuple(to_gflops(f) for f in encoder_layers),
        gate=to_gflops(gate),
        token_recalibration=to_gflops(trc),
        decoder=to_gflops(decoder),
        other=to_gflops(other),
        total=to_gflops(total),
        depths=depths,
        per_image=per_image,
    )


def detection_gflops_per_exit(model: nn.Module, pixel_values: torch.Tensor, **forward_kwargs) -> dict[int, EcoDeformableDetrGFlops]:
    """`count_detection_gflops` of an ecom2f detector at every allowed exit (`model.config.exit_layers`)."""
    return {
        depth: count_detection_gflops(model, pixel_values, num_encoder_layers=depth, **forward_kwargs)
        for depth in model.config.exit_layers
    }


__all__ = ["EcoDeformableDetrGFlops", "count_detection_gflops", "detection_gflops_per_exit"]
