"""Tiny random-init Mask2Former-family configs and models that run on a CPU in milliseconds, and random labels."""

from __future__ import annotations

import torch
from transformers import Mask2FormerConfig, SwinConfig

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation

STAGES = ["stage1", "stage2", "stage3", "stage4"]

# The stock SwinBackbone keeps a final `swin.layernorm` that its feature maps never pass through (stock Mask2Former
# leaves it without gradient too); it is the only parameter exempt from the gradient checks.
UNUSED_IN_STOCK = ("pixel_level_module.encoder.swin.layernorm.",)


def tiny_kwargs(**overrides) -> dict:
    """Keyword arguments of a tiny Mask2Former-family config (Swin backbone, 32-d pixel decoder)."""
    swin = SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7, drop_path_rate=0.0,
        out_features=STAGES,
    )
    kwargs = dict(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, num_attention_heads=4,
        encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=4, decoder_layers=3, num_queries=10,
        num_labels=5, train_num_points=256,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_eco_config(**overrides) -> EcoMask2FormerConfig:
    return EcoMask2FormerConfig(**tiny_kwargs(**overrides))


def tiny_stock_config(**overrides) -> Mask2FormerConfig:
    return Mask2FormerConfig(**tiny_kwargs(**overrides))


def tiny_eco_model(seed: int = 0, **overrides) -> EcoMask2FormerForUniversalSegmentation:
    """A tiny EcoMask2Former in eval mode, initialised after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    return EcoMask2FormerForUniversalSegmentation(tiny_eco_config(**overrides)).eval()


def tiny_stock_and_eco(*, prepare_stock=None):
    """A tiny stock Mask2Former and an EcoMask2Former holding its weights (both eval; only the gate is new).

    `prepare_stock(stock)` may change the stock weights (e.g. randomise them) before the ecom2f model takes them.
    """
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    stock = Mask2FormerForUniversalSegmentation(tiny_stock_config()).eval()
    if prepare_stock is not None:
        prepare_stock(stock)
    eco = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()
    missing = eco.load_state_dict(stock.state_dict(), strict=False).missing_keys
    assert all(".gate." in k for k in missing), missing
    return stock, eco


def tiny_labels(batch_size: int, height: int, width: int, *, num_labels: int = 5, seed: int = 0):
    """Random binary masks and classes in the format of the image processor (lists of per-image tensors)."""
    generator = torch.Generator().manual_seed(seed)
    mask_labels, class_labels = [], []
    for _ in range(batch_size):
        n = 3
        masks = (torch.rand(n, height, width, generator=generator) > 0.5).float()
        mask_labels.append(masks)
        class_labels.append(torch.randint(0, num_labels, (n,), generator=generator))
    return mask_labels, class_labels
