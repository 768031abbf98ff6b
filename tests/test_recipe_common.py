"""Unit tests of the recipe's pure parts: ideal-depth labels, PQ from summed counts, mask AP from per-image parts,
samplers and sharding. (The recipe tests' shared settings and tiny chains are in `helpers.recipe`.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_ecom2f.data import SyntheticPanopticConfig, make_synthetic_panoptic_dataset, panoptic_reference
from modeling_ecom2f.metrics import (
    coco_gt_and_detections,
    mask_average_precision,
    panoptic_quality,
    per_image_panoptic_quality,
)
from modeling_ecom2f.recipe import RecipeError, histogram_table, ideal_depths, label_histogram
from modeling_ecom2f.recipe.data import EpochShuffleSampler, shard_indices
from modeling_ecom2f.recipe.segmentation_evaluation import coco_mask_ap, panoptic_from_counts


# ----------------------------------------------------------------------------------------------------------- labels


def test_ideal_depths_follow_the_rule_with_ties_to_the_shallowest_exit():
    pq = np.array([[0.5, 0.6, 0.6], [0.9, 0.9, 0.95], [0.2, 0.2, 0.2]])
    assert ideal_depths(pq, [2, 3, 4], 0.0).tolist() == [3, 4, 2]
    # beta = 0.03: row 0 -> (0.44, 0.51, 0.48), row 1 -> (0.84, 0.81, 0.83), row 2 -> shallowest
    assert ideal_depths(pq, [2, 3, 4], 0.03).tolist() == [3, 2, 2]
    assert ideal_depths(pq, [2, 3, 4], 1.0).tolist() == [2, 2, 2]
    # beta is per encoder layer: with exits 2 and 6 the penalty gap is 4 * beta
    assert ideal_depths(np.array([[0.50, 0.53]]), [2, 6], 0.007).tolist() == [6]
    assert ideal_depths(np.array([[0.50, 0.53]]), [2, 6], 0.008).tolist() == [2]


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf")])
def test_bad_beta_is_an_error(beta):
    with pytest.raises(RecipeError, match="beta"):
        ideal_depths(np.zeros((2, 3)), [2, 3, 4], beta)


def test_bad_pq_tables_are_errors():
    with pytest.raises(RecipeError, match="shape"):
        ideal_depths(np.zeros((2, 2)), [2, 3, 4], 0.01)
    with pytest.raises(RecipeError, match="no per-image quality"):
        ideal_depths(np.zeros((0, 3)), [2, 3, 4], 0.01)
    with pytest.raises(RecipeError, match="fractions"):
        ideal_depths(np.full((2, 3), 55.0), [2, 3, 4], 0.01)  # PQ in percent


def test_histogram_and_table():
    pq = np.array([[0.5, 0.6, 0.6], [0.9, 0.9, 0.95], [0.2, 0.2, 0.2]])
    assert label_histogram(ideal_depths(pq, [2, 3, 4], 0.0), [2, 3, 4]) == {2: 1, 3: 1, 4: 1}
    table = histogram_table(pq, [2, 3, 4], [0.0, 1.0])
    assert table.splitlines()[2].split()[:4] == ["1", "3", "0", "0"]


# ------------------------------------------------------------------------------------------------ metric assembly


def _rows_and_predictions(seed: int = 3):
    splits, info = make_synthetic_panoptic_dataset(config=SyntheticPanopticConfig(
        height=48, width=48, num_train_images=6, num_validation_images=0, seed=seed, max_objects=5, min_object_size=6))
    rng = np.random.default_rng(seed)
    refs, panoptic, instance = [], [], []
    for row in splits["train"]:
        ref = panoptic_reference(row)
        seg = ref["segmentation"].clone()
        segments = [s for s in ref["segments_info"] if not s["iscrowd"]]
        keep = [s for s in segments if rng.random() > 0.3]  # drop some segments, mislabel one
        out = torch.zeros_like(seg)
        pan_info, inst_info = [], []
        for k, s in enumerate(keep, start=1):
            mask = seg == s["id"]
            if k == 1:
                mask = mask & (torch.arange(seg.shape[1])[None, :] < seg.shape[1] // 2)  # a partial mask
            out[mask] = k
            label = s["category_id"] if k != 2 else (s["category_id"] + 1) % len(info.id2label)
            pan_info.append({"id": k, "label_id": int(label)})
            inst_info.append({"id": k, "label_id": int(label), "score": float(rng.uniform(0.5, 1.0))})
        refs.append(ref)
        panoptic.append({"segmentation": out, "segments_info": pan_info})
        things = [s for s in inst_info if s["label_id"] in info.thing_ids]
        kept_ids = torch.tensor([s["id"] for s in things] or [-5])
        instance.append({"segmentation": torch.where(torch.isin(out, kept_ids), out, torch.full_like(out, -1)),
                         "segments_info": things})
    return info, refs, panoptic, instance


def test_pq_from_summed_per_image_counts_equals_the_dataset_pq():
    info, refs, panoptic, _ = _rows_and_predictions()
    scores = per_image_panoptic_quality(panoptic, refs, thing_ids=info.thing_ids, stuff_ids=info.stuff_ids)
    counts = np.stack([scores.true_positives.sum(0), scores.false_positives.sum(0), scores.false_negatives.sum(0),
                       scores.iou_sum.sum(0)]).astype(float)
    ours = panoptic_from_counts(counts, scores.category_ids.tolist(), info.thing_ids)
    reference = panoptic_quality(panoptic, refs, thing_ids=info.thing_ids, stuff_ids=info.stuff_ids)
    for key in ("pq", "sq", "rq", "pq_things", "pq_stuff", "sq_things", "rq_stuff"):
        assert ours[key] == pytest.approx(getattr(reference, key), abs=1e-12), key
    assert 0 < ours["pq"] < 1


def test_mask_ap_from_per_image_parts_equals_mask_ap_on_all_images():
    info, refs, _, instance = _rows_and_predictions()
    parts = []
    for pred, ref in zip(instance, refs):
        gt, dets = coco_gt_and_detections([pred], [ref], thing_ids=info.thing_ids, stuff_ids=info.stuff_ids)
        parts.append((gt["images"], gt["annotations"], dets))
    ours = coco_mask_ap(parts, info.thing_ids)
    reference = mask_average_precision(instance, refs, thing_ids=info.thing_ids, stuff_ids=info.stuff_ids)
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12, nan_ok=True), key
    assert ours["AP"] > 0


# ------------------------------------------------------------------------------------------- samplers and shards


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(10, seed=1), EpochShuffleSampler(10, seed=1)
    b.set_epoch(1)
    b.set_epoch(0)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    a.set_epoch(1)
    assert list(a) != list(b)


@pytest.mark.parametrize("rows,procs", [(10, 2), (7, 3), (2, 4), (0, 2)])
def test_shards_cover_every_row_once_in_order(rows, procs):
    shards = [shard_indices(rows, process_index=p, num_processes=procs) for p in range(procs)]
    assert [i for shard in shards for i in shard] == list(range(rows))
