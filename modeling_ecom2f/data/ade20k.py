"""ADE20K adapter for the ``ADEChallengeData2016`` layout (SceneParsing, 150 classes)::

    root/images/{training,validation}/ADE_*_XXXXXXXX.jpg
    root/annotations/{training,validation}/ADE_*.png            semantic, L: 0 = other (void), 1..150
    root/annotations_instance/{training,validation}/ADE_*.png   optional, RGB: R = instance category (1..100),
                                                                G = instance id (0 = none)
    root/objectInfo150.{txt,csv}                                optional class names (columns Idx, ..., Name)
    root/ade20k_instance_catid_mapping.txt                      optional: header line, then "ins_id sem_id name"

Panoptic ground truth follows Mask2Former's ``prepare_ade20k_pan_seg.py`` protocol: stuff segments come from the
semantic map (one per class), thing segments from the instance map (category through the instance -> semantic
id mapping); thing-class pixels of the semantic map with no instance stay void. Class ids are the semantic ids
minus one (``0..149``). Without instance annotations (or mapping) every class is one segment.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .adapter_common import dataset_from_rows, image_size_of, panoptic_row
from .errors import SegmentationDataError
from .label_maps import panoptic_from_category_instance
from .labels import SegmentationLabelInfo
from .panoptic_format import open_image_file

__all__ = ["load_ade20k", "read_ade20k_instance_mapping"]

_SPLITS = {"train": "training", "training": "training", "validation": "validation", "val": "validation"}
_NUM_CLASSES = 150


def read_ade20k_instance_mapping(path: str | os.PathLike) -> dict[int, int]:
    """Parse ``ade20k_instance_catid_mapping.txt``: 0-based instance category -> 0-based semantic class."""
    mapping = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle):
            parts = line.split()
            if line_no == 0 or len(parts) < 2:
                continue
            mapping[int(parts[0]) - 1] = int(parts[1]) - 1
    if not mapping:
        raise ValueError(f"no category mapping found in {path}")
    return mapping


def _class_names(root: Path) -> dict[int, str]:
    for name in ("objectInfo150.txt", "objectInfo150.csv"):
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
        rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
        return {int(r["Idx"]) - 1: r["Name"].strip() for r in rows}
    return {k: f"class_{k + 1}" for k in range(_NUM_CLASSES)}


def load_ade20k(
    *,
    root: str | os.PathLike,
    split: str = "validation",
    use_instances: bool = True,
    instance_mapping: Mapping[int, int] | str | os.PathLike | None = None,
) -> tuple["datasets.Dataset", SegmentationLabelInfo]:  # noqa: F821
    """Load one ADE20K split as panoptic rows.

    Args:
        root: The ``ADEChallengeData2016`` folder.
        split: ``"train"``/``"training"`` or ``"validation"``/``"val"``.
        use_instances: Build thing instances from ``annotations_instance`` when it and the mapping exist.
        instance_mapping: 0-based instance category -> 0-based semantic class, or the mapping file; default:
            ``root/ade20k_instance_catid_mapping.txt`` if present.

    Raises:
        SegmentationDataError: naming the image, for a missing/unreadable annotation, a size mismatch, or class
            ids outside ``0..150``.
    """
    root = Path(root)
    if split not in _SPLITS:
        raise ValueError(f"split: must be one of {sorted(_SPLITS)}, got {split!r}")
    folder = _SPLITS[split]
    image_dir = root / "images" / folder
    if not image_dir.is_dir():
        raise FileNotFoundError(f"ADE20K image folder is missing: {image_dir}")
    if instance_mapping is None and (root / "ade20k_instance_catid_mapping.txt").is_file():
        instance_mapping = root / "ade20k_instance_catid_mapping.txt"
    if isinstance(instance_mapping, (str, os.PathLike)):
        instance_mapping = read_ade20k_instance_mapping(instance_mapping)
    instance_dir = root / "annotations_instance" / folder
    with_instances = bool(use_instances and instance_mapping and instance_dir.is_dir())
    thing_ids = tuple(sorted(set(instance_mapping.values()))) if instance_mapping else ()
    label_info = SegmentationLabelInfo(id2label=_class_names(root), thing_ids=thing_ids, name=f"ade20k-{folder}")
    lut = None
    if with_instances:
        lut = np.full(256, -1, np.int64)
        for ins, sem in instance_mapping.items():
            lut[ins] = sem

    def rows():
        for image_path in sorted(image_dir.glob("*.jpg")):
            image_id = image_path.stem
            size = image_size_of(str(image_path), image_id=image_id)
            sem_img = open_image_file(
                root / "annotations" / folder / f"{image_id}.png", image_id=image_id, what="semantic annotation"
            )
            semantic = np.asarray(sem_img, dtype=np.int64)
            if semantic.ndim != 2 or semantic.max(initial=0) > _NUM_CLASSES:
                raise SegmentationDataError(
                    image_id=image_id, problem="semantic annotation must be single-channel 0..150"
                )
            category = semantic - 1  # 0 (other) -> -1 = void
            instance = np.zeros_like(category)
            void = category < 0
            if with_instances:
                ins_img = open_image_file(
                    instance_dir / f"{image_id}.png", image_id=image_id, what="instance annotation"
                )
                ins = np.asarray(ins_img.convert("RGB"), dtype=np.int64)
                if ins.shape[:2] != semantic.shape:
                    raise SegmentationDataError(
                        image_id=image_id,
                        problem=f"instance map size {ins.shape[:2]} differs from semantic map size {semantic.shape}",
                    )
                has_instance = ins[..., 1] > 0
                mapped = lut[np.clip(ins[..., 0] - 1, 0, 255)]
                if (has_instance & ((ins[..., 0] < 1) | (mapped < 0))).any():
                    raise SegmentationDataError(
                        image_id=image_id, problem="instance categories missing from the mapping"
                    )
                is_thing_class = np.isin(category, np.array(thing_ids, dtype=np.int64))
                category = np.where(has_instance, mapped, category)
                instance = np.where(has_instance, ins[..., 1], 0)
                void = (category < 0) | (~has_instance & is_thing_class)  # thing pixels with no instance stay void
            ids, segments = panoptic_from_category_instance(
                category, instance, thing_ids=thing_ids if with_instances else (), void=void
            )
            yield panoptic_row(
                image=str(image_path),
                ids=ids,
                segments=segments,
                image_id=image_id,
                label_info=label_info,
                image_size=size,
            )

    dataset = dataset_from_rows(rows(), label_info=label_info)
    return dataset, label_info
