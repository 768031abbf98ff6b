"""Cityscapes adapter for the ``gtFine`` layout::

    root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      L, label ids 0..33
    root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   16-bit: label_id * 1000 + k
                                                                                     on instances, label_id elsewhere

Classes are the 19 evaluation classes (train ids ``0..18``, the official ``labels.py`` table); every other label
id is void. As in cityscapesscripts' ``createPanopticImgs``, thing pixels without an instance id (group labels
such as "cars") form one crowd segment per class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .adapter_common import dataset_from_rows, image_size_of, panoptic_row
from .errors import SegmentationDataError
from .label_maps import panoptic_from_category_instance
from .labels import SegmentationLabelInfo
from .panoptic_format import open_image_file

__all__ = ["load_cityscapes", "CITYSCAPES_CLASSES"]

#: (label id, train id, name, is thing) of the 19 evaluated Cityscapes classes.
CITYSCAPES_CLASSES: tuple[tuple[int, int, str, bool], ...] = (
    (7, 0, "road", False),
    (8, 1, "sidewalk", False),
    (11, 2, "building", False),
    (12, 3, "wall", False),
    (13, 4, "fence", False),
    (17, 5, "pole", False),
    (19, 6, "traffic light", False),
    (20, 7, "traffic sign", False),
    (21, 8, "vegetation", False),
    (22, 9, "terrain", False),
    (23, 10, "sky", False),
    (24, 11, "person", True),
    (25, 12, "rider", True),
    (26, 13, "car", True),
    (27, 14, "truck", True),
    (28, 15, "bus", True),
    (31, 16, "train", True),
    (32, 17, "motorcycle", True),
    (33, 18, "bicycle", True),
)


def load_cityscapes(*, root: str | os.PathLike, split: str = "val") -> tuple["datasets.Dataset", SegmentationLabelInfo]:  # noqa: F821
    """Load one Cityscapes split (``"train"``, ``"val"`` or ``"test"``) as panoptic rows with train-id classes.

    Raises:
        SegmentationDataError: naming the image (``<city>_<seq>_<frame>``), for a missing/unreadable label file,
            a size mismatch, or instance ids that disagree with the label ids.
    """
    root = Path(root)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: must be 'train', 'val' or 'test', got {split!r}")
    image_root = root / "leftImg8bit" / split
    if not image_root.is_dir():
        raise FileNotFoundError(f"Cityscapes image folder is missing: {image_root}")
    label_info = SegmentationLabelInfo(
        id2label={train: name for _, train, name, _ in CITYSCAPES_CLASSES},
        thing_ids=tuple(train for _, train, _, thing in CITYSCAPES_CLASSES if thing),
        source_category_ids={train: label for label, train, _, _ in CITYSCAPES_CLASSES},
        name=f"cityscapes-{split}",
    )
    to_train = np.full(256, -1, np.int64)
    for label, train, _, _ in CITYSCAPES_CLASSES:
        to_train[label] = train

    def rows():
        for image_path in sorted(image_root.glob("*/*_leftImg8bit.png")):
            stem = image_path.name[: -len("_leftImg8bit.png")]
            gt_dir = root / "gtFine" / split / image_path.parent.name
            size = image_size_of(str(image_path), image_id=stem)
            labels = np.asarray(
                open_image_file(gt_dir / f"{stem}_gtFine_labelIds.png", image_id=stem, what="labelIds"), dtype=np.int64
            )
            instances = np.asarray(
                open_image_file(gt_dir / f"{stem}_gtFine_instanceIds.png", image_id=stem, what="instanceIds"),
                dtype=np.int64,
            )
            if labels.ndim != 2 or instances.shape != labels.shape:
                raise SegmentationDataError(
                    image_id=stem,
                    problem=f"instanceIds size {instances.shape} differs from labelIds size {labels.shape}",
                )
            has_instance = instances >= 1000
            if (has_instance & (instances // 1000 != labels)).any():
                raise SegmentationDataError(image_id=stem, problem="instanceIds disagree with labelIds")
            category = to_train[np.clip(labels, 0, 255)]
            instance = np.where(has_instance, instances % 1000 + 1, 0)
            ids, segments = panoptic_from_category_instance(
                category, instance, thing_ids=label_info.thing_ids, void=category < 0
            )
            yield panoptic_row(
                image=str(image_path), ids=ids, segments=segments, image_id=stem, label_info=label_info, image_size=size
            )

    return dataset_from_rows(rows(), label_info=label_info), label_info
