"""What every real-data adapter shares: image-size probing, row assembly with validation, Dataset building."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SegmentationDataError
from .labels import SegmentationLabelInfo
from .panoptic_format import build_segments_info, encode_png, panoptic_features, panoptic_ids_to_rgb, validate_panoptic

__all__ = ["image_size_of", "panoptic_row", "dataset_from_rows"]


def image_size_of(value: Any, *, image_id: object) -> tuple[int, int]:
    """``(H, W)`` of an image given as a path, PNG/JPEG bytes, a datasets image dict or a PIL image.

    Reads the header only; a missing or unreadable file raises a ``SegmentationDataError`` naming ``image_id``.
    """
    if isinstance(value, Image.Image):
        return value.height, value.width
    if isinstance(value, np.ndarray):
        return int(value.shape[0]), int(value.shape[1])
    if isinstance(value, Mapping):
        value = value.get("bytes") or value.get("path")
    if value is None:
        raise SegmentationDataError(image_id=image_id, problem="image is missing")
    if isinstance(value, (str, os.PathLike)) and not os.path.isfile(value):
        raise SegmentationDataError(image_id=image_id, problem=f"image file is missing: {os.fspath(value)}")
    source = io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else os.fspath(value)
    try:
        with Image.open(source) as handle:
            return handle.height, handle.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SegmentationDataError(image_id=image_id, problem=f"image is unreadable ({err})") from err


def image_value(value: Any) -> dict[str, Any]:
    """A datasets ``Image`` value ``{"bytes", "path"}`` for a path, bytes or undecoded dict (no re-encoding)."""
    if isinstance(value, Mapping):
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, Image.Image):
        value = np.asarray(value.convert("RGB"))
    if isinstance(value, np.ndarray):
        return {"bytes": encode_png(value.astype(np.uint8)), "path": None}
    return {"bytes": None, "path": os.fspath(value)}


def panoptic_row(
    *,
    image: Any,
    ids: np.ndarray,
    segments: Iterable[tuple[int, int, int]],
    image_id: str,
    label_info: SegmentationLabelInfo,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A standard row (image passed through, annotation encoded as an RGB id PNG), validated.

    Raises ``SegmentationDataError`` if the map's size differs from the image's or a category is unknown.
    """
    size = image_size if image_size is not None else image_size_of(image, image_id=image_id)
    segments = list(segments)
    info = build_segments_info(ids, segments, image_id=image_id)
    validate_panoptic(ids, info, image_id=image_id, image_size=size, category_ids=label_info.id2label)
    return {
        "image": image_value(image),
        "annotation": {"bytes": encode_png(panoptic_ids_to_rgb(ids)), "path": None},
        "segments_info": info,
        "image_id": str(image_id),
    }


def dataset_from_rows(rows: Iterable[Mapping[str, Any]], *, label_info: SegmentationLabelInfo):
    """An in-memory ``datasets.Dataset`` with the standard features, carrying ``label_info`` in its description."""
    from datasets import Dataset

    features = panoptic_features()
    columns: dict[str, list] = {name: [] for name in features}
    for row in rows:
        for name in features:
            columns[name].append(row[name])
    return label_info.attach_to(Dataset.from_dict(columns, features=features))
