"""Every bad input raises an error that names the image and the problem; nothing is skipped silently."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, Features, Image, List, Value
from helpers.data import write_ade20k, write_cityscapes, write_coco_panoptic
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from modeling_ecom2f.data import (
    SegmentationDataError,
    SegmentationLabelInfo,
    load_ade20k,
    load_cityscapes,
    load_coco_panoptic,
    load_mapped_dataset,
    make_collate_fn,
)
from modeling_ecom2f.data.panoptic_format import encode_png, panoptic_ids_to_rgb


def _coco(tmp_path, edit=None):
    fx = write_coco_panoptic(tmp_path, num_images=2)
    if edit:
        data = json.loads(fx["json"].read_text())
        edit(data)
        fx["json"].write_text(json.dumps(data))
    return fx


def _load(fx):
    return load_coco_panoptic(annotation_file=fx["json"], image_dir=fx["image_dir"])


def test_coco_unknown_category(tmp_path):
    fx = _coco(tmp_path, lambda d: d["annotations"][1]["segments_info"][0].update(category_id=999))
    with pytest.raises(SegmentationDataError, match=r"image '140': category ids \[999\] are missing from the label"):
        _load(fx)


def test_coco_overlapping_segments(tmp_path):
    def dup(data):
        segs = data["annotations"][0]["segments_info"]
        segs.append(dict(segs[2], category_id=3))  # the same pixels claimed by a second segment

    with pytest.raises(SegmentationDataError, match=r"image '139': overlapping segments"):
        _load(_coco(tmp_path, dup))


def test_coco_size_mismatch(tmp_path):
    fx = _coco(tmp_path)
    png = tmp_path / "annotations" / "panoptic_val2017" / "000000000140.png"
    ids = np.ones((10, 10), np.int64)
    png.write_bytes(encode_png(panoptic_ids_to_rgb(ids)))
    with pytest.raises(
        SegmentationDataError, match=r"image '140': annotation size 10x10 \(WxH\) differs from image size 32x24"
    ):
        _load(fx)


def test_coco_unreadable_png_and_missing_files(tmp_path):
    fx = _coco(tmp_path)
    png = tmp_path / "annotations" / "panoptic_val2017" / "000000000139.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(SegmentationDataError, match=r"image '139': annotation file is unreadable"):
        _load(fx)
    png.unlink()
    with pytest.raises(SegmentationDataError, match=r"image '139': annotation file is missing"):
        _load(fx)
    with pytest.raises(SegmentationDataError, match=r"image '139': file is missing: .*139.png"):
        load_coco_panoptic(annotation_file=fx["json"], image_dir=fx["image_dir"], validate=False)
    other = _coco(tmp_path / "other")
    (tmp_path / "other" / "val2017" / "000000000140.jpg").unlink()
    with pytest.raises(SegmentationDataError, match=r"image '140': image file is missing: .*140.jpg"):
        _load(other)
    data = json.loads(fx["json"].read_text())
    data["annotations"] = data["annotations"][1:]
    fx["json"].write_text(json.dumps(data))
    with pytest.raises(SegmentationDataError, match=r"image '139': has no entry in the panoptic annotations"):
        _load(fx)


def test_coco_ids_in_png_missing_from_json(tmp_path):
    fx = _coco(tmp_path, lambda d: d["annotations"][0]["segments_info"].pop(3))
    with pytest.raises(
        SegmentationDataError, match=r"image '139': segment ids \[\d+\] are in the PNG but not in segments_info"
    ):
        _load(fx)


def test_ade20k_and_cityscapes_bad_files(tmp_path):
    root = tmp_path / "ade"
    write_ade20k(root)
    sem = root / "annotations" / "validation" / "ADE_val_00000002.png"
    sem.write_bytes(encode_png(np.ones((5, 5), np.uint8)))
    with pytest.raises(SegmentationDataError, match=r"image 'ADE_val_00000002': annotation size 5x5 \(WxH\) differs"):
        load_ade20k(root=root, use_instances=False)
    sem.unlink()
    with pytest.raises(SegmentationDataError, match=r"image 'ADE_val_00000002': semantic annotation file is missing"):
        load_ade20k(root=root)
    city = tmp_path / "city"
    write_cityscapes(city)
    inst = city / "gtFine" / "val" / "lindau" / "lindau_000000_000001_gtFine_instanceIds.png"
    inst.write_bytes(b"garbage")
    with pytest.raises(SegmentationDataError, match=r"image 'lindau_000000_000001': instanceIds file is unreadable"):
        load_cityscapes(root=city)
    inst.write_bytes(encode_png(np.full((16, 32), 24000, np.uint16)))  # person instances on car/road/sky labels
    with pytest.raises(
        SegmentationDataError, match=r"image 'lindau_000000_000001': instanceIds disagree with labelIds"
    ):
        load_cityscapes(root=city)


LABELS = SegmentationLabelInfo(id2label={0: "road", 1: "car"}, thing_ids=(1,))


def test_mapped_bad_inputs():
    image = {"bytes": encode_png(np.zeros((6, 6, 3), np.uint8)), "path": None}
    masks = np.zeros((2, 6, 6), np.uint8)
    masks[0, :4], masks[1, 3:] = 1, 1  # row 3 in both
    source = Dataset.from_dict(
        {
            "image": [image],
            "masks": [[{"bytes": encode_png(m), "path": None} for m in masks]],
            "segs": [[{"category_id": 0}, {"category_id": 1}]],
            "key": ["scene-9"],
        },
        features=Features(
            {
                "image": Image(),
                "masks": List(Image()),
                "segs": List({"category_id": Value("int64")}),
                "key": Value("string"),
            }
        ),
    )
    with pytest.raises(SegmentationDataError, match=r"image 'scene-9': overlapping segments: 6 pixels"):
        load_mapped_dataset(
            source,
            annotation_format="binary_masks",
            label_info=LABELS,
            annotation_column="masks",
            segments_info_column="segs",
            image_id_column="key",
        )
    semantic = np.zeros((6, 6), np.uint8)
    semantic[0, 0] = 7
    source = Dataset.from_dict(
        {"image": [image], "annotation": [{"bytes": encode_png(semantic), "path": None}]},
        features=Features({"image": Image(), "annotation": Image()}),
    )
    with pytest.raises(SegmentationDataError, match=r"image 'validation-0': category ids \[7\] are missing"):
        load_mapped_dataset(source, annotation_format="semantic", label_info=LABELS, split="validation")
    small = Dataset.from_dict(
        {"image": [image], "annotation": [{"bytes": encode_png(semantic[:3]), "path": None}]},
        features=Features({"image": Image(), "annotation": Image()}),
    )
    with pytest.raises(SegmentationDataError, match=r"image 'row-0': annotation size 6x3 \(WxH\) differs"):
        load_mapped_dataset(small, annotation_format="semantic", label_info=LABELS, ignore_index=7)


def test_collator_rejects_bad_rows():
    collate = make_collate_fn(image_processor=Mask2FormerImageProcessorPil(), label_info=LABELS)
    ids = np.ones((6, 6), np.int64)
    row = {
        "image": np.zeros((6, 6, 3), np.uint8),
        "annotation": panoptic_ids_to_rgb(ids),
        "image_id": "r1",
        "segments_info": [{"id": 1, "category_id": 5, "iscrowd": 0}],
    }
    with pytest.raises(SegmentationDataError, match=r"image 'r1': category ids \[5\] are missing"):
        collate([row])
    row.update(segments_info=[{"id": 1, "category_id": 1, "iscrowd": 0}], image=np.zeros((7, 6, 3), np.uint8))
    with pytest.raises(
        SegmentationDataError, match=r"image 'r1': annotation size 6x6 \(WxH\) differs from image size 6x7"
    ):
        collate([row])
    row.update(image=np.zeros((6, 6, 3), np.uint8), annotation={"bytes": b"oops", "path": None})
    with pytest.raises(SegmentationDataError, match=r"image 'r1': annotation bytes are unreadable"):
        collate([row])
