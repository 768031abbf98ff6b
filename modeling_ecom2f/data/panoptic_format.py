"""The project's one panoptic annotation format, and the checks every adapter runs on it.

Format (COCO panoptic, Kirillov et al. 2019 / cocodataset panopticapi):

* ``annotation``: an RGB PNG whose pixel colour encodes a segment id, ``id = R + 256 * G + 256**2 * B``;
  id 0 is void (unlabelled).
* ``segments_info``: one dict per segment ``{"id", "category_id", "iscrowd", "area", "bbox"}`` with
  ``bbox = [x, y, width, height]`` in pixels and ``area`` its pixel count.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SegmentationDataError

__all__ = [
    "VOID_ID",
    "panoptic_features",
    "rgb_to_panoptic_ids",
    "panoptic_ids_to_rgb",
    "encode_png",
    "open_image_file",
    "annotation_to_ids",
    "build_segments_info",
    "validate_panoptic",
    "panoptic_to_semantic",
    "panoptic_to_instance_masks",
]

VOID_ID = 0
_MAX_ID = 256**3 - 1


def panoptic_features(extra: Mapping[str, Any] | None = None):
    """The ``datasets.Features`` of the standard columns, plus ``extra`` columns (e.g. difficulty parameters).

    Columns: ``image`` (Image), ``annotation`` (Image, RGB id PNG), ``segments_info`` (list of
    ``{id, category_id, iscrowd, area, bbox}``), ``image_id`` (string).
    """
    from datasets import Features, List, Value
    from datasets import Image as ImageFeature

    columns = {
        "image": ImageFeature(),
        "annotation": ImageFeature(),
        "segments_info": List(
            {
                "id": Value("int64"),
                "category_id": Value("int64"),
                "iscrowd": Value("uint8"),
                "area": Value("int64"),
                "bbox": List(Value("int64")),
            }
        ),
        "image_id": Value("string"),
    }
    columns.update(dict(extra or {}))
    return Features(columns)


def rgb_to_panoptic_ids(rgb: np.ndarray) -> np.ndarray:
    """Decode a COCO panoptic colour image. ``rgb``: ``(H, W, 3)`` uint8 -> ``(H, W)`` int64 segment ids."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def panoptic_ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Encode segment ids as COCO panoptic colours: ``(H, W)`` ints in ``[0, 256**3)`` -> ``(H, W, 3)`` uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > _MAX_ID):
        raise ValueError(f"segment ids must lie in [0, {_MAX_ID}], got [{ids.min()}, {ids.max()}]")
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def encode_png(array: np.ndarray, *, compress_level: int = 1) -> bytes:
    """Lossless PNG bytes of a uint8 ``(H, W)`` / ``(H, W, 3)`` array (or uint16 ``(H, W)``); deterministic."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def open_image_file(path: str | os.PathLike, *, image_id: object, what: str) -> Image.Image:
    """Open and fully decode an image file; a missing or unreadable file raises a ``SegmentationDataError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SegmentationDataError(image_id=image_id, problem=f"{what} file is missing: {path}")
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SegmentationDataError(image_id=image_id, problem=f"{what} file is unreadable ({err}): {path}") from err


def annotation_to_ids(annotation: Any, *, image_id: object) -> np.ndarray:
    """Segment-id map ``(H, W)`` int64 from a stored annotation (PIL image, array, path, or datasets image dict)."""
    if isinstance(annotation, Mapping):  # undecoded datasets Image value
        if annotation.get("bytes"):
            annotation = _open_bytes(annotation["bytes"], image_id=image_id)
        elif annotation.get("path"):
            annotation = open_image_file(annotation["path"], image_id=image_id, what="annotation")
        else:
            raise SegmentationDataError(image_id=image_id, problem="annotation is empty")
    elif isinstance(annotation, (str, os.PathLike)):
        annotation = open_image_file(annotation, image_id=image_id, what="annotation")
    if isinstance(annotation, Image.Image):
        if annotation.mode not in ("RGB", "RGBA"):
            raise SegmentationDataError(
                image_id=image_id, problem=f"panoptic annotation must be an RGB PNG, got PIL mode {annotation.mode!r}"
            )
        annotation = np.asarray(annotation.convert("RGB"))
    array = np.asarray(annotation)
    if array.ndim == 3 and array.shape[-1] == 3:
        return rgb_to_panoptic_ids(array)
    if array.ndim == 2 and np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    raise SegmentationDataError(image_id=image_id, problem=f"annotation has unusable shape {array.shape}")


def _open_bytes(data: bytes, *, image_id: object) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as handle:
            handle.load()
            return handle.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SegmentationDataError(image_id=image_id, problem=f"annotation bytes are unreadable ({err})") from err


