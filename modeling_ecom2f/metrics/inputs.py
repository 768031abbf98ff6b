"""Turn post-processor outputs and ground-truth rows into compact NumPy segment tables, checking them on the way.

Accepted panoptic/instance entry (a processor's ``post_process_*`` output or a ground-truth reference):
``{"segmentation": (H, W) int/float tensor or array, "segments_info": [{"id", "label_id" | "category_id",
"iscrowd"?, "score"?, ...}], "image_id"?}``. Void is 0 or -1 for panoptic inputs; for instance inputs only -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.errors import SegmentationDataError

__all__ = ["SegmentTable", "to_numpy_map", "to_segment_table", "resolve_image_ids", "category_of"]


@dataclass(frozen=True)
class SegmentTable:
    """One image's segments in compact form.

    Attributes:
        index_map: ``(H, W)`` int64; 0 = void, ``k`` = the ``k-1``-th listed segment.
        segment_ids: ``(N,)`` original segment ids.
        category_ids: ``(N,)`` category ids.
        is_crowd: ``(N,)`` bool.
        scores: ``(N,)`` float64 (1.0 when absent).
    """

    index_map: np.ndarray
    segment_ids: np.ndarray
    category_ids: np.ndarray
    is_crowd: np.ndarray
    scores: np.ndarray

    @property
    def num_segments(self) -> int:
        """Number of listed segments ``N``."""
        return int(self.segment_ids.size)


def to_numpy_map(value: Any, *, image_id: object, what: str) -> np.ndarray:
    """``(H, W)`` int64 array from a tensor/array/PIL map; float maps must hold whole numbers."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 2:
        raise SegmentationDataError(
            image_id=image_id, problem=f"{what} must be a 2-D (H, W) map, got shape {array.shape}"
        )
    if np.issubdtype(array.dtype, np.floating):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise SegmentationDataError(image_id=image_id, problem=f"{what} holds non-integer values")
        array = rounded
    elif not np.issubdtype(array.dtype, np.integer):
        raise SegmentationDataError(image_id=image_id, problem=f"{what} has non-numeric dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def category_of(segment: Mapping[str, Any], *, image_id: object) -> int:
    """The category of a segment dict: ``label_id`` (processor outputs) or ``category_id`` (annotations)."""
    if "label_id" in segment:
        return int(segment["label_id"])
    if "category_id" in segment:
        return int(segment["category_id"])
    raise SegmentationDataError(image_id=image_id, problem=f"segment {segment.get('id')!r} has no label_id/category_id")


def resolve_image_ids(
    predictions: Sequence[Any], references: Sequence[Any], image_ids: Sequence[object] | None
) -> list[str]:
    """Image ids for error messages: explicit ``image_ids``, else ``references[i]["image_id"]``, else the index.

    Raises ``ValueError`` if the number of predictions and references differ (no image is ever skipped).
    """
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references: every image needs both")
    if image_ids is not None:
        if len(image_ids) != len(references):
            raise ValueError(f"got {len(image_ids)} image_ids for {len(references)} images")
        return [str(i) for i in image_ids]
    out = []
    for index, ref in enumerate(references):
        out.append(str(ref["image_id"]) if isinstance(ref, Mapping) and "image_id" in ref else f"#{index}")
    return out


def to_segment_table(
    entry: Any,
    *,
    image_id: object,
    what: str,
    void_values: tuple[int, ...],
    known_categories: np.ndarray | None,
) -> SegmentTable:
    """Validate one panoptic/instance entry and index its pixels by listed segment.

    Args:
        entry: ``{"segmentation", "segments_info"}`` mapping (see module docstring).
        image_id: For error messages.
        what: ``"prediction"`` or ``"reference"``, for error messages.
        void_values: Pixel values meaning "no segment" (``(0, -1)`` panoptic, ``(-1,)`` instance).
        known_categories: Sorted category ids allowed, or None to accept any.

    Raises:
        SegmentationDataError: missing keys, duplicate (overlapping) segment ids, a listed id equal to a void value,
            pixels whose id is not listed, unknown categories.
    """
    if entry is None or not isinstance(entry, Mapping) or "segmentation" not in entry:
        raise SegmentationDataError(image_id=image_id, problem=f"{what} is missing or has no 'segmentation'")
    if entry["segmentation"] is None:
        raise SegmentationDataError(image_id=image_id, problem=f"{what} segmentation is None")
    seg = to_numpy_map(entry["segmentation"], image_id=image_id, what=f"{what} segmentation")
    info = list(entry.get("segments_info") or [])
    seg_ids = np.array([int(s["id"]) for s in info], dtype=np.int64)
    cats = np.array([category_of(s, image_id=image_id) for s in info], dtype=np.int64)
    crowd = np.array([bool(s.get("iscrowd", 0)) for s in info], dtype=bool)
    scores = np.array([float(s.get("score", 1.0)) for s in info], dtype=np.float64)
    if np.unique(seg_ids).size != seg_ids.size:
        raise SegmentationDataError(image_id=image_id, problem=f"{what} has overlapping segments: repeated segment ids")
    if np.isin(seg_ids, void_values).any():
        raise SegmentationDataError(image_id=image_id, problem=f"{what} lists a segment with a void id {void_values}")
    if known_categories is not None and cats.size:
        unknown = np.setdiff1d(cats, known_categories)
        if unknown.size:
            raise SegmentationDataError(
                image_id=image_id, problem=f"{what} category ids {unknown.tolist()} are missing from the label metadata"
            )
    index_map = _index_pixels(seg, seg_ids, void_values=void_values, image_id=image_id, what=what)
    return SegmentTable(index_map=index_map, segment_ids=seg_ids, category_ids=cats, is_crowd=crowd, scores=scores)


def _index_pixels(
    seg: np.ndarray, seg_ids: np.ndarray, *, void_values: tuple[int, ...], image_id: object, what: str
) -> np.ndarray:
    """Map each pixel's segment id to ``1 + its position in seg_ids`` (0 for void) and reject unlisted ids."""
    lo = int(min(seg.min(initial=0), seg_ids.min(initial=0), *void_values))
    hi = int(max(seg.max(initial=0), seg_ids.max(initial=0)))
    if hi - lo < (1 << 22):  # small id range (post-processor outputs, most annotations): one table lookup
        lut = np.full(hi - lo + 1, -1, dtype=np.int64)
        for value in void_values:
            lut[value - lo] = 0
        lut[seg_ids - lo] = np.arange(1, seg_ids.size + 1)
        index = lut[seg - lo]
    else:  # wide ids (COCO RGB ids up to 256**3): binary search over the listed ids
        order = np.argsort(seg_ids)
        sorted_ids = seg_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, seg), 0, max(sorted_ids.size - 1, 0))
        hit = sorted_ids[pos] == seg if sorted_ids.size else np.zeros(seg.shape, dtype=bool)
        index = np.where(hit, order[pos] + 1, -1)
        index[np.isin(seg, void_values)] = 0
    if (index < 0).any():
        bad = np.unique(seg[index < 0])[:10].tolist()
        raise SegmentationDataError(
            image_id=image_id, problem=f"{what} pixels carry segment ids {bad} absent from segments_info"
        )
    return index
