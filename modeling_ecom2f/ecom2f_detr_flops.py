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

from dataclasses import dataclass

import torch
from torch import nn

from .ecom2f_flops import EncoderExitGFlops, count_flops_by_module, encoder_exit_gflops, to_gflops


@dataclass(frozen=True)
class EcoDeformableDetrGFlops(EncoderExitGFlops):
    """[`EncoderExitGFlops`] of a Deformable DETR detector (backbone = `model.backbone`, gate = `model.gate`), plus

    Attributes:
        input_projections, token_recalibration, decoder: see the module docstring.
    """

    input_projections: float
    token_recalibration: float
    decoder: float


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
    outputs, part, total = count_flops_by_module(model, pixel_values, **forward_kwargs)

    backbone = part(base.backbone)
    input_projections = part(base.input_proj)
    encoder_layers = [part(layer) for layer in base.encoder.layers]
    gate = part(getattr(base, "gate", None))
    trc = part(getattr(base, "token_recalibration", None))
    decoder = (
        part(base.decoder) + part(getattr(base, "reference_points", None))
        + part(getattr(base, "query_position_embeddings", None))
        + part(getattr(model, "class_embed", None)) + part(getattr(model, "bbox_embed", None))
    )
    return EcoDeformableDetrGFlops(
        **encoder_exit_gflops(
            outputs, num_encoder_layers=num_encoder_layers, batch_size=pixel_values.shape[0], backbone=backbone,
            encoder_layers=encoder_layers, gate=gate, total=total,
            other=total - backbone - input_projections - sum(encoder_layers) - gate - trc - decoder,
        ),
        input_projections=to_gflops(input_projections),
        token_recalibration=to_gflops(trc),
        decoder=to_gflops(decoder),
    )


def detection_gflops_per_exit(model: nn.Module, pixel_values: torch.Tensor, **forward_kwargs) -> dict[int, EcoDeformableDetrGFlops]:
    """`count_detection_gflops` of an ecom2f detector at every allowed exit (`model.config.exit_layers`)."""
    return {
        depth: count_detection_gflops(model, pixel_values, num_encoder_layers=depth, **forward_kwargs)
        for depth in model.config.exit_layers
    }


__all__ = ["EcoDeformableDetrGFlops", "count_detection_gflops", "detection_gflops_per_exit"]
