"""PQ / SQ / RQ against torchmetrics, against a plain transcription of the panopticapi rules, and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.data import STUFF, THINGS, perturbed_prediction, random_reference, to_torchmetrics_input
from torchmetrics.detection import PanopticQuality

from modeling_ecom2f.data import SegmentationDataError
from modeling_ecom2f.metrics import (
    PanopticQualityAccumulator,
    panoptic_per_class_from_counts,
    panoptic_quality,
    per_image_panoptic_quality,
)

KW = dict(thing_ids=THINGS, stuff_ids=STUFF)


def _torchmetrics(preds, refs):
    metric = PanopticQuality(
        things=set(THINGS),
        stuffs=set(STUFF),
        return_per_class=True,
        return_sq_and_rq=True,
        allow_unknown_preds_category=True,
    )
    metric.update(
        torch.stack([to_torchmetrics_input(p) for p in preds]), torch.stack([to_torchmetrics_input(r) for r in refs])
    )
    per_class = metric.compute().reshape(-1, 3).double().numpy()
    overall = PanopticQuality(
        things=set(THINGS), stuffs=set(STUFF), return_sq_and_rq=True, allow_unknown_preds_category=True
    )
    overall.update(
        torch.stack([to_torchmetrics_input(p) for p in preds]), torch.stack([to_torchmetrics_input(r) for r in refs])
    )
    return per_class, overall.compute().double().numpy()


@pytest.mark.parametrize("seed", range(12))
def test_matches_torchmetrics_with_things_stuff_void_and_crowd(seed):
    rng = np.random.default_rng(seed)
    refs = [random_reference(rng) for _ in range(10)]
    preds = [perturbed_prediction(rng, r) for r in refs]
    assert any(s["iscrowd"] for r in refs for s in r["segments_info"]) or seed % 3  # crowd occurs in most runs
    per_class, overall = _torchmetrics(preds, refs)
    ours = panoptic_quality(preds, refs, protocol="torchmetrics", **KW)
    for k, cat in enumerate(THINGS + STUFF):
        got = ours.per_class.get(cat, {"pq": 0.0, "sq": 0.0, "rq": 0.0})
        np.testing.assert_allclose([got["pq"], got["sq"], got["rq"]], per_class[k], atol=1e-9)
    np.testing.assert_allclose([ours.pq, ours.sq, ours.rq], overall, atol=1e-9)


def _merge_stuff(entry):
    """One segment per stuff category (detectron2's Mask2Former post-processing; the COCO GT format has it)."""
    seg = entry["segmentation"].numpy().astype(np.int64).copy()
    first, info = {}, []
    for s in entry["segments_info"]:
        cat = s.get("label_id", s.get("category_id"))
        if cat in STUFF and not s.get("iscrowd", 0):
            if cat in first:
                seg[seg == s["id"]] = first[cat]
                continue
            first[cat] = s["id"]
        info.append(s)
    seg[seg < 0] = 0
    return seg, info


def _panopticapi_counts(pred_entry, ref_entry):
    """The COCO panopticapi ``pq_compute_single_core`` rules, written as plain dictionary loops."""
    pred, pred_info = _merge_stuff(pred_entry)
    gt, gt_info = _merge_stuff(ref_entry)
    pred_segs = {s["id"]: dict(s, category_id=s["label_id"]) for s in pred_info}
    gt_segs = {s["id"]: dict(s) for s in gt_info}
    for segs, seg in ((pred_segs, pred), (gt_segs, gt)):
        for k in segs:
            segs[k]["area"] = int((seg == k).sum())
    pairs = {}
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist()):
        pairs[(g, p)] = pairs.get((g, p), 0) + 1
    stats = {c: [0, 0, 0, 0.0] for c in THINGS + STUFF}  # tp, fp, fn, iou
    gt_done, pred_done = set(), set()
    for (g, p), inter in pairs.items():
        if g not in gt_segs or p not in pred_segs or gt_segs[g]["iscrowd"]:
            continue
        if gt_segs[g]["category_id"] != pred_segs[p]["category_id"]:
            continue
        union = pred_segs[p]["area"] + gt_segs[g]["area"] - inter - pairs.get((0, p), 0)
        if inter / union > 0.5:
            stats[gt_segs[g]["category_id"]][0] += 1
            stats[gt_segs[g]["category_id"]][3] += inter / union
            gt_done.add(g)
            pred_done.add(p)
    crowd_of = {}
    for g, info in gt_segs.items():
        if g in gt_done or info["area"] == 0:
            continue
        if info["iscrowd"]:
            crowd_of.setdefault(info["category_id"], []).append(g)  # all crowd regions of the category
            continue
        stats[info["category_id"]][2] += 1
    for p, info in pred_segs.items():
        if p in pred_done or info["area"] == 0:
            continue
        ignored = pairs.get((0, p), 0) + sum(pairs.get((g, p), 0) for g in crowd_of.get(info["category_id"], []))
        if ignored / info["area"] > 0.5:
            continue
        stats[info["category_id"]][1] += 1
    return stats


