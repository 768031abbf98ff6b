"""Each real-data adapter reads fixtures written in that data set's exact on-disk format and round-trips them."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, Features, Image, List, Value
from helpers.data import write_ade20k, write_cityscapes, write_coco_panoptic

from modeling_ecom2f.data import (
    SegmentationLabelInfo,
    load_ade20k,
    load_cityscapes,
    load_coco_panoptic,
    load_mapped_dataset,
    panoptic_ids_to_rgb,
    rgb_to_panoptic_ids,
    validate_panoptic,
)
from modeling_ecom2f.data.panoptic_format import encode_png


def _segments(row):
    """``{frozenset of pixel positions: (category_id, iscrowd)}`` of a loaded row (id-agnostic comparison)."""
    ids = rgb_to_panoptic_ids(np.asarray(row["annotation"]))
    return {
        frozenset(np.flatnonzero(ids == s["id"]).tolist()): (s["category_id"], s["iscrowd"])
        for s in row["segments_info"]
    }


def test_coco_panoptic_round_trip(tmp_path):
    fx = write_coco_panoptic(tmp_path)
    dataset, info = load_coco_panoptic(annotation_file=fx["json"], image_dir=fx["image_dir"])
    assert info.id2label == {0: "person", 1: "car", 2: "sky", 3: "grass"} and info.thing_ids == (0, 1)
    assert info.source_category_ids == {0: 1, 1: 3, 2: 184, 3: 193}
    assert SegmentationLabelInfo.from_dataset(dataset) == info
    assert dataset["image_id"] == list(fx["expected"])
    remap = {v: k for k, v in info.source_category_ids.items()}
    for row in dataset:
        ids, expected = fx["expected"][row["image_id"]]
        np.testing.assert_array_equal(rgb_to_panoptic_ids(np.asarray(row["annotation"])), ids)
        assert [(s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in row["segments_info"]] == [
            (s["id"], remap[s["category_id"]], s["iscrowd"], s["area"], s["bbox"]) for s in expected
        ]
        assert row["image"].size == (32, 24)
    kept, _ = load_coco_panoptic(annotation_file=fx["json"], image_dir=fx["image_dir"], contiguous_ids=False)
    assert {s["category_id"] for s in kept[0]["segments_info"]} == {1, 3, 184, 193}


def test_ade20k_semantic_plus_instances_round_trip(tmp_path):
    write_ade20k(tmp_path / "ADEChallengeData2016")
    dataset, info = load_ade20k(root=tmp_path / "ADEChallengeData2016", split="validation")
    assert info.num_labels == 150 and info.id2label[3] == "floor, flooring" and info.thing_ids == (12, 19)
    assert len(dataset) == 2 and dataset[0]["image_id"] == "ADE_val_00000001"
    row = dataset[0]
    segments = _segments(row)
    width = 24
    person_a = frozenset(r * width + c for r in range(2, 8) for c in range(2, 8))
    assert segments[person_a] == (12, 0)
    assert sorted(segments.values()) == [(0, 0), (3, 0), (12, 0), (12, 0)]  # wall, floor, two persons
    ids = rgb_to_panoptic_ids(np.asarray(row["annotation"]))
    assert ids[12:16, 18:22].max() == 0 and ids[0, 0] == 0  # person without instance, and "other": void
    semantic_only, info2 = load_ade20k(root=tmp_path / "ADEChallengeData2016", split="val", use_instances=False)
    assert sorted(_segments(semantic_only[0]).values()) == [(0, 0), (3, 0), (12, 0)]


def test_cityscapes_round_trip(tmp_path):
    write_cityscapes(tmp_path)
    dataset, info = load_cityscapes(root=tmp_path, split="val")
    assert info.id2label[13] == "car" and info.thing_ids == (11, 12, 13, 14, 15, 16, 17, 18)
    assert dataset["image_id"] == ["frankfurt_000000_000000", "lindau_000000_000001"]
    segments = _segments(dataset[0])
    assert sorted(segments.values()) == [(0, 0), (10, 0), (13, 0), (13, 0), (13, 1)]  # road, sky, 2 cars, car group
    ids = rgb_to_panoptic_ids(np.asarray(dataset[0]["annotation"]))
    assert ids[0:2, 0:4].max() == 0 and ids[14:, 28:].max() == 0  # unlabeled and ego vehicle are void
    crowd = [k for k, v in segments.items() if v == (13, 1)][0]
    assert crowd == frozenset(r * 32 + c for r in range(9, 12) for c in range(20, 26))


LABELS = SegmentationLabelInfo(id2label={0: "road", 1: "car", 2: "sky"}, thing_ids=(1,))


def _source(annotations, extra=None, features=None):
    rng = np.random.default_rng(0)
    columns = {
        "pixel_values": [
            {"bytes": encode_png(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)), "path": None} for _ in annotations
        ],
        "label": annotations,
        "name": [f"im{i}" for i in range(len(annotations))],
    }
    columns.update(extra or {})
    feats = {"pixel_values": Image(), "label": Image(), "name": Value("string")}
    feats.update(features or {})
    return Dataset.from_dict(columns, features=Features(feats))


def _load_mapped(source, annotation_format: str, **kwargs):
    """`load_mapped_dataset` of a `_source`-shaped data set (image column `pixel_values`, annotations in `label`)."""
    return load_mapped_dataset(source, annotation_format=annotation_format, label_info=LABELS,
                               image_column="pixel_values", annotation_column="label", **kwargs)


def test_mapped_semantic_instance_cityscapes_and_coco_formats(tmp_path):
    cat = np.zeros((8, 10), np.uint8)
    cat[:3] = 2
    cat[4:7, 1:4] = 1
    cat[4:7, 6:9] = 1
    inst = np.zeros((8, 10), np.uint8)
    inst[4:7, 1:4] = 1
    inst[4:7, 6:9] = 2
    # semantic with ADE-style reduce_labels: stored ids are class + 1, 0 = void
    sem = (cat + 1).astype(np.uint8)
    sem[7, 9] = 0
    ds, _ = _load_mapped(_source([{"bytes": encode_png(sem), "path": None}]), "semantic", image_id_column="name",
                         reduce_labels=True)
    assert ds[0]["image_id"] == "im0" and sorted(_segments(ds[0]).values()) == [(0, 0), (1, 0), (2, 0)]
    assert rgb_to_panoptic_ids(np.asarray(ds[0]["annotation"]))[7, 9] == 0
    # instance_rg: channel 0 class, channel 1 instance
    rg = np.stack([cat, inst, np.zeros_like(cat)], -1)
    ds, _ = _load_mapped(_source([{"bytes": encode_png(rg), "path": None}]), "instance_rg")
    assert ds[0]["image_id"] == "row-0" and sorted(_segments(ds[0]).values()) == [(0, 0), (1, 0), (1, 0), (2, 0)]
    # cityscapes_ids: class * 1000 + k; a car without instance id is a crowd
    city = np.where(inst > 0, 1000 + inst.astype(np.int64) - 1, cat).astype(np.uint16)
    city[0, 0] = 255  # ignore_index: void
    city[7, 0] = 1  # a car pixel without instance id
    ds, _ = _load_mapped(_source([{"bytes": encode_png(city), "path": None}]), "cityscapes_ids")
    assert sorted(_segments(ds[0]).values()) == [(0, 0), (1, 0), (1, 0), (1, 1), (2, 0)]
    assert rgb_to_panoptic_ids(np.asarray(ds[0]["annotation"]))[0, 0] == 0
    # coco_panoptic_rgb through a parquet file on disk
    ids = np.where(inst > 0, 100 + inst, cat + 1).astype(np.int64)
    info = [
        {"id": 1, "category_id": 0, "iscrowd": 0},
        {"id": 3, "category_id": 2, "iscrowd": 0},
        {"id": 101, "category_id": 1, "iscrowd": 0},
        {"id": 102, "category_id": 1, "iscrowd": 1},
    ]
    source = _source(
        [{"bytes": encode_png(panoptic_ids_to_rgb(ids)), "path": None}],
        {"segs": [info]},
        {"segs": List({"id": Value("int64"), "category_id": Value("int64"), "iscrowd": Value("int64")})},
    )
    source.to_parquet(str(tmp_path / "data.parquet"))
    ds, _ = _load_mapped(str(tmp_path / "data.parquet"), "coco_panoptic_rgb", segments_info_column="segs")
    np.testing.assert_array_equal(rgb_to_panoptic_ids(np.asarray(ds[0]["annotation"])), ids)
    assert [(s["id"], s["iscrowd"]) for s in ds[0]["segments_info"]] == [(1, 0), (3, 0), (101, 0), (102, 1)]
    validate_panoptic(ids, ds[0]["segments_info"], image_id="x", image_size=(8, 10), category_ids=LABELS.id2label)
    assert np.asarray(ds[0]["image"]).shape == (8, 10, 3)


def test_mapped_binary_masks_and_saved_dataset(tmp_path):
    masks = np.zeros((2, 8, 10), np.uint8)
    masks[0, :4] = 255
    masks[1, 4:, :5] = 255
    feats = {"label": List(Image()), "segs": List({"category_id": Value("int64")})}
    source = _source(
        [[{"bytes": encode_png(m), "path": None} for m in masks]],
        {"segs": [[{"category_id": 2}, {"category_id": 1}]]},
        feats,
    )
    source.save_to_disk(str(tmp_path / "saved"))
    ds, info = _load_mapped(str(tmp_path / "saved"), "binary_masks", segments_info_column="segs")
    segments = _segments(ds[0])
    assert sorted(segments.values()) == [(1, 0), (2, 0)] and len(max(segments, key=len)) == 40
    assert SegmentationLabelInfo.from_dataset(ds) == LABELS
    with pytest.raises(ValueError, match="annotation_format"):
        load_mapped_dataset(source, annotation_format="yolo", label_info=LABELS)
