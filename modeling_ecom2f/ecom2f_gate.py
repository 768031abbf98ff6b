"""The ECO-M2F gating network: picks an encoder exit per image from its coarsest input-projected tokens."""

from __future__ import annotations

import torch
from torch import nn


class EcoMask2FormerGate(nn.Module):
    """Mean-pooled feature map -> a tiny classifier over the allowed exits.

    ECO-M2F step 3 (arXiv 2404.15244 Sec. 3.3; GYeow/ECO-M2F `mask2former/modeling/pixel_decoder/gating.py`):
    the gate reads the 1/32 level after the pixel decoder's input projection
    (Conv1x1 + GroupNorm), before any encoder layer and without position embeddings, averages it over space and
    scores every exit with one linear layer. `hidden_size` adds one ReLU hidden layer for a slightly larger gate.

    Args:
        in_channels: channels of the pooled map (`config.feature_size`).
        num_exits: number of allowed exits (`len(config.exit_layers)`).
        hidden_size: width of the optional hidden layer; `None` gives the paper's single linear layer.
    """

    def __init__(self, *, in_channels: int, num_exits: int, hidden_size: int | None = None) -> None:
        super().__init__()
        if hidden_size is None:
            self.classifier = nn.Linear(in_channels, num_exits)
        else:
            self.classifier = nn.Sequential(
                nn.Linear(in_channels, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_exits)
            )

    def forward(self, feature_map: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Score the exits.

        Args:
            feature_map: `(batch, channels, height, width)`.
            padding_mask: `(batch, height, width)`, `True` on padding, which the mean then leaves out.

        Returns:
            Exit logits `(batch, num_exits)`.
        """
        if padding_mask is None:
            pooled = feature_map.mean(dim=(2, 3))  # (B, C)
        else:
            valid = (~padding_mask).unsqueeze(1).to(feature_map.dtype)  # (B, 1, H, W)
            pooled = (feature_map * valid).sum(dim=(2, 3)) / valid.sum(dim=(2, 3)).clamp(min=1.0)  # (B, C)
        return self.classifier(pooled)
