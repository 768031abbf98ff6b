"""Training augmentation on (image, panoptic id map) pairs: random scale, crop, horizontal flip.

This is Mask2Former's large-scale-jitter recipe (detectron2 ``ResizeScale`` + ``FixedSizeCrop`` + ``RandomFlip``,
used for COCO with scales 0.1..2.0 and a 1024 crop): the image is resized by
``s * min(crop_h / H, crop_w / W)`` with ``s ~ U(min_scale, max_scale)``, then a random ``crop_size`` window is
cut (and, with ``pad``, padded up to it), then flipped with probability ``flip_probability``. The ADE20K and
Cityscapes recipes (random short edge, 512 / 512x1024 crop) are the same operations with other arguments. The
image is resampled bilinearly, the id map by nearest neighbour, so segment ids are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["EcoMask2FormerTrainAugmentation"]


@dataclass(frozen=True, kw_only=True)
class EcoMask2FormerTrainAugmentation:
    """Random scale + crop + flip, sized by arguments.

    Args:
        crop_size: ``(height, width)`` of the output window.
        min_scale: Smallest jitter factor ``s``.
        max_scale: Largest jitter factor ``s``.
        flip_probability: Probability of a horizontal flip.
        pad: Pad outputs smaller than ``crop_size`` (image with 0, id map with void 0), so every output has
            exactly ``crop_size`` (LSJ does); else small outputs keep their size and the processor pads the batch.
    """

    crop_size: tuple[int, int] = (512, 512)
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip_probability: float = 0.5
    pad: bool = True

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size: must be (height, width) >= 1, got {self.crop_size!r}")
        if not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError(f"min_scale: must satisfy 0 < min_scale <= max_scale, got {self.min_scale!r}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability: must be in [0, 1], got {self.flip_probability!r}")

    def __call__(
        self, *, image: np.ndarray, panoptic_ids: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one pair.

        Args:
            image: ``(H, W, 3)`` uint8.
            panoptic_ids: ``(H, W)`` int segment ids (0 = void).
            rng: Source of randomness.

        Returns:
            ``(image (h, w, 3) uint8, ids (h, w) int64)`` with ``(h, w) = crop_size`` when ``pad``.
        """
        height, width = panoptic_ids.shape
        crop_h, crop_w = self.crop_size
        scale = float(rng.uniform(self.min_scale, self.max_scale)) * min(crop_h / height, crop_w / width)
        new_h, new_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
        top = int(rng.integers(0, new_h - crop_h + 1)) if new_h > crop_h else 0
        left = int(rng.integers(0, new_w - crop_w + 1)) if new_w > crop_w else 0
        out_h, out_w = min(crop_h, new_h), min(crop_w, new_w)
        # Nearest-neighbour sampling of the id map, only over the crop window (pixel centres map back exactly).
        rows = np.minimum(((np.arange(top, top + out_h) + 0.5) * height / new_h).astype(np.int64), height - 1)
        cols = np.minimum(((np.arange(left, left + out_w) + 0.5) * width / new_w).astype(np.int64), width - 1)
        ids = np.asarray(panoptic_ids, dtype=np.int64)[rows[:, None], cols[None, :]]
        resized = Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR)
        img = np.asarray(resized.crop((left, top, left + out_w, top + out_h)))
        if rng.random() < self.flip_probability:
            img, ids = img[:, ::-1], ids[:, ::-1]
        if self.pad and (out_h < crop_h or out_w < crop_w):
            img = np.pad(img, ((0, crop_h - out_h), (0, crop_w - out_w), (0, 0)))
            ids = np.pad(ids, ((0, crop_h - out_h), (0, crop_w - out_w)))
        return np.array(img, dtype=np.uint8, order="C"), np.array(ids, dtype=np.int64, order="C")
