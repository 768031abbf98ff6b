"""Fault reports of the recipe: name the images whose model outputs are not finite, instead of crashing deep inside
a post-processor or silently scoring a NaN prediction.

Step 2 (`segmentation.derive_rows`) and the evaluation (`evaluation.BatchEvaluator.records`) call
`check_finite_outputs` on every batch: a NaN/Inf logit is an error that names the image id(s) and the depth, so the
user can drop or repair those images (a corrupt file, NaN pixels) or find the bad weights. Nothing is scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .runtime import RecipeError


def non_finite_images(logits: Sequence[torch.Tensor], image_ids: Sequence) -> list[str]:
    """The ids of the images (axis 0 of every tensor in `logits`) with any NaN or infinite value."""
    bad = torch.zeros(len(image_ids), dtype=torch.bool)
    for tensor in logits:
        bad |= ~torch.isfinite(tensor.detach()).flatten(1).all(1).cpu()
    return [str(image_ids[i]) for i in bad.nonzero().flatten().tolist()]


def check_finite_outputs(outputs, image_ids: Sequence, *, where: str) -> None:
    """Raise `RecipeError` naming the images whose class or mask logits hold NaN/Inf.

    Args:
        outputs: anything with `class_queries_logits` `(B, Q, C)` and `masks_queries_logits` `(B, Q, h, w)`.
        image_ids: the batch's image ids, in order.
        where: what was running, for the message (e.g. "evaluation at depth 3").
    """
    bad = non_finite_images([outputs.class_queries_logits, outputs.masks_queries_logits], image_ids)
    if bad:
        depths = getattr(outputs, "encoder_layers_used", None)
        at = "" if depths is None else f" at encoder depth(s) {sorted(set(torch.as_tensor(depths).tolist()))}"
        raise RecipeError(
            f"{where}: the model output{at} of image(s) {bad} is not finite (NaN or Inf), so they cannot be scored. "
            "Check those images (corrupt file, NaN pixels) and the model weights, or leave the images out"
        )
