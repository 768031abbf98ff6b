"""Input checks of the EcoMask2Former forward: clear `ValueError`s instead of errors from deep inside torch.

The smallest image the model can run is derived from the config and the modules, not hard-coded: the pixel decoder
projects the backbone's coarsest map with a `GroupNorm` (stock Mask2Former, arXiv 2112.01527), and a GroupNorm over a
single value per group is refused by torch ("Expected more than 1 value per channel"). The coarsest map has
`ceil(height / stride) x ceil(width / stride)` cells, `stride` being the backbone's output stride of its last stage.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def backbone_stage_strides(backbone_config) -> dict[str, int] | None:
    """Output stride of each backbone stage, `{"stage1": 4, ...}`, or `None` for a backbone this cannot tell.

    Hierarchical backbones halve the resolution at every stage after the stem: Swin (arXiv 2103.14030) starts at
    `patch_size`, ResNet/ConvNeXt-style configs (with `hidden_sizes`) at 4 (their stem: stride-2 conv + stride-2
    pool, or a 4x4 patchify convolution).
    """
    if backbone_config is None:
        return None
    depths = getattr(backbone_config, "depths", None)
    patch_size = getattr(backbone_config, "patch_size", None)
    if isinstance(patch_size, (tuple, list)):
        patch_size = patch_size[0]
    if isinstance(patch_size, int) and depths:
        stem = patch_size
    elif getattr(backbone_config, "hidden_sizes", None) and depths:
        stem = 4
    else:
        return None
    return {f"stage{i + 1}": stem * 2**i for i in range(len(depths))}


def coarsest_backbone_stride(config) -> int | None:
    """Stride of the coarsest backbone map the pixel decoder reads (the last of `out_features`), or `None`."""
    backbone_config = getattr(config, "backbone_config", None)
    strides = backbone_stage_strides(backbone_config)
    out_features = getattr(backbone_config, "out_features", None)
    if strides is None or not out_features or out_features[-1] not in strides:
        return None
    return strides[out_features[-1]]


def min_values_per_group(projections: nn.Module) -> tuple[int, nn.GroupNorm] | None:
    """The fewest channels per group over the GroupNorms in `projections`, with that GroupNorm (`None` if none)."""
    norms = [module for module in projections.modules() if isinstance(module, nn.GroupNorm)]
    if not norms:
        return None
    norm = min(norms, key=lambda module: module.num_channels // module.num_groups)
    return norm.num_channels // norm.num_groups, norm


def check_pixel_values(
    pixel_values: torch.Tensor, *, config, input_projections: nn.Module, extra_levels: int = 0
) -> None:
    """Raise a `ValueError` naming `pixel_values` for an input the model cannot run.

    Checks: 4 dimensions `(batch, channels, height, width)`; at least one image; `backbone_config.num_channels`
    channels; images large enough that the coarsest map holds more than one value per GroupNorm group in
    `input_projections` (see the module docstring). `extra_levels`: levels made below the backbone's coarsest map
    by stride-2 convolutions (Deformable DETR, arXiv 2010.04159), each halving it again. Shapes only: no host sync.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a 4-D tensor (batch_size, channels, height, width), got {shape}")
    batch, channels, height, width = pixel_values.shape
    if batch == 0:
        raise ValueError("pixel_values holds 0 images (shape (0, ...)): pass a batch of at least one image")
    expected = getattr(getattr(config, "backbone_config", None), "num_channels", None)
    if expected is not None and channels != expected:
        raise ValueError(
            f"pixel_values has {channels} channels, the backbone expects {expected} (shape {tuple(pixel_values.shape)});"
            " convert the images to RGB first (the image processor does this)"
        )
    if height == 0 or width == 0:
        raise ValueError(f"pixel_values has empty images of {height}x{width} pixels")
    stride, per_group = coarsest_backbone_stride(config), min_values_per_group(input_projections)
    if stride is None or per_group is None:
        return
    stride *= 2**extra_levels
    channels_per_group, norm = per_group
    cells = math.ceil(height / stride) * math.ceil(width / stride)
    if cells * channels_per_group < 2:
        raise ValueError(
            f"pixel_values has images of {height}x{width} pixels, too small for this model: the coarsest feature "
            f"map (stride {stride}) would be {math.ceil(height / stride)}x{math.ceil(width / stride)}, and its "
            f"input projection's GroupNorm ({norm.num_groups} groups over {norm.num_channels} channels) needs more than "
            f"one value per group. Use images taller or wider than {stride} pixels (the image processor's resize "
            "does this)"
        )
