"""Rows -> model inputs through transformers' stock Mask2Former processor (both backends), with augmentation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Mask2FormerImageProcessor
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from modeling_ecom2f.data import (
    EcoMask2FormerTrainAugmentation,
    SyntheticPanopticConfig,
    make_collate_fn,
    make_synthetic_panoptic_dataset,
    panoptic_reference,
    rgb_to_panoptic_ids,
    semantic_reference,
)


@pytest.fixture(scope="module")
def synthetic():
    config = SyntheticPanopticConfig(
        height=64, width=64, num_train_images=4, num_validation_images=2, crowd_probability=0.5
    )
    return make_synthetic_panoptic_dataset(config=config)


@pytest.mark.parametrize("backend", [Mask2FormerImageProcessor, Mask2FormerImageProcessorPil])
def test_labels_follow_the_ground_truth(synthetic, backend):
    dataset, info = synthetic
    rows = [dataset["train"][i] for i in range(4)]
    processor = backend(size={"height": 64, "width": 64})  # processor defaults: ignore_index None, the collator sets it
    batch = make_collate_fn(image_processor=processor, label_info=info)(rows)
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and batch["pixel_mask"].shape == (4, 64, 64)
    for row, masks, classes in zip(rows, batch["mask_labels"], batch["class_labels"]):
        ids = rgb_to_panoptic_ids(np.asarray(row["annotation"]))
        kept = [s for s in row["segments_info"] if not s["iscrowd"]]  # crowd and void are not supervised
        assert classes.dtype == torch.int64 and masks.dtype == torch.float32
        assert sorted(classes.tolist()) == sorted(s["category_id"] for s in kept)
        expected = {s["category_id"]: [] for s in kept}
        for s in kept:
            expected[s["category_id"]].append((ids == s["id"]).sum())
        got = {}
        for m, c in zip(masks, classes.tolist()):
            got.setdefault(c, []).append(int(m.sum()))
        assert {c: sorted(v) for c, v in got.items()} == {c: sorted(v) for c, v in expected.items()}
        crowd = [s for s in row["segments_info"] if s["iscrowd"]]
        for s in crowd:
            assert masks[:, torch.from_numpy(ids == s["id"])].sum() == 0


def test_augmentation_scales_crops_flips_image_and_map_together():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.repeat(rng.integers(1, 6, size=(3, 4)), 16, 0), 16, 1)  # 48x64, blocks of 16
    image = np.stack([ids * 40, 255 - ids * 40, ids * 10], -1).astype(np.uint8)  # colour encodes the id
    aug = EcoMask2FormerTrainAugmentation(crop_size=(32, 40), min_scale=0.6, max_scale=2.0, flip_probability=0.5)
    flips = 0
    for seed in range(12):
        out_img, out_ids = aug(image=image, panoptic_ids=ids, rng=np.random.default_rng(seed))
        assert out_img.shape == (32, 40, 3) and out_ids.shape == (32, 40)
        # pixels whose 5x5 neighbourhood has one id, away from the window border (no resampling mixes them)
        interior = np.zeros_like(out_ids, bool)
        interior[2:-2, 2:-2] = True
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                interior &= np.roll(out_ids, (dy, dx), (0, 1)) == out_ids
        labelled = interior & (out_ids > 0)
        assert labelled.sum() > 10
        np.testing.assert_allclose(out_img[labelled][:, 0], out_ids[labelled] * 40, atol=2)
        again_img, again_ids = aug(image=image, panoptic_ids=ids, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(again_ids, out_ids)
        flips += int(out_ids[0, 0] != ids[0, 0])
    assert 0 < flips  # some windows differ from the top-left corner (crops and flips happen)
    exact = EcoMask2FormerTrainAugmentation(crop_size=(48, 64), min_scale=1.0, max_scale=1.0, flip_probability=1.0)
    out_img, out_ids = exact(image=image, panoptic_ids=ids, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out_ids, ids[:, ::-1])
    np.testing.assert_array_equal(out_img, image[:, ::-1])
    half = EcoMask2FormerTrainAugmentation(crop_size=(48, 64), min_scale=0.5, max_scale=0.5, flip_probability=0.0)
    out_img, out_ids = half(image=image, panoptic_ids=ids, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out_ids[:24, :32], ids[::2, ::2])  # nearest sampling of the map
    assert (out_ids[24:] == 0).all() and (out_img[24:] == 0).all()  # padded with void / black
    with pytest.raises(ValueError, match="^min_scale:"):
        EcoMask2FormerTrainAugmentation(min_scale=2.0, max_scale=1.0)


def test_collator_with_augmentation_references_and_worker_seeds(synthetic, monkeypatch):
    dataset, info = synthetic
    rows = [dataset["validation"][i] for i in range(2)]
    aug = EcoMask2FormerTrainAugmentation(crop_size=(32, 32), min_scale=0.8, max_scale=1.5)
    collate = make_collate_fn(
        image_processor=Mask2FormerImageProcessorPil(),
        augmentation=aug,
        label_info=info,
        processor_kwargs={"do_resize": False},
        return_references=True,
        seed=5,
    )
    batch = collate(rows)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert all(((m == 0) | (m == 1)).all() for m in batch["mask_labels"])
    assert batch["target_sizes"] == [(64, 64), (64, 64)] and batch["image_ids"] == [r["image_id"] for r in rows]
    ref = panoptic_reference(rows[0], label_info=info)
    assert torch.equal(batch["references"][0]["segmentation"], ref["segmentation"])
    assert batch["references"][0]["segments_info"] == ref["segments_info"]
    semantic = semantic_reference(rows[0])
    seg = ref["segmentation"].numpy()
    first = ref["segments_info"][0]
    assert (semantic.numpy()[seg == first["id"]] == first["category_id"]).all() and (semantic[seg == 0] == 255).all()
    # DataLoader workers (and epochs) get different augmentation streams via torch's per-worker seed
    outputs = []
    for worker_seed in (11, 12):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda s=worker_seed: SimpleNamespace(seed=s, id=0))
        outputs.append(
            make_collate_fn(
                image_processor=Mask2FormerImageProcessorPil(),
                augmentation=aug,
                seed=5,
                processor_kwargs={"do_resize": False},
            )(rows)["pixel_values"]
        )
    assert not torch.equal(outputs[0], outputs[1])