@pytest.mark.parametrize("seed", range(8))
def test_coco_protocol_matches_panopticapi_rules(seed):
    rng = np.random.default_rng(100 + seed)
    refs = [random_reference(rng) for _ in range(8)]
    preds = [perturbed_prediction(rng, r) for r in refs]
    totals = {c: [0, 0, 0, 0.0] for c in THINGS + STUFF}
    for p, r in zip(preds, refs):
        for c, v in _panopticapi_counts(p, r).items():
            totals[c] = [a + b for a, b in zip(totals[c], v)]
    ours = panoptic_quality(preds, refs, **KW)
    present = [c for c, (tp, fp, fn, _) in totals.items() if tp + fp + fn > 0]
    assert sorted(ours.per_class) == present
    for c in present:
        tp, fp, fn, iou = totals[c]
        got = ours.per_class[c]
        assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, fn)
        assert got["pq"] == pytest.approx(iou / (tp + 0.5 * fp + 0.5 * fn), abs=1e-12)
    things = [c for c in present if c in THINGS]
    expected_things = np.mean([ours.per_class[c]["pq"] for c in things]) if things else math.nan
    assert ours.pq_things == pytest.approx(expected_things, nan_ok=True)


def test_protocols_agree_when_prediction_has_no_void_and_no_crowd():
    rng = np.random.default_rng(7)
    refs = [random_reference(rng, crowd=False) for _ in range(20)]
    preds = [perturbed_prediction(rng, r, void=False) for r in refs]
    for p in preds:  # fill every unassigned pixel with an extra stuff segment
        seg = p["segmentation"]
        if (seg <= 0).any():
            seg[seg <= 0] = 999
            p["segments_info"].append({"id": 999, "label_id": STUFF[0], "score": 1.0})
    coco = panoptic_quality(preds, refs, **KW)
    tm = panoptic_quality(preds, refs, protocol="torchmetrics", **KW)
    assert coco.per_class == tm.per_class
    _, overall = _torchmetrics(preds, refs)
    np.testing.assert_allclose([coco.pq, coco.sq, coco.rq], overall, atol=1e-9)


def _entry(seg, segments, key="category_id"):
    return {
        "segmentation": torch.as_tensor(seg),
        "segments_info": [{"id": i, key: c, "iscrowd": z} for i, c, z in segments],
    }


def test_per_image_pq_is_consistent_with_the_dataset_figure_on_a_hand_made_case():
    a = np.full((16, 16), 2)
    a[4:8, 4:8] = 1
    ref_a, pred_a = _entry(a, [(1, 0, 0), (2, 3, 0)]), _entry(a, [(1, 0, 0), (2, 3, 0)], "label_id")
    b_ref = np.full((16, 16), 2)
    b_ref[4:12, 4:12] = 1
    b_pred = np.full((16, 16), 2)
    b_pred[4:12, 6:14] = 1  # shifted by 2: |inter| = 48, |union| = 80, IoU = 0.6
    ref_b, pred_b = _entry(b_ref, [(1, 1, 0), (2, 4, 0)]), _entry(b_pred, [(1, 1, 0), (2, 4, 0)], "label_id")
    stuff_iou = 176 / 208  # complements: |inter| = 256 - 80, |union| = 192 + 192 - 176
    per_image = per_image_panoptic_quality([pred_a, pred_b], [ref_a, ref_b], **KW)
    np.testing.assert_allclose(per_image.pq, [1.0, (0.6 + stuff_iou) / 2])
    np.testing.assert_array_equal(per_image.num_categories, [2, 2])
    dataset = panoptic_quality([pred_a, pred_b], [ref_a, ref_b], **KW)
    # every category lives in one image and each image holds two: the data-set PQ is the mean of per-image PQs
    assert dataset.pq == pytest.approx(per_image.pq.mean())
    assert dataset.pq_things == pytest.approx((1.0 + 0.6) / 2)
    assert dataset.pq_stuff == pytest.approx((1.0 + stuff_iou) / 2)
    assert dataset.rq == 1.0


def test_per_image_counts_sum_to_the_dataset_counts():
    rng = np.random.default_rng(3)
    refs = [random_reference(rng) for _ in range(15)]
    preds = [perturbed_prediction(rng, r) for r in refs]
    per_image = per_image_panoptic_quality(preds, refs, **KW)
    dataset = panoptic_quality(preds, refs, **KW)
    cats = list(per_image.category_ids)
    for c, stats in dataset.per_class.items():
        k = cats.index(c)
        assert per_image.true_positives[:, k].sum() == stats["tp"]
        assert per_image.false_positives[:, k].sum() == stats["fp"]
        assert per_image.false_negatives[:, k].sum() == stats["fn"]
        assert per_image.iou_sum[:, k].sum() == pytest.approx(stats["iou_sum"])
    assert np.all((per_image.pq >= 0) & (per_image.pq <= 1))
    # the per-class figures of summed per-image counts (what the recipe's evaluation reports) are the data set's
    summed = np.stack([per_image.true_positives.sum(0), per_image.false_positives.sum(0),
                       per_image.false_negatives.sum(0), per_image.iou_sum.sum(0)])
    from_counts = panoptic_per_class_from_counts(summed, cats)
    assert from_counts.keys() == dataset.per_class.keys()
    for c, stats in dataset.per_class.items():
        assert from_counts[c] == pytest.approx(stats)
    # each per-image PQ equals the data-set PQ of that image alone
    for i in (0, 5, 9):
        assert per_image.pq[i] == pytest.approx(panoptic_quality([preds[i]], [refs[i]], **KW).pq)


