"""Object-detection ground truth from panoptic rows: COCO-style boxes and class labels of the thing instances.

The boxes are measured on the decoded panoptic map (the visible pixels of each segment), so they are right for any
adapter, with or without a `bbox` in `segments_info`. The result is at once the `annotations` argument of the stock
Deformable DETR image processor (COCO detection format) and the ground truth of `metrics.per_image_box_ap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .collate import decode_row
from .labels import SegmentationLabelInfo
from .panoptic_format import build_segments_info

__all__ = ["detection_reference"]


def detection_reference(
    row: Mapping[str, Any],
    *,
    label_info: SegmentationLabelInfo | None = None,
    image_id: int = 0,
    things_only: bool = True,
) -> dict[str, Any]:
    """COCO detection ground truth of one standard row.

    Args:
        row: a row with the standard columns (`image`, `annotation`, `segments_info`, `image_id`).
        label_info: the data set's labels; with `things_only` only its thing categories become boxes.
        image_id: the integer id the image processor and pycocotools need (the row's own id is a string).
        things_only: keep thing segments only (stuff regions are not objects). Without `label_info` every segment
            is kept.

    Returns:
        `{"image_id": int, "annotations": [{"id", "bbox": [x, y, w, h], "category_id", "area", "iscrowd"}],
        "source_image_id": str, "size": (height, width)}`, in pixels of the original image. `category_id` is the
        data set's label id, which is the detector's class index (give the detector `num_labels` > the largest id).
    """
    image, ids, info, source_id = decode_row(row, label_info=label_info)
    keep = None if label_info is None or not things_only else set(label_info.thing_ids)
    triples = [
        (int(s["id"]), int(s["category_id"]), int(s.get("iscrowd", 0)))
        for s in info
        if keep is None or int(s["category_id"]) in keep
    ]
    segments = build_segments_info(ids, triples, image_id=source_id)  # boxes of the visible pixels
    annotations = [
        {
            "id": int(s["id"]),
            "bbox": [float(v) for v in s["bbox"]],
            "category_id": int(s["category_id"]),
            "area": float(s["area"]),
            "iscrowd": int(s["iscrowd"]),
        }
        for s in segments
    ]
    return {
        "image_id": int(image_id),
        "annotations": annotations,
        "source_image_id": source_id,
        "size": (int(image.shape[0]), int(image.shape[1])),
    }
