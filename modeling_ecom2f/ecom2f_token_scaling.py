"""PRO-SCALE pieces beside the staged encoder: token re-calibration (TRC) and the light pixel embedding (LPE).

PRO-SCALE (arXiv 2404.14657, method figure: TRC in Sec. 3.1.1, LPE in Sec. 3.1.2) as released in the authors' code
(`proscale.py`, config `IS_EXCITE_CONV: False`, `EXCITE_TEMP: 0.1`, `MASK_OUTPUT_OPS: maxpool`).
"""

from __future__ import annotations

import torch
from torch import nn


class EcoTokenRecalibration(nn.Module):
    """TRC: the finest encoder level (1/8) gates the tokens of the coarser levels before they enter the encoder.

    For each coarser level, the input-projected 1/8 map is resized (bilinear) to that level's size, one shared
    `Linear(feature_size, 1)` scores every position, and the level's tokens are multiplied by
    `sigmoid(temperature * score)`.

    The released code turns its `(batch, tokens, channels)` tensor into a map with `view(-1, C, H, W)`, without a
    transpose, which mixes spatial positions into the channel axis before the linear map. Here the map is read
    channel-last with proper permutes, so the linear map sees one position's channels at a time.

    Args:
        feature_size: channels of the encoder levels.
        temperature: scale of the logit (0.1 in the released configs).
    """

    def __init__(self, *, feature_size: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.proj = nn.Linear(feature_size, 1)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """`maps`: input-projected levels coarse to fine, each `(batch, C, h, w)`; returns them with every level
        but the last (the guide) re-weighted."""
        guide = maps[-1]
        recalibrated = []
        for level_map in maps[:-1]:
            resized = nn.functional.interpolate(guide, size=level_map.shape[-2:], mode="bilinear", align_corners=False)
            score = self.proj(resized.permute(0, 2, 3, 1))  # (B, h, w, C) -> (B, h, w, 1)
            weight = torch.sigmoid(self.temperature * score).permute(0, 3, 1, 2)  # (B, 1, h, w)
            recalibrated.append(level_map * weight)
        return recalibrated + [guide]


def light_pixel_embedding(*, feature_size: int) -> nn.Sequential:
    """LPE: max-pool (3x3, stride 1) + GroupNorm(32) + ReLU in place of the FPN's 3x3 output convolution.

    Index 1 is the GroupNorm as in the stock `Sequential(conv, GroupNorm, ReLU)`, so a stock checkpoint's norm
    weights still load into it.
    """
    return nn.Sequential(
        nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
        nn.GroupNorm(32, feature_size),
        nn.ReLU(),
    )


#: TRC's former, Mask2Former-specific name (the Deformable DETR model uses the same module).
EcoMask2FormerTokenRecalibration = EcoTokenRecalibration
