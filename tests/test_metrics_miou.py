"""mIoU against torchmetrics' MeanIoU (its per-image reduction, and the data-set reduction via one stitched image)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.data import random_reference
from torchmetrics.segmentation import MeanIoU

from modeling_ecom2f.data import SegmentationDataError
from modeling_ecom2f.metrics import intersection_and_union, mean_iou, miou_from_counts

C = 6


def _maps(seed, n=8, size=24):
    rng = np.random.default_rng(seed)
    refs, preds = [], []
    for _ in range(n):
        ref = np.repeat(np.repeat(rng.integers(0, C, size=(size // 4, size // 4)), 4, 0), 4, 1)
        ref[rng.random(ref.shape) < 0.1] = 255  # void
        pred = np.where(rng.random(ref.shape) < 0.7, np.where(ref == 255, 0, ref), rng.integers(0, C, ref.shape))
        refs.append(torch.from_numpy(ref))
        preds.append(torch.from_numpy(pred))
    return preds, refs


def _one_hot(maps, void_from):
    out = []
    for m, r in zip(maps, void_from):
        hot = torch.nn.functional.one_hot(m.clamp(0, C - 1).long(), C).permute(2, 0, 1).bool()
        hot[:, r == 255] = False  # ignored pixels leave prediction and target alike
        out.append(hot)
    return torch.stack(out)


@pytest.mark.parametrize("seed", range(5))
def test_image_reduction_equals_torchmetrics(seed):
    preds, refs = _maps(seed)
    tm_all = MeanIoU(num_classes=C, input_format="one-hot")
    tm_all.update(_one_hot(preds, refs), _one_hot(refs, refs))
    tm_cls = MeanIoU(num_classes=C, per_class=True, input_format="one-hot")
    tm_cls.update(_one_hot(preds, refs), _one_hot(refs, refs))
    ours = mean_iou(preds, refs, num_labels=C, reduction="image")
    assert ours.mean_iou == pytest.approx(float(tm_all.compute()), abs=1e-6)
    np.testing.assert_allclose(np.nan_to_num(ours.per_class_iou, nan=-1.0), tm_cls.compute().numpy(), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_dataset_reduction_equals_torchmetrics_on_the_stitched_dataset(seed):
    preds, refs = _maps(seed)
    stitched_pred, stitched_ref = torch.cat(preds, dim=1)[None], torch.cat(refs, dim=1)[None]
    tm = MeanIoU(num_classes=C, per_class=True, input_format="one-hot")
    tm.update(_one_hot(stitched_pred, stitched_ref), _one_hot(stitched_ref, stitched_ref))
    ours = mean_iou(preds, refs, num_labels=C)
    expected = tm.compute().numpy()
    np.testing.assert_allclose(np.nan_to_num(ours.per_class_iou, nan=-1.0), expected, atol=1e-6)
    assert ours.mean_iou == pytest.approx(expected[expected >= 0].mean(), abs=1e-6)
    assert ours.mean_iou != pytest.approx(mean_iou(preds, refs, num_labels=C, reduction="image").mean_iou)


def test_hand_made_values_and_panoptic_references():
    ref = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2]])
    result = mean_iou([pred], [ref], num_labels=3)
    # class 0: tp 3, union 4; class 1: tp 3, union 4; class 2 only on an ignored pixel -> absent
    np.testing.assert_allclose(result.per_class_iou[:2], [0.75, 0.75])
    assert math.isnan(result.per_class_iou[2]) and result.mean_iou == 0.75
    assert result.pixel_accuracy == pytest.approx(6 / 7)
    panoptic = random_reference(np.random.default_rng(0))
    seg = panoptic["segmentation"].numpy()
    semantic = np.full(seg.shape, 255)
    for s in panoptic["segments_info"]:
        semantic[seg == s["id"]] = s["category_id"]
    a = mean_iou([torch.from_numpy(np.where(semantic == 255, 0, semantic))], [panoptic], num_labels=5)
    assert a.mean_iou == 1.0


def test_bad_inputs_raise_with_the_image_id():
    preds, refs = _maps(0, n=2)
    with pytest.raises(SegmentationDataError, match=r"image 'b'.*differs"):
        mean_iou([preds[0], preds[1][:5]], refs, num_labels=C, image_ids=["a", "b"])
    with pytest.raises(SegmentationDataError, match=r"image '#1'.*prediction class ids outside"):
        mean_iou([preds[0], preds[1] + C], refs, num_labels=C)
    with pytest.raises(ValueError, match="every image needs both"):
        mean_iou(preds, refs[:1], num_labels=C)


def _recipe_miou_before(confusion):
    """The formula the recipe's `summarize_mode` used inline before it called `miou_from_counts`."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float((tp[union > 0] / union[union > 0]).mean()) if (union > 0).any() else float("nan")


@pytest.mark.parametrize("seed", range(20))
def test_miou_from_counts_equals_the_former_recipe_formula_on_random_count_tables(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 12))
    confusion = rng.integers(0, 50, size=(c, c)) * (rng.random((c, c)) < 0.4)  # sparse: some classes absent
    if seed % 5 == 0:
        confusion[:] = 0  # no class at all: NaN both ways
    got = miou_from_counts(*intersection_and_union(confusion))
    before = _recipe_miou_before(confusion)
    assert (math.isnan(got) and math.isnan(before)) or got == before


def test_miou_from_counts_is_mean_iou_dataset_reduction():
    preds, refs = _maps(3)
    result = mean_iou(preds, refs, num_labels=C)
    assert miou_from_counts(*intersection_and_union(result.confusion_matrix)) == result.mean_iou
