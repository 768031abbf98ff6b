"""Install the faster stand-in modules in a built model: each is a subclass of the stock (or ecom2f) module with no
parameter or buffer of its own, swapped in place (`module.__class__`), so state-dict keys, initialisation and loaded
weights are untouched and outputs equal the stock ones up to float rounding.

- transformer decoder: `ecom2f_decoder` (cross-attention without unused weights, mask predictor thresholding
  before the repeat over heads) and `ecom2f_masked_decoder` (the all-blocked-row rule on booleans);
- deformable encoder layers: `ecom2f_fast_encoder_layer` (row-blocked feed-forward at inference);
- Swin backbone blocks: `ecom2f_swin_layer` (windows by precomputed row indices, fused q/k/v, no full shift mask);
- every other `nn.Linear` (deformable attention projections, patch merging, heads): `ecom2f_onednn_linear`
  (oneDNN at CPU inference).
"""

from __future__ import annotations

from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerTransformerModule,
)
from transformers.models.swin.modeling_swin import SwinLayer

from .ecom2f_decoder import use_fast_decoder_modules
from .ecom2f_encoder import EcoMask2FormerPixelDecoderEncoderLayer
from .ecom2f_fast_encoder_layer import EcoFastPixelDecoderEncoderLayer
from .ecom2f_masked_decoder import EcoMaskedAttentionDecoder
from .ecom2f_onednn_linear import EcoLinear
from .ecom2f_swin_layer import EcoSwinLayer

# stock (or ecom2f) class -> its stand-in
STAND_INS: dict[type, type] = {
    Mask2FormerMaskedAttentionDecoder: EcoMaskedAttentionDecoder,
    EcoMask2FormerPixelDecoderEncoderLayer: EcoFastPixelDecoderEncoderLayer,
    SwinLayer: EcoSwinLayer,
    nn.Linear: EcoLinear,
}


def use_fast_modules(model: nn.Module) -> None:
    """Swap every module of `model` whose exact class has a stand-in (`STAND_INS`, and the decoder modules of
    `ecom2f_decoder` in every `transformer_module`) for the stand-in, in place."""
    for module in model.modules():
        if isinstance(module, Mask2FormerTransformerModule):
            use_fast_decoder_modules(module)
        stand_in = STAND_INS.get(type(module))
        if stand_in is not None:
            module.__class__ = stand_in