def test_image_with_nothing_to_find_scores_one_and_an_empty_dataset_is_nan():
    void = np.zeros((8, 8), np.int64)
    ref, pred = _entry(void, []), {"segmentation": torch.full((8, 8), -1), "segments_info": []}
    per_image = per_image_panoptic_quality([pred], [ref], **KW)
    assert per_image.pq.tolist() == [1.0] and per_image.num_categories.tolist() == [0]
    assert math.isnan(panoptic_quality([pred], [ref], **KW).pq)
    # a prediction on ground-truth void is no false positive either
    spurious = _entry(np.ones((8, 8), np.int64), [(1, 0, 0)], "label_id")
    assert per_image_panoptic_quality([spurious], [ref], **KW).pq.tolist() == [1.0]
    # but a missed object is: PQ 0
    missed = _entry(np.ones((8, 8), np.int64), [(1, 0, 0)])
    assert per_image_panoptic_quality([pred], [missed], **KW).pq.tolist() == [0.0]


def test_crowd_regions_absorb_false_positives_only_of_their_category():
    gt = np.zeros((10, 10), np.int64)
    gt[:, :5] = 1  # crowd of class 0
    gt[:, 5:] = 2  # stuff
    pred = np.zeros((10, 10), np.int64)
    pred[:, :5] = 1
    pred[:, 5:] = 2
    ref = _entry(gt, [(1, 0, 1), (2, 3, 0)])
    same = panoptic_quality([_entry(pred, [(1, 0, 0), (2, 3, 0)], "label_id")], [ref], **KW)
    other = panoptic_quality([_entry(pred, [(1, 1, 0), (2, 3, 0)], "label_id")], [ref], **KW)
    assert 0 not in same.per_class and same.pq == 1.0  # on its own crowd: ignored, and crowd is never an FN
    assert other.per_class[1]["fp"] == 1  # class 1 on a class-0 crowd is a false positive


def test_stuff_split_into_two_predicted_segments_is_merged():
    gt = np.ones((8, 8), np.int64)
    pred = np.ones((8, 8), np.int64)
    pred[:, 4:] = 2
    result = panoptic_quality([_entry(pred, [(1, 3, 0), (2, 3, 0)], "label_id")], [_entry(gt, [(1, 3, 0)])], **KW)
    assert result.per_class[3]["tp"] == 1 and result.pq == 1.0
    things = panoptic_quality([_entry(pred, [(1, 0, 0), (2, 0, 0)], "label_id")], [_entry(gt, [(1, 0, 0)])], **KW)
    assert things.per_class[0]["tp"] == 0  # thing instances are not merged


def test_accumulator_streams_batches_like_one_call():
    rng = np.random.default_rng(11)
    refs = [random_reference(rng) for _ in range(9)]
    preds = [perturbed_prediction(rng, r) for r in refs]
    acc = PanopticQualityAccumulator(**KW)
    for start in range(0, 9, 4):
        acc.update(preds[start : start + 4], refs[start : start + 4])
    assert acc.compute().to_dict() == panoptic_quality(preds, refs, **KW).to_dict()
    assert len(acc.per_image().pq) == 9


def test_bad_inputs_name_the_image():
    rng = np.random.default_rng(0)
    ref = random_reference(rng)
    pred = perturbed_prediction(rng, ref)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        panoptic_quality([pred, pred], [ref], **KW)
    small = {"segmentation": pred["segmentation"][:10], "segments_info": pred["segments_info"]}
    with pytest.raises(SegmentationDataError, match=r"image 'img-7'.*differs"):
        panoptic_quality([small], [ref], image_ids=["img-7"], **KW)
    unknown = {
        "segmentation": pred["segmentation"],
        "segments_info": [dict(s, label_id=42) for s in pred["segments_info"]],
    }
    with pytest.raises(SegmentationDataError, match=r"image '#0'.*\[42\].*missing from the label metadata"):
        panoptic_quality([unknown], [ref], **KW)
    twice = dict(ref, segments_info=ref["segments_info"] + ref["segments_info"][:1], image_id="x")
    with pytest.raises(SegmentationDataError, match=r"image 'x'.*overlapping"):
        panoptic_quality([pred], [twice], **KW)
    with pytest.raises(SegmentationDataError, match="prediction is missing"):
        panoptic_quality([None], [ref], **KW)
    unlisted = dict(pred, segments_info=pred["segments_info"][1:])
    if len(pred["segments_info"]) and (pred["segmentation"] == pred["segments_info"][0]["id"]).any():
        with pytest.raises(SegmentationDataError, match="absent from segments_info"):
            panoptic_quality([unlisted], [ref], **KW)
