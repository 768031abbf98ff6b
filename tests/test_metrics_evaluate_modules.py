"""The local ``evaluate`` modules load offline and take the stock processor's post-processed outputs as they are."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.data import STUFF, THINGS, random_reference

from modeling_ecom2f.metrics import evaluate_module_path, mask_average_precision, mean_iou, panoptic_quality

evaluate = pytest.importorskip("evaluate")


@pytest.fixture(scope="module")
def processed():
    """Real ``post_process_*`` outputs of transformers' Mask2Former processor on hand-built query logits."""
    from transformers import Mask2FormerImageProcessor

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    rng = np.random.default_rng(0)
    refs = [random_reference(rng, size=32, crowd=True) for _ in range(6)]
    num_labels = len(THINGS + STUFF)
    class_logits, mask_logits = [], []
    for ref in refs:  # one confident query per ground-truth segment
        seg = ref["segmentation"].numpy()
        cls = torch.full((8, num_labels + 1), -10.0)
        cls[:, -1] = 10.0  # unused queries predict "no object"
        masks = torch.full((8, 32, 32), -10.0)
        for q, s in enumerate(ref["segments_info"][:8]):
            cls[q, s["category_id"]], cls[q, -1] = 10.0, -10.0
            masks[q][torch.from_numpy(seg == s["id"])] = 10.0
        class_logits.append(cls)
        mask_logits.append(masks)
    outputs = SimpleNamespace(
        class_queries_logits=torch.stack(class_logits), masks_queries_logits=torch.stack(mask_logits)
    )
    processor = Mask2FormerImageProcessor()
    sizes = [(32, 32)] * len(refs)
    return {
        "refs": refs,
        "panoptic": processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes),
        "instance": processor.post_process_instance_segmentation(outputs, target_sizes=sizes),
        "semantic": processor.post_process_semantic_segmentation(outputs, target_sizes=sizes),
    }


def test_panoptic_quality_module(processed):
    metric = evaluate.load(evaluate_module_path("ecom2f_panoptic_quality"))
    out = metric.compute(
        predictions=processed["panoptic"], references=processed["refs"], thing_ids=THINGS, stuff_ids=STUFF
    )
    direct = panoptic_quality(processed["panoptic"], processed["refs"], thing_ids=THINGS, stuff_ids=STUFF)
    assert out["pq"] == pytest.approx(direct.pq) and 0.3 < out["pq"] <= 1.0
    assert out["per_class"] == direct.to_dict()["per_class"]


def test_mean_iou_module(processed):
    metric = evaluate.load(evaluate_module_path("ecom2f_mean_iou"))
    semantic_refs = []
    for ref in processed["refs"]:
        seg = ref["segmentation"].numpy()
        sem = np.full(seg.shape, 255)
        for s in ref["segments_info"]:
            sem[seg == s["id"]] = s["category_id"]
        semantic_refs.append(torch.from_numpy(sem))
    out = metric.compute(predictions=processed["semantic"], references=semantic_refs, num_labels=len(THINGS + STUFF))
    direct = mean_iou(processed["semantic"], semantic_refs, num_labels=len(THINGS + STUFF))
    assert out["mean_iou"] == pytest.approx(direct.mean_iou) and out["mean_iou"] > 0.5


def test_mask_ap_module(processed):
    metric = evaluate.load(evaluate_module_path("ecom2f_mask_ap"))
    for batch_pred, batch_ref in zip(processed["instance"], processed["refs"]):
        metric.add(prediction=batch_pred, reference=batch_ref)
    out = metric.compute(thing_ids=THINGS, stuff_ids=STUFF)
    direct = mask_average_precision(processed["instance"], processed["refs"], thing_ids=THINGS, stuff_ids=STUFF)
    assert out["AP"] == pytest.approx(direct["AP"]) or (math.isnan(out["AP"]) and math.isnan(direct["AP"]))
    assert out["AP50"] > 0.5
