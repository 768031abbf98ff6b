"""Conversions from the label layouts real data sets use to the project's panoptic format (see ``panoptic_format``).

All conversions are vectorised: segments are found with one ``np.unique`` over a per-pixel key.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

__all__ = ["panoptic_from_category_instance", "panoptic_from_semantic", "panoptic_from_binary_masks"]


def panoptic_from_category_instance(
    category: np.ndarray, instance: np.ndarray, *, thing_ids: Collection[int], void: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Segments from a category map and an instance map.

    Rules: void pixels are void; a stuff pixel belongs to its category's one segment (instance ignored); a thing
    pixel with instance ``> 0`` belongs to segment ``(category, instance)``; thing pixels with instance 0 form one
    crowd segment per category (Cityscapes' group labels such as "cars", COCO's ``iscrowd``).

    Args:
        category: ``(H, W)`` int category ids (any value where ``void``).
        instance: ``(H, W)`` int instance ids, ``>= 0``.
        thing_ids: Thing categories.
        void: ``(H, W)`` bool.

    Returns:
        ``(ids, segments)``: ``(H, W)`` int64 segment ids (0 = void, then 1, 2, ... in (category, instance)
        order) and ``[(segment_id, category_id, iscrowd)]``.
    """
    category = np.asarray(category, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    things = np.array(sorted({int(t) for t in thing_ids}), dtype=np.int64)
    span = int(instance.max(initial=0)) + 1
    is_thing = np.isin(category, things)
    key = category * span + np.where(is_thing, instance, 0)
    key = np.where(void, -1, key)
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(category.shape)
    has_void = uniq.size > 0 and uniq[0] == -1
    ids = inverse + (0 if has_void else 1)  # void (key -1) sorts first and becomes id 0
    valid = uniq[1:] if has_void else uniq
    thing_set = set(things.tolist())
    segments = []
    for seg_id, k in enumerate(valid.tolist(), start=1):
        cat, inst = divmod(k, span)
        segments.append((seg_id, cat, int(cat in thing_set and inst == 0)))
    return ids.astype(np.int64), segments


def panoptic_from_semantic(semantic: np.ndarray, *, void: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """One segment per category present in a semantic map (instances cannot be recovered from it).

    Thing categories also get one (non-crowd) segment each: that is what Mask2Former's semantic training uses;
    PQ on things is meaningless for such data.
    """
    zeros = np.zeros_like(np.asarray(semantic, dtype=np.int64))
    return panoptic_from_category_instance(semantic, zeros, thing_ids=(), void=void)


def panoptic_from_binary_masks(
    masks: np.ndarray, categories: np.ndarray, crowd: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]], np.ndarray]:
    """Panoptic map from ``(N, H, W)`` non-overlapping binary masks (segment ``k`` gets id ``k + 1``).

    Returns:
        ``(ids, segments, overlap)`` where ``overlap`` is the ``(H, W)`` bool map of pixels claimed by two or more
        masks (the caller decides to raise).
    """
    masks = np.asarray(masks).astype(bool)
    coverage = masks.sum(axis=0)
    ids = np.where(coverage > 0, np.argmax(masks, axis=0) + 1, 0).astype(np.int64)
    segments = [(k + 1, int(c), int(z)) for k, (c, z) in enumerate(zip(categories, crowd))]
    return ids, segments, coverage > 1
