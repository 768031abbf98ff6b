"""Any Hub or local data set -> the standard columns, through a column mapping and an annotation format.

Annotation formats (``annotation_format``):

* ``"coco_panoptic_rgb"``: RGB PNG with ``id = R + 256 G + 256^2 B`` plus a ``segments_info`` column
  (``id``, ``category_id``, optional ``iscrowd``).
* ``"semantic"``: single-channel class map (e.g. ``segments/sidewalk-semantic``, SceneParse150 ``scene_parsing``);
  one segment per class.
* ``"instance_rg"``: channel 0 = class, channel 1 = instance id (SceneParse150 ``instance_segmentation``,
  ``qubvel-hf/ade20k-mini``); thing pixels with instance 0 become one crowd segment per class.
* ``"cityscapes_ids"``: single-channel ``class * 1000 + k`` on instances, ``class`` elsewhere.
* ``"binary_masks"``: a list of binary mask images per row plus a ``segments_info`` column with one
  ``{"category_id", "iscrowd"?}`` per mask; overlapping masks are an error.

For the map formats, ``ignore_index`` marks void and ``reduce_labels`` applies the ADE20K convention
(0 -> void, ``k`` -> ``k - 1``). Class ids after that must be keys of ``label_info.id2label``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .adapter_common import image_size_of, panoptic_row
from .errors import SegmentationDataError
from .label_maps import panoptic_from_binary_masks, panoptic_from_category_instance, panoptic_from_semantic
from .labels import SegmentationLabelInfo
from .panoptic_format import annotation_to_ids, open_image_file, panoptic_features

__all__ = ["ANNOTATION_FORMATS", "load_mapped_dataset"]

ANNOTATION_FORMATS = ("coco_panoptic_rgb", "semantic", "instance_rg", "cityscapes_ids", "binary_masks")


def _open_source(source: Any, split: str | None):
    """A ``datasets.Dataset`` from a Dataset, a DatasetDict + split, a ``save_to_disk`` folder, a data file, or a
    Hub name (offline, only a cached one)."""
    import datasets

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        builders = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
        ext = os.path.splitext(path)[1].lower()
        saved = ("dataset_dict.json", "dataset_info.json")
        if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name)) for name in saved):
            source = datasets.load_from_disk(path)
        elif os.path.isfile(path) and ext in builders:
            source = datasets.load_dataset(builders[ext], data_files={"data": path}, split="data")
        else:
            source = datasets.load_dataset(path, split=split)
    if isinstance(source, datasets.DatasetDict):
        if split is None or split not in source:
            raise ValueError(f"split: choose one of {sorted(source)}, got {split!r}")
        source = source[split]
    if not isinstance(source, datasets.Dataset):
        raise TypeError(f"source: expected a datasets.Dataset, DatasetDict or path, got {type(source).__name__}")
    return source


def _undecoded(feature: Any) -> Any:
    """The feature with every ``Image`` left undecoded, so rows arrive as ``{"bytes", "path"}`` (no re-encoding)."""
    from datasets import Image, List, Sequence

    if isinstance(feature, Image):
        return Image(decode=False)
    if isinstance(feature, List):
        return List(_undecoded(feature.feature))
    if isinstance(feature, Sequence):
        return Sequence(_undecoded(feature.feature))
    return feature


def _load_map(value: Any, *, image_id: str, what: str) -> np.ndarray:
    """Decode one annotation image/array to a NumPy array without changing its values."""
    if isinstance(value, Mapping):
        from .panoptic_format import _open_bytes

        value = _open_bytes(value["bytes"], image_id=image_id) if value.get("bytes") else value.get("path")
    if isinstance(value, (str, os.PathLike)):
        value = open_image_file(value, image_id=image_id, what=what)
    return np.asarray(value)


def load_mapped_dataset(
    source: Any,
    *,
    annotation_format: str,
    label_info: SegmentationLabelInfo,
    split: str | None = None,
    image_column: str = "image",
    annotation_column: str = "annotation",
    segments_info_column: str | None = None,
    image_id_column: str | None = None,
    ignore_index: int = 255,
    reduce_labels: bool = False,
) -> tuple["datasets.Dataset", SegmentationLabelInfo]:  # noqa: F821
    """Convert a data set with its own column names and label layout to the standard columns.

    Args:
        source: ``datasets.Dataset``, ``DatasetDict`` (with ``split``), a ``save_to_disk`` folder, a
            ``.parquet``/``.json(l)``/``.csv`` file, or a Hub name (needs a cached copy offline).
        annotation_format: One of ``ANNOTATION_FORMATS`` (see the module docstring).
        label_info: The label metadata; class ids in the annotations must be its keys.
        split: Split to take from a DatasetDict / Hub data set.
        image_column, annotation_column: Source column names.
        segments_info_column: Source column with per-segment dicts (``coco_panoptic_rgb``, ``binary_masks``).
        image_id_column: Source column with image ids (default: ``"<split or row>-<index>"``).
        ignore_index: Void value of map formats.
        reduce_labels: ADE20K convention: 0 is void and every other class id is shifted down by one.

    Raises:
        SegmentationDataError: naming the image, for a size mismatch, unknown categories, overlapping segments,
            or unreadable annotations.
    """
    from datasets import Features

    if annotation_format not in ANNOTATION_FORMATS:
        raise ValueError(f"annotation_format: must be one of {ANNOTATION_FORMATS}, got {annotation_format!r}")
    if annotation_format in ("coco_panoptic_rgb", "binary_masks") and segments_info_column is None:
        raise ValueError(f"segments_info_column: required for annotation_format={annotation_format!r}")
    dataset = _open_source(source, split)
    for column in (image_column, annotation_column, segments_info_column, image_id_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"column {column!r} is not in the data set (columns: {dataset.column_names})")
    dataset = dataset.cast(Features({k: _undecoded(v) for k, v in dataset.features.items()}))
    prefix = split or "row"
    thing_ids = label_info.thing_ids
    known = np.array(sorted(label_info.id2label), dtype=np.int64)

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        image_id = str(row[image_id_column]) if image_id_column else f"{prefix}-{index}"
        size = image_size_of(row[image_column], image_id=image_id)
        ann = row[annotation_column]
        if annotation_format == "coco_panoptic_rgb":
            ids = annotation_to_ids(ann, image_id=image_id)
            info = row[segments_info_column] or []
            segments = [(int(s["id"]), int(s["category_id"]), int(s.get("iscrowd") or 0)) for s in info]
            listed = [s[0] for s in segments]
            if len(set(listed)) != len(listed):
                raise SegmentationDataError(image_id=image_id, problem="overlapping segments: repeated segment ids")
            unlisted = np.setdiff1d(np.unique(ids), np.array(listed + [0], dtype=np.int64))
            if unlisted.size:
                raise SegmentationDataError(
                    image_id=image_id,
                    problem=f"segment ids {unlisted[:10].tolist()} are in the PNG but not in segments_info",
                )
        elif annotation_format == "binary_masks":
            masks = [_load_map(m, image_id=image_id, what="mask") for m in (ann or [])]
            info = row[segments_info_column] or []
            if len(info) != len(masks):
                raise SegmentationDataError(image_id=image_id, problem=f"{len(masks)} masks but {len(info)} segments")
            stack = (
                np.stack([m > 0 if m.ndim == 2 else m[..., 0] > 0 for m in masks])
                if masks
                else np.zeros((0,) + size, bool)
            )
            cats = np.array([int(s["category_id"]) for s in info], dtype=np.int64)
            crowd = np.array([int(s.get("iscrowd") or 0) for s in info], dtype=np.int64)
            ids, segments, overlap = panoptic_from_binary_masks(stack, cats, crowd)
            if overlap.any():
                raise SegmentationDataError(
                    image_id=image_id,
                    problem=f"overlapping segments: {int(overlap.sum())} pixels belong to two or more masks",
                )
        else:
            raw = _load_map(ann, image_id=image_id, what="annotation").astype(np.int64)
            if annotation_format == "instance_rg":
                if raw.ndim != 3:
                    raise SegmentationDataError(image_id=image_id, problem="instance_rg annotation needs 2+ channels")
                classes, instance = raw[..., 0], raw[..., 1]
            elif raw.ndim != 2:
                raise SegmentationDataError(
                    image_id=image_id,
                    problem=f"{annotation_format} annotation must be single-channel, got shape {raw.shape}",
                )
            elif annotation_format == "cityscapes_ids":
                classes = np.where(raw >= 1000, raw // 1000, raw)
                instance = np.where(raw >= 1000, raw % 1000 + 1, 0)
            else:
                classes, instance = raw, None
            void = classes == ignore_index
            if reduce_labels:
                void |= classes == 0
                classes = classes - 1
            unknown = np.setdiff1d(np.unique(classes[~void]), known)
            if unknown.size:
                raise SegmentationDataError(
                    image_id=image_id,
                    problem=f"category ids {unknown[:10].tolist()} are missing from the label metadata",
                )
            if instance is None:
                ids, segments = panoptic_from_semantic(classes, void=void)
            else:
                ids, segments = panoptic_from_category_instance(classes, instance, thing_ids=thing_ids, void=void)
        return panoptic_row(
            image=row[image_column],
            ids=ids,
            segments=segments,
            image_id=image_id,
            label_info=label_info,
            image_size=size,
        )

    converted = dataset.map(
        convert,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=panoptic_features(),
        load_from_cache_file=False,
        desc=f"converting ({annotation_format})",
    )
    return label_info.attach_to(converted), label_info
