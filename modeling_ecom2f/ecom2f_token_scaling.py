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

    Two layouts of the guide (`layout`):

    - `"standard"`: the map is read channel-last with proper permutes, so the linear map sees one position's
      channels at a time.
    - `"official"`: the computation of the released code (`proscale.py`, class `TRC`, linear variant): the guide is
      held token-major `(batch, tokens, C)` and turned into a map with `view(-1, C, H, W)` without a transpose, and
      the resized map is read back with `reshape(B, L, C)`, so spatial positions and channels mix before the linear
      map. The released weights were trained against it; the converter sets it for their checkpoints.

    Args:
        feature_size: channels of the encoder levels.
        temperature: scale of the logit (0.1 in the released configs).
        layout: `"standard"` or `"official"`.
    """

    def __init__(self, *, feature_size: int, temperature: float, layout: str = "standard") -> None:
        super().__init__()
        if layout not in ("standard", "official"):
            raise ValueError(f"token_recalibration_layout must be 'standard' or 'official', got {layout!r}")
        self.temperature = temperature
        self.layout = layout
        self.proj = nn.Linear(feature_size, 1)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """`maps`: input-projected levels coarse to fine, each `(batch, C, h, w)`; returns them with every level
        but the last (the guide) re-weighted."""
        guide = maps[-1]
        if self.layout == "official":
            batch, channels, height, width = guide.shape
            # (B, C, H, W) -> token-major (B, H*W, C) -> reinterpreted as (B, C, H, W), as the released code does.
            guide = guide.flatten(2).transpose(1, 2).reshape(batch, channels, height, width)
        recalibrated = []
        for level_map in maps[:-1]:
            resized = nn.functional.interpolate(guide, size=level_map.shape[-2:], mode="bilinear", align_corners=False)
            if self.layout == "official":
                batch, channels, height, width = level_map.shape
                score = self.proj(resized.reshape(batch, height * width, channels))  # memory read as (B, h*w, C)
                weight = torch.sigmoid(self.temperature * score).transpose(1, 2).reshape(batch, 1, height, width)
            else:
                score = self.proj(resized.permute(0, 2, 3, 1))  # (B, h, w, C) -> (B, h, w, 1)
                weight = torch.sigmoid(self.temperature * score).permute(0, 3, 1, 2)  # (B, 1, h, w)
            recalibrated.append(level_map * weight)
        return recalibrated + [maps[-1]]


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


