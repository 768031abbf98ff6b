"""Mask AP equals pycocotools' own run (COCO.loadRes + COCOeval) built independently from the same inputs."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
import torch
from helpers.data import STUFF, THINGS, perturbed_prediction, random_reference
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from modeling_ecom2f.data import SegmentationDataError
from modeling_ecom2f.metrics import mask_average_precision


def _instance_output(panoptic_pred, rng):
    """A ``post_process_instance_segmentation`` output (ids from 0, -1 = none) with random scores."""
    seg = panoptic_pred["segmentation"].numpy().astype(np.int64)
    out = np.full(seg.shape, -1.0, np.float32)
    info = []
    for k, s in enumerate(panoptic_pred["segments_info"]):
        out[seg == s["id"]] = k
        info.append({"id": k, "label_id": s["label_id"], "was_fused": False, "score": float(rng.random())})
    return {"segmentation": torch.from_numpy(out), "segments_info": info}


def _pycocotools_reference(preds, refs):
    """COCO GT from the thing segments of ``refs`` and results through ``COCO.loadRes``; returns ``stats``."""
    images, anns, results = [], [], []
    for image_id, (pred, ref) in enumerate(zip(preds, refs), start=10):
        seg = ref["segmentation"].numpy()
        images.append({"id": image_id, "height": seg.shape[0], "width": seg.shape[1]})
        for s in ref["segments_info"]:
            if s["category_id"] not in THINGS:
                continue
            rle = mask_utils.encode(np.asfortranarray((seg == s["id"]).astype(np.uint8)))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": s["category_id"] + 100,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": s["iscrowd"],
                    "bbox": list(mask_utils.toBbox(rle)),
                }
            )
        pseg = pred["segmentation"].numpy()
        for s in pred["segments_info"]:
            mask = pseg == s["id"]
            if s["label_id"] in THINGS and mask.any():
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": s["label_id"] + 100,
                        "score": s["score"],
                        "segmentation": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))),
                    }
                )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c + 100, "name": str(c)} for c in THINGS],
        }
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", range(4))
def test_equals_pycocotools_own_run(seed):
    rng = np.random.default_rng(seed)
    refs = [random_reference(rng, size=48) for _ in range(10)]
    preds = [_instance_output(perturbed_prediction(rng, r, void=False), rng) for r in refs]
    ours = mask_average_precision(preds, refs, thing_ids=THINGS, stuff_ids=STUFF)
    expected = _pycocotools_reference(preds, refs)
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    got = [-1.0 if math.isnan(ours[n]) else ours[n] for n in names]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert 0 < ours["AP50"] < 1


def test_binary_maps_form_and_perfect_predictions():
    rng = np.random.default_rng(5)
    refs = [random_reference(rng, size=40, crowd=False, void=False) for _ in range(3)]
    perfect = []
    for ref in refs:
        seg = ref["segmentation"].numpy()
        things = [s for s in ref["segments_info"] if s["category_id"] in THINGS]
        maps = torch.from_numpy(np.stack([seg == s["id"] for s in things]).astype(np.float32)) if things else None
        info = [{"id": k, "label_id": s["category_id"], "score": 0.9} for k, s in enumerate(things)]
        perfect.append(
            {"segmentation": maps if maps is not None else torch.full(seg.shape, -1.0), "segments_info": info}
        )
    result = mask_average_precision(perfect, refs, thing_ids=THINGS, stuff_ids=STUFF)
    assert result["AP"] == pytest.approx(1.0) and result["AR100"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) or math.isnan(v) for v in result["per_class_AP"].values())


def test_no_detections_gives_zero_and_bad_inputs_raise():
    rng = np.random.default_rng(1)
    refs = [random_reference(rng, size=40, crowd=False) for _ in range(2)]
    empty = [{"segmentation": torch.full((40, 40), -1.0), "segments_info": []} for _ in refs]
    if any(s["category_id"] in THINGS for r in refs for s in r["segments_info"]):
        assert mask_average_precision(empty, refs, thing_ids=THINGS, stuff_ids=STUFF)["AP"] == 0.0
    with pytest.raises(SegmentationDataError, match=r"image '#0'.*differs"):
        mask_average_precision(
            [{"segmentation": torch.full((8, 8), -1.0), "segments_info": []}],
            refs[:1],
            thing_ids=THINGS,
            stuff_ids=STUFF,
        )
    bad = {"segmentation": torch.zeros((40, 40)), "segments_info": [{"id": 0, "label_id": 77, "score": 1.0}]}
    with pytest.raises(SegmentationDataError, match=r"\[77\].*missing from the label metadata"):
        mask_average_precision([bad], refs[:1], thing_ids=THINGS, stuff_ids=STUFF)
