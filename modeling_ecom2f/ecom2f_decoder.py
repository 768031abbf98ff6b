"""Faster stand-ins for two modules of the stock masked-attention transformer decoder: the same parameters (and so
the same state-dict keys) and the same outputs up to float rounding, less work per layer at inference.

- `EcoMaskedCrossAttention`: the decoder's masked cross-attention (`nn.MultiheadAttention`). The stock decoder layer
  calls it with the default `need_weights=True`, so PyTorch computes the attention explicitly (scores, softmax,
  their average over heads) for weights the stock decoder never returns (it collects only the self-attention's);
  without them PyTorch runs its fused scaled-dot-product attention with the same boolean mask.
- `EcoMaskPredictor`: the mask predictor thresholds the interpolated mask logits once per query and repeats the
  boolean mask over the heads, where the stock one repeats the float probabilities and thresholds every copy (the
  same boolean mask, a few times less memory traffic).

`use_fast_decoder_modules` swaps the classes of those modules of a built stock `Mask2FormerTransformerModule` in
place: nothing is rebuilt, so random initialisation and loaded weights are untouched.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskPredictor


class EcoMaskedCrossAttention(nn.MultiheadAttention):
    """`nn.MultiheadAttention` that skips the head-averaged attention weights unless asked for them.

    `fused=False` restores the stock call (the ONNX export does: torch's ONNX decomposition of CPU fused attention
    fails). Training with attention dropout also keeps the stock path, whose random stream it would change.
    """

    fused: bool = True

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.fused and not (self.training and self.dropout > 0):
            need_weights = False  # the stock decoder layer asks by default and its decoder drops them
        return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                               attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)


class EcoMaskPredictor(Mask2FormerMaskPredictor):
    """The stock mask predictor with its attention mask thresholded before the repeat over heads."""

    def forward(
        self, outputs: torch.Tensor, pixel_embeddings: torch.Tensor, attention_mask_target_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask_embeddings = self.mask_embedder(outputs.transpose(0, 1))  # (B, Q, C)
        outputs_mask = torch.einsum("bqc, bchw -> bqhw", mask_embeddings, pixel_embeddings)
        logits = nn.functional.interpolate(outputs_mask, size=attention_mask_target_size, mode="bilinear",
                                           align_corners=False)
        blocked = logits.sigmoid().flatten(2) < 0.5  # (B, Q, h*w): True = not attended, as the stock threshold
        attention_mask = blocked.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)  # (B*heads, Q, h*w)
        return outputs_mask, attention_mask.detach()


def use_fast_decoder_modules(transformer_module: nn.Module) -> None:
    """Turn the cross-attention of every decoder layer and the mask predictor of a stock
    `Mask2FormerTransformerModule` into `EcoMaskedCrossAttention` / `EcoMaskPredictor` (class swap in place: the
    subclasses add no parameter or buffer)."""
    decoder = transformer_module.decoder
    for layer in decoder.layers:
        if type(layer.cross_attn) is nn.MultiheadAttention:
            layer.cross_attn.__class__ = EcoMaskedCrossAttention
    if type(decoder.mask_predictor) is Mask2FormerMaskPredictor:
        decoder.mask_predictor.__class__ = EcoMaskPredictor
