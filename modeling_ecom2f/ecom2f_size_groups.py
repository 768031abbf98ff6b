"""Mixed-size batches: every image gets what it gets alone.

Padding cannot be made invisible everywhere in a Mask2Former / Deformable DETR forward: Swin's (shifted) windows and
patch merging see the padded tokens, every convolution at the image border reads padding instead of its own zero
padding, and the GroupNorms of the input projections and the FPN pool their statistics over the whole map. So
stock transformers Mask2Former gives an image different logits in a padded batch than alone (upstream transformers
issue 39382), and an ECO-M2F gate (arXiv 2404.15244, Sec. 3.3) that reads the pooled input projection can pick
another depth for it.

The ecom2f models therefore run a padded batch per *size group*: the images whose unpadded extent (from
`pixel_mask`, padding at the bottom/right as the image processors make it) is the same run together, cropped to
that extent, exactly as they run alone; the outputs are then padded back into one batch (`merge_group_outputs`).
A batch without `pixel_mask`, or whose mask is all ones, takes the one-pass path unchanged (`size_groups` returns
`None`): same operations, same numbers as before and as stock. Deciding that needs the mask's per-image extents on
the host: one small device-to-host copy, once, at the top of the forward (never inside the encoder loop).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
from transformers.utils import ModelOutput

#: Value of `masks_queries_logits` outside an image's own area in a mixed-size batch: "not this segment"
#: (sigmoid 0), finite so that interpolation stays finite, and representable in float16.
MASK_LOGIT_PADDING = -1.0e4


@dataclass(frozen=True)
class EcoSizeGroup:
    """The images of a batch that share one unpadded size.

    Attributes:
        height, width: the images' unpadded size in `pixel_values` (pixels).
        indices: their positions in the batch, increasing, a LongTensor `(n,)` on the batch's device.
    """

    height: int
    width: int
    indices: torch.Tensor

    def crop(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """This group's images of a `(batch, ..., height, width)` tensor, cropped to their size."""
        if tensor is None:
            return None
        return tensor.index_select(0, self.indices)[..., : self.height, : self.width]

    def take(self, values: int | torch.Tensor | None) -> int | torch.Tensor | None:
        """This group's entries of a per-image `(batch, ...)` tensor; an `int` or `None` is shared by every image."""
        return values.index_select(0, self.indices) if isinstance(values, torch.Tensor) else values


def image_extents(pixel_mask: torch.Tensor) -> list[tuple[int, int]]:
    """Per image, the unpadded `(height, width)` of a `(batch, height, width)` mask (1 = image, 0 = padding).

    One device-to-host copy. Raises a `ValueError` naming `pixel_mask` unless each image's ones fill a rectangle at
    the top-left corner (what the image processors make: padding at the bottom and right).
    """
    if pixel_mask.dim() != 3:
        raise ValueError(f"pixel_mask must have shape (batch_size, height, width), got {tuple(pixel_mask.shape)}")
    valid = pixel_mask.bool()
    rows, cols = valid.any(2), valid.any(1)  # (B, H), (B, W)
    row_index = torch.arange(1, rows.shape[1] + 1, device=valid.device)
    col_index = torch.arange(1, cols.shape[1] + 1, device=valid.device)
    stats = torch.stack(
        [rows.sum(1), cols.sum(1), (rows * row_index).amax(1), (cols * col_index).amax(1), valid.flatten(1).sum(1)], 1
    ).tolist()  # (B, 5): rows, columns, last row + 1, last column + 1, ones
    extents = []
    for index, (height, width, last_row, last_col, ones) in enumerate(stats):
        if ones == 0:
            raise ValueError(f"pixel_mask of image {index} is all zeros: the image has no pixels")
        if (last_row, last_col) != (height, width) or ones != height * width:
            raise ValueError(
                f"pixel_mask of image {index} is not a rectangle of ones at the top-left corner (the image processors "
                "pad at the bottom and right); ecom2f models need each image's area there"
            )
        extents.append((height, width))
    return extents


def size_groups(pixel_mask: torch.Tensor | None, pixel_values: torch.Tensor) -> list[EcoSizeGroup] | None:
    """The batch's size groups, or `None` when every image fills `pixel_values` (no mask, or no padding): then the
    one-pass forward already gives every image what it gets alone.

    Groups come in order of their first image; a batch of one padded size gives one group (cropped).
    """
    if pixel_mask is None:
        return None
    height, width = pixel_values.shape[-2:]
    if tuple(pixel_mask.shape) != (pixel_values.shape[0], height, width):
        raise ValueError(
            f"pixel_mask must have shape (batch_size, height, width) = {(pixel_values.shape[0], height, width)} like "
            f"pixel_values, got {tuple(pixel_mask.shape)}"
        )
    extents = image_extents(pixel_mask)
    if all(extent == (height, width) for extent in extents):
        return None
    members: dict[tuple[int, int], list[int]] = {}
    for index, extent in enumerate(extents):
        members.setdefault(extent, []).append(index)
    device = pixel_values.device
    return [
        EcoSizeGroup(height=h, width=w, indices=torch.tensor(indices, dtype=torch.long, device=device))
        for (h, w), indices in members.items()
    ]


