"""The procedural data set: knobs, determinism, one drawing -> three consistent ground truths, varying difficulty."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from modeling_ecom2f.data import (
    DIFFICULTY_COLUMNS,
    SegmentationLabelInfo,
    SyntheticPanopticConfig,
    make_synthetic_panoptic_dataset,
    panoptic_to_semantic,
    render_synthetic_sample,
    rgb_to_panoptic_ids,
    validate_panoptic,
)

SMALL = dict(height=64, width=64, num_train_images=6, num_validation_images=3)


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", 8),
        ("max_objects", 0),
        ("thing_classes", ("circle", "blob")),
        ("max_occlusion", 1.5),
        ("difficulty_range", (0.8, 0.2)),
        ("min_object_size", 1),
        ("stuff_classes", ()),
        ("max_object_size", 0.0),
    ],
)
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        SyntheticPanopticConfig(**{field: value})


def test_config_is_keyword_only_and_documented():
    with pytest.raises(TypeError):
        SyntheticPanopticConfig(64)  # noqa
    config = SyntheticPanopticConfig()
    for f in dataclasses.fields(config):
        assert f"{f.name}:" in SyntheticPanopticConfig.__doc__, f.name
    assert config.id2label[0] == "circle" and config.id2label[len(config.thing_classes)] == "sky"


def _digest(dataset):
    h = hashlib.sha256()
    for split in ("train", "validation"):
        table = dataset[split].with_format("arrow")[:]
        for column in ("image", "annotation"):
            for value in table[column].to_pylist():
                h.update(value["bytes"])
        h.update(repr(table["segments_info"].to_pylist()).encode())
    return h.hexdigest()


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    a, _ = make_synthetic_panoptic_dataset(config=SyntheticPanopticConfig(seed=3, **SMALL))
    b, _ = make_synthetic_panoptic_dataset(config=SyntheticPanopticConfig(seed=3, **SMALL))
    c, _ = make_synthetic_panoptic_dataset(config=SyntheticPanopticConfig(seed=4, **SMALL))
    assert _digest(a) == _digest(b) != _digest(c)
    # any image can be regenerated alone
    again = render_synthetic_sample(config=SyntheticPanopticConfig(seed=3, **SMALL), split="validation", index=2)
    row = a["validation"][2]
    np.testing.assert_array_equal(np.asarray(row["image"]), again.image)
    np.testing.assert_array_equal(rgb_to_panoptic_ids(np.asarray(row["annotation"])), again.panoptic_ids)


def test_columns_features_and_label_metadata():
    config = SyntheticPanopticConfig(**SMALL)
    dataset, info = make_synthetic_panoptic_dataset(config=config)
    assert sorted(dataset) == ["train", "validation"]
    assert len(dataset["train"]) == 6 and len(dataset["validation"]) == 3
    train = dataset["train"]
    assert train.column_names[:4] == ["image", "annotation", "segments_info", "image_id"]
    assert set(DIFFICULTY_COLUMNS) <= set(train.column_names)
    assert SegmentationLabelInfo.from_dataset(train) == info
    assert info.thing_ids == tuple(range(len(config.thing_classes)))
    assert set(info.stuff_ids) == set(range(len(config.thing_classes), len(config.id2label)))
    assert info.label2id["square"] == 1
    row = train[0]
    assert row["image"].size == (64, 64) and row["annotation"].mode == "RGB"
    ids = rgb_to_panoptic_ids(np.asarray(row["annotation"]))
    validate_panoptic(
        ids, row["segments_info"], image_id=row["image_id"], image_size=(64, 64), category_ids=info.id2label
    )


@pytest.mark.parametrize("index", range(6))
def test_semantic_instance_and_panoptic_come_from_one_drawing(index):
    config = SyntheticPanopticConfig(height=96, width=96, crowd_probability=0.5)
    sample = render_synthetic_sample(config=config, split="train", index=index)
    ids, info = sample.panoptic_ids, sample.segments_info
    np.testing.assert_array_equal(sample.semantic, panoptic_to_semantic(ids, info))
    things = {s["id"] for s in info if s["category_id"] < len(config.thing_classes) and not s["iscrowd"]}
    np.testing.assert_array_equal(sample.instance_ids, np.where(np.isin(ids, list(things)), ids, 0))
    for s in info:  # areas and boxes measured on the map
        ys, xs = np.nonzero(ids == s["id"])
        assert s["area"] == ys.size > 0
        assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert sample.difficulty["num_things"] == len(things)
    stuff_pixels = np.isin(sample.semantic, list(range(len(config.thing_classes), len(config.id2label))))
    assert stuff_pixels.any()  # every image has a stuff background


def test_difficulty_varies_and_drives_the_knobs():
    config = SyntheticPanopticConfig(height=96, width=96)
    samples = [render_synthetic_sample(config=config, split="train", index=i) for i in range(40)]
    d = np.array([s.difficulty["difficulty"] for s in samples])
    things = np.array([s.difficulty["num_things"] for s in samples])
    smallest = np.array([s.difficulty["min_thing_area"] for s in samples])
    noise = np.array([s.difficulty["noise_std"] for s in samples])
    assert d.min() < 0.2 and d.max() > 0.8
    assert np.corrcoef(d, things)[0, 1] > 0.6  # harder images hold more objects ...
    assert np.corrcoef(d, np.log1p(smallest))[0, 1] < -0.5  # ... and smaller ones
    np.testing.assert_allclose(noise, config.max_noise_std * d, rtol=1e-5)
    assert things.min() >= 1 and smallest[d > 0.8].min() < 40  # from one object to objects of a few pixels
    easy = SyntheticPanopticConfig(height=96, width=96, difficulty_range=(0.0, 0.0))
    s = render_synthetic_sample(config=easy, split="train", index=0).difficulty
    assert s["clutter_count"] == 0 and s["noise_std"] == 0.0 and s["color_similarity"] == 0.0
