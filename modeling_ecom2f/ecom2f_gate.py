"""The ECO-M2F gating network: picks an encoder exit per image from its coarsest input-projected tokens."""

from __future__ import annotations

import torch
from torch import nn


#: How the gate pools its input map: the paper's spatial mean, or mean and standard deviation.
GATE_POOLINGS = ("mean", "mean_std")


class EcoExitGate(nn.Module):
    """Mean-pooled feature map -> a tiny classifier over the allowed exits.

    ECO-M2F step 3 (arXiv 2404.15244 Sec. 3.3; GYeow/ECO-M2F `mask2former/modeling/pixel_decoder/gating.py`):
    the gate reads the 1/32 level after the pixel decoder's input projection
    (Conv1x1 + GroupNorm), before any encoder layer and without position embeddings, averages it over space and
    scores every exit with one linear layer. `hidden_size` adds one ReLU hidden layer for a slightly larger gate, and
    `pooling="mean_std"` also feeds the per-channel spatial standard deviation: the input projection ends in a
    GroupNorm, which normalises away much of what a mean alone could tell (a richer input, not the paper's).

    The same gate serves every ecom2f model (EcoMask2Former's pixel decoder, EcoDeformableDetr's encoder).

    Args:
        in_channels: channels of the pooled map (`config.feature_size` / `config.d_model`).
        num_exits: number of allowed exits (`len(config.exit_layers)`).
        hidden_size: width of the optional hidden layer; `None` gives the paper's single linear layer.
        pooling: `"mean"` (the paper) or `"mean_std"` (mean and standard deviation over space, `2 * in_channels`).
    """

    def __init__(
        self, *, in_channels: int, num_exits: int, hidden_size: int | None = None, pooling: str = "mean"
    ) -> None:
        super().__init__()
        if pooling not in GATE_POOLINGS:
            raise ValueError(f"gate_pooling must be one of {GATE_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        features = in_channels * (2 if pooling == "mean_std" else 1)
        if hidden_size is None:
            self.classifier = nn.Linear(features, num_exits)
        else:
            self.classifier = nn.Sequential(
                nn.Linear(features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_exits)
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
            spatial_mean = lambda x: x.mean(dim=(2, 3))  # noqa: E731
        else:
            valid = (~padding_mask).unsqueeze(1).to(feature_map.dtype)  # (B, 1, H, W)
            count = valid.sum(dim=(2, 3)).clamp(min=1.0)  # (B, 1)
            spatial_mean = lambda x: (x * valid).sum(dim=(2, 3)) / count  # noqa: E731
        pooled = spatial_mean(feature_map)  # (B, C)
        if self.pooling == "mean_std":
            std = spatial_mean((feature_map - pooled[:, :, None, None]).pow(2)).clamp(min=1e-12).sqrt()  # (B, C)
            pooled = torch.cat([pooled, std], dim=1)  # (B, 2C)
        return self.classifier(pooled)


#: The gate's former, Mask2Former-specific name (saved code and user code may import it).

__all__ = ["GATE_POOLINGS", "EcoExitGate"]
