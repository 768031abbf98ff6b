"""COCO panoptic adapter: ``panoptic_<split>.json`` + a folder of RGB id PNGs + the image folder.

The on-disk format is already the project's format, so annotations are referenced by path (no re-encoding);
only category ids are remapped to contiguous ``0..C-1`` (the ids the model predicts), keeping the originals in
``label_info.source_category_ids``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .adapter_common import image_size_of
from .errors import SegmentationDataError
from .labels import SegmentationLabelInfo
from .panoptic_format import annotation_to_ids, panoptic_features, validate_panoptic

__all__ = ["load_coco_panoptic"]


def load_coco_panoptic(
    *,
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    panoptic_dir: str | os.PathLike | None = None,
    contiguous_ids: bool = True,
    validate: bool = True,
) -> tuple["datasets.Dataset", SegmentationLabelInfo]:  # noqa: F821
    """Load one COCO-panoptic split.

    Args:
        annotation_file: ``panoptic_<split>.json`` with ``images``, ``annotations`` (``file_name``,
            ``segments_info``) and ``categories`` (``id``, ``name``, ``isthing``).
        image_dir: Folder of the RGB images (``images[*].file_name``).
        panoptic_dir: Folder of the id PNGs; default: the JSON path without ``.json`` (COCO's layout).
        contiguous_ids: Remap category ids to ``0..C-1`` in id order (default) or keep the JSON's ids.
        validate: Decode every annotation PNG and check it against its ``segments_info`` and image size.

    Returns:
        ``(dataset, label_info)`` with the standard columns.

    Raises:
        SegmentationDataError: naming the image, for a missing/unreadable file, a size mismatch, an unknown
            category, repeated (overlapping) segment ids, ids in the PNG missing from the JSON, or an image without
            an annotation.
    """
    from datasets import Dataset

    annotation_file = Path(annotation_file)
    panoptic_dir = Path(panoptic_dir) if panoptic_dir is not None else annotation_file.with_suffix("")
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO panoptic annotation file is missing: {annotation_file}")
    with open(annotation_file, encoding="utf-8") as handle:
        data = json.load(handle)
    categories = sorted(data["categories"], key=lambda c: int(c["id"]))
    remap = {int(c["id"]): (k if contiguous_ids else int(c["id"])) for k, c in enumerate(categories)}
    label_info = SegmentationLabelInfo(
        id2label={remap[int(c["id"])]: c["name"] for c in categories},
        thing_ids=tuple(remap[int(c["id"])] for c in categories if c.get("isthing", 0)),
        source_category_ids={remap[int(c["id"])]: int(c["id"]) for c in categories},
        name=annotation_file.stem,
    )
    by_image = {}
    for ann in data["annotations"]:
        by_image[ann["image_id"]] = ann
    columns: dict[str, list[Any]] = {"image": [], "annotation": [], "segments_info": [], "image_id": []}
    for image in data["images"]:
        image_id = image["id"]
        ann = by_image.get(image_id)
        if ann is None:
            raise SegmentationDataError(image_id=image_id, problem="has no entry in the panoptic annotations")
        image_path = Path(image_dir) / image["file_name"]
        png_path = panoptic_dir / ann["file_name"]
        info = []
        for seg in ann["segments_info"]:
            source_cat = int(seg["category_id"])
            if source_cat not in remap:
                raise SegmentationDataError(
                    image_id=image_id, problem=f"category ids [{source_cat}] are missing from the label metadata"
                )
            info.append(
                {
                    "id": int(seg["id"]),
                    "category_id": remap[source_cat],
                    "iscrowd": int(seg.get("iscrowd", 0)),
                    "area": int(seg.get("area", 0)),
                    "bbox": [int(v) for v in seg.get("bbox", [0, 0, 0, 0])],
                }
            )
        if validate:
            size = image_size_of(str(image_path), image_id=image_id)
            ids = annotation_to_ids(str(png_path), image_id=image_id)
            validate_panoptic(ids, info, image_id=image_id, image_size=size, category_ids=label_info.id2label)
        elif not image_path.is_file() or not png_path.is_file():
            missing = image_path if not image_path.is_file() else png_path
            raise SegmentationDataError(image_id=image_id, problem=f"file is missing: {missing}")
        columns["image"].append({"bytes": None, "path": str(image_path)})
        columns["annotation"].append({"bytes": None, "path": str(png_path)})
        columns["segments_info"].append(info)
        columns["image_id"].append(str(image_id))
    dataset = Dataset.from_dict(columns, features=panoptic_features())
    return label_info.attach_to(dataset), label_info
