"""Shared pieces of the detection tests: tiny random-init Deformable DETR configs, models and inputs."""

from __future__ import annotations

import torch
from transformers import DeformableDetrConfig, ResNetConfig

from modeling_ecom2f import EcoDeformableDetrConfig, EcoDeformableDetrForObjectDetection


def tiny_detr_kwargs(**overrides) -> dict:
    """Keyword arguments of a tiny Deformable DETR (ResNet backbone with 3 outputs + 1 extra level, 32-d model)."""
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 32], depths=[1, 1, 1, 1], layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    kwargs = dict(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
        encoder_layers=4, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=12, num_labels=5, num_feature_levels=4,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_eco_detr_config(**overrides) -> EcoDeformableDetrConfig:
    return EcoDeformableDetrConfig(**tiny_detr_kwargs(**overrides))


def tiny_stock_detr_config(**overrides) -> DeformableDetrConfig:
    return DeformableDetrConfig(**tiny_detr_kwargs(**overrides))


def tiny_eco_detector(seed: int = 0, **overrides) -> EcoDeformableDetrForObjectDetection:
    torch.manual_seed(seed)
    return EcoDeformableDetrForObjectDetection(tiny_eco_detr_config(**overrides)).eval()


def detection_pixels(batch: int = 2, height: int = 64, width: int = 96, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def detection_labels(batch: int, *, num_labels: int = 5, seed: int = 0) -> list[dict]:
    """Random targets in the stock format: `class_labels` `(n,)`, `boxes` `(n, 4)` normalised cxcywh."""
    generator = torch.Generator().manual_seed(seed)
    labels = []
    for _ in range(batch):
        centres = torch.rand(3, 2, generator=generator) * 0.5 + 0.25
        sizes = torch.rand(3, 2, generator=generator) * 0.3 + 0.1
        labels.append({"class_labels": torch.randint(0, num_labels, (3,), generator=generator),
                       "boxes": torch.cat([centres, sizes], 1)})
    return labels