def build_segments_info(
    ids: np.ndarray, segments: Iterable[tuple[int, int, int]], *, image_id: object = None
) -> list[dict[str, Any]]:
    """Full ``segments_info`` (with ``area`` and ``bbox``) for ``(id, category_id, iscrowd)`` triples.

    ``ids``: ``(H, W)`` segment-id map. Areas and boxes are measured on the map in one vectorised pass
    (a ``bincount`` over ``segment * H + row`` and ``segment * W + col``). Segments with no pixels are dropped.
    """
    triples = [(int(s), int(c), int(k)) for s, c, k in segments]
    if not triples:
        return []
    seg_ids = np.array([t[0] for t in triples], dtype=np.int64)
    if len(np.unique(seg_ids)) != len(seg_ids):
        raise SegmentationDataError(image_id=image_id, problem="duplicate segment ids (overlapping segments)")
    height, width = ids.shape
    order = np.argsort(seg_ids)
    sorted_ids = seg_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    member = sorted_ids[pos] == ids
    compact = np.where(member, order[pos] + 1, 0).astype(np.int64)  # 0 = not a listed segment
    n = len(triples) + 1
    rows = np.bincount((compact * height + np.arange(height)[:, None]).ravel(), minlength=n * height)
    cols = np.bincount((compact * width + np.arange(width)[None, :]).ravel(), minlength=n * width)
    rows = rows.reshape(n, height)[1:] > 0
    cols = cols.reshape(n, width)[1:] > 0
    areas = np.bincount(compact.ravel(), minlength=n)[1:]
    out = []
    for k, (seg_id, category_id, iscrowd) in enumerate(triples):
        if areas[k] == 0:
            continue
        y0, y1 = np.argmax(rows[k]), height - np.argmax(rows[k][::-1])
        x0, x1 = np.argmax(cols[k]), width - np.argmax(cols[k][::-1])
        out.append(
            {
                "id": seg_id,
                "category_id": category_id,
                "iscrowd": iscrowd,
                "area": int(areas[k]),
                "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
            }
        )
    return out


def validate_panoptic(
    ids: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    *,
    image_id: object,
    image_size: tuple[int, int] | None = None,
    category_ids: Iterable[int] | None = None,
    require_listed_present: bool = True,
) -> None:
    """Raise a ``SegmentationDataError`` naming ``image_id`` if the annotation is inconsistent.

    Checks: the map has the image's ``(H, W)`` size; segment ids are unique (two entries with one id would claim
    the same pixels: overlapping segments) and not the void id 0; every non-void pixel id is listed in
    ``segments_info``; every category is known; with ``require_listed_present``, every listed segment has pixels
    (panopticapi's own consistency rule).
    """
    if ids.ndim != 2:
        raise SegmentationDataError(image_id=image_id, problem=f"annotation must be 2-D, got shape {ids.shape}")
    if image_size is not None and tuple(ids.shape) != tuple(image_size):
        raise SegmentationDataError(
            image_id=image_id,
            problem=f"annotation size {ids.shape[1]}x{ids.shape[0]} (WxH) differs from image size "
            f"{image_size[1]}x{image_size[0]}",
        )
    listed = np.array([int(s["id"]) for s in segments_info], dtype=np.int64)
    if len(np.unique(listed)) != len(listed):
        dup = sorted({int(v) for v in listed if (listed == v).sum() > 1})
        raise SegmentationDataError(image_id=image_id, problem=f"overlapping segments: ids {dup} are listed twice")
    if (listed == VOID_ID).any():
        raise SegmentationDataError(image_id=image_id, problem="segment id 0 is reserved for void")
    if category_ids is not None:
        known = {int(c) for c in category_ids}
        bad = sorted({int(s["category_id"]) for s in segments_info} - known)
        if bad:
            raise SegmentationDataError(
                image_id=image_id, problem=f"category ids {bad} are missing from the label metadata"
            )
    present = np.unique(ids)
    present = present[present != VOID_ID]
    unlisted = np.setdiff1d(present, listed)
    if unlisted.size:
        raise SegmentationDataError(
            image_id=image_id, problem=f"segment ids {unlisted[:10].tolist()} are in the PNG but not in segments_info"
        )
    if require_listed_present:
        absent = np.setdiff1d(listed, present)
        if absent.size:
            raise SegmentationDataError(
                image_id=image_id, problem=f"segment ids {absent[:10].tolist()} are in segments_info but not in the PNG"
            )


def panoptic_to_semantic(
    ids: np.ndarray, segments_info: Sequence[Mapping[str, Any]], *, ignore_index: int = 255
) -> np.ndarray:
    """Semantic map ``(H, W)`` int64 (category id per pixel, ``ignore_index`` on void) from a panoptic map."""
    lookup_keys = np.array([int(s["id"]) for s in segments_info], dtype=np.int64)
    lookup_vals = np.array([int(s["category_id"]) for s in segments_info], dtype=np.int64)
    out = np.full(ids.shape, ignore_index, dtype=np.int64)
    if lookup_keys.size == 0:
        return out
    order = np.argsort(lookup_keys)
    pos = np.clip(np.searchsorted(lookup_keys[order], ids), 0, len(order) - 1)
    hit = lookup_keys[order][pos] == ids
    out[hit] = lookup_vals[order][pos][hit]
    return out


def panoptic_to_instance_masks(
    ids: np.ndarray, segments_info: Sequence[Mapping[str, Any]], *, thing_ids: Iterable[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance ground truth from a panoptic map: ``masks (N, H, W) bool, category_ids (N,), iscrowd (N,)``.

    Only segments of ``thing_ids`` are kept (all segments when ``thing_ids`` is None).
    """
    things = None if thing_ids is None else {int(t) for t in thing_ids}
    kept = [s for s in segments_info if things is None or int(s["category_id"]) in things]
    seg_ids = np.array([int(s["id"]) for s in kept], dtype=np.int64)
    masks = ids[None, :, :] == seg_ids[:, None, None]
    cats = np.array([int(s["category_id"]) for s in kept], dtype=np.int64)
    crowd = np.array([int(s.get("iscrowd", 0)) for s in kept], dtype=np.int64)
    return masks, cats, crowd