def pad_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images `(channels, h_i, w_i)` padded with zeros at the bottom/right into one batch, as the image processors
    pad, with the matching `pixel_mask` `(batch, h_max, w_max)` (1 on each image, 0 on padding)."""
    height, width = max(x.shape[-2] for x in images), max(x.shape[-1] for x in images)
    pixel_values = images[0].new_zeros(len(images), images[0].shape[0], height, width)
    pixel_mask = torch.zeros(len(images), height, width, dtype=torch.long, device=images[0].device)
    for i, image in enumerate(images):
        pixel_values[i, :, : image.shape[-2], : image.shape[-1]] = image
        pixel_mask[i, : image.shape[-2], : image.shape[-1]] = 1
    return pixel_values, pixel_mask


def merge_group_tensors(
    parts: list[torch.Tensor], groups: list[EcoSizeGroup], *, batch_size: int, batch_dim: int = 0, fill: float = 0.0
) -> torch.Tensor:
    """One batch tensor from per-group tensors: every other dimension is padded at its end to the largest group's
    size with `fill`, and each group's rows land at its images' positions (differentiable)."""
    shape = [max(part.shape[d] for part in parts) for d in range(parts[0].dim())]
    shape[batch_dim] = batch_size
    merged = parts[0].new_full(shape, fill)
    for part, group in zip(parts, groups):
        if list(part.shape[:batch_dim] + part.shape[batch_dim + 1 :]) != shape[:batch_dim] + shape[batch_dim + 1 :]:
            padded_shape = list(shape)
            padded_shape[batch_dim] = part.shape[batch_dim]
            padded = part.new_full(padded_shape, fill)
            padded[tuple(slice(0, size) for size in part.shape)] = part
            part = padded
        merged = merged.index_copy(batch_dim, group.indices, part)
    return merged


def _merge_values(values: list, groups: list[EcoSizeGroup], *, batch_size: int, batch_dim: int, fill: float):
    first = values[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return merge_group_tensors(values, groups, batch_size=batch_size, batch_dim=batch_dim, fill=fill)
    if isinstance(first, (tuple, list)):
        merged = [
            _merge_values(list(items), groups, batch_size=batch_size, batch_dim=batch_dim, fill=fill)
            for items in zip(*values)
        ]
        return type(first)(merged)
    raise TypeError(f"cannot merge per-group outputs of type {type(first).__name__}")


def merge_group_outputs(
    outputs: list[ModelOutput],
    groups: list[EcoSizeGroup],
    *,
    batch_size: int,
    batch_dims: dict[str, int] | None = None,
    fills: dict[str, float] | None = None,
) -> ModelOutput:
    """One output for the batch from the outputs of its size groups (all of the same class).

    Every tensor field (and every tensor in a tuple field) is merged with `merge_group_tensors`: batch axis
    `batch_dims.get(name, 0)`, padding `fills.get(name, 0.0)`. Maps are padded at the bottom/right to the largest
    group's map; token sequences (Deformable DETR's flattened levels) get zero tokens at their end.
    """
    batch_dims, fills = batch_dims or {}, fills or {}
    merged = {
        field.name: _merge_values(
            [getattr(output, field.name) for output in outputs], groups, batch_size=batch_size,
            batch_dim=batch_dims.get(field.name, 0), fill=fills.get(field.name, 0.0),
        )
        for field in fields(outputs[0])
    }
    return type(outputs[0])(**merged)


def run_size_groups(
    groups: list[EcoSizeGroup], run: Callable[[EcoSizeGroup], ModelOutput], *, batch_size: int,
    batch_dims: dict[str, int] | None = None, fills: dict[str, float] | None = None,
) -> ModelOutput:
    """`run(group)` for every size group (each a batch of one size, cropped), merged into one batch output."""
    outputs = [run(group) for group in groups]
    return merge_group_outputs(outputs, groups, batch_size=batch_size, batch_dims=batch_dims, fills=fills)


__all__ = [
    "MASK_LOGIT_PADDING",
    "EcoSizeGroup",
    "image_extents",
    "merge_group_outputs",
    "merge_group_tensors",
    "pad_images",
    "run_size_groups",
    "size_groups",
]
