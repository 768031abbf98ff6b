"""Per-image box AP equals pycocotools' COCOeval restricted to the same single image; synthetic rows give boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from modeling_ecom2f import SyntheticPanopticConfig, detection_reference, make_synthetic_panoptic_dataset
from modeling_ecom2f.metrics import per_image_box_ap

CATEGORIES = [1, 2, 3]


def _pycocotools_ap(ground_truth: dict, prediction: dict, *, height: int = 200, width: int = 300) -> float:
    """COCOeval bbox AP (stats[0]) on one image, from the same ground truth and detections."""
    image_id = ground_truth["image_id"]
    annotations = [{**a, "image_id": image_id, "id": k + 1, "area": a["bbox"][2] * a["bbox"][3]}
                   for k, a in enumerate(ground_truth["annotations"])]
    gt = COCO()
    gt.dataset = {"images": [{"id": image_id, "height": height, "width": width}], "annotations": annotations,
                  "categories": [{"id": c, "name": str(c)} for c in CATEGORIES]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
        results = [{"image_id": image_id, "category_id": int(l), "score": float(s),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                   for s, l, b in zip(prediction["scores"], prediction["labels"], boxes.tolist())]
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = [image_id]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def _random_case(seed: int, *, num_gt: int, num_det: int, crowd: bool):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (num_gt, 2))
    wh = rng.uniform(8, 80, (num_gt, 2))
    annotations = [{"bbox": [float(v) for v in (*p, *s)], "category_id": int(rng.choice(CATEGORIES)),
                    "iscrowd": int(crowd and k == 0)} for k, (p, s) in enumerate(zip(xy, wh))]
    # Detections: jittered copies of ground truth (some good, some poor) plus random boxes, some wrong classes.
    boxes, labels = [], []
    for k in range(num_det):
        if k < 2 * num_gt and num_gt:
            x, y, w, h = annotations[k % num_gt]["bbox"]
            jitter = rng.normal(0, 4 if k < num_gt else 12, 4)
            box = [x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]]
            label = annotations[k % num_gt]["category_id"] if rng.random() > 0.15 else int(rng.choice(CATEGORIES))
        else:
            x, y = rng.uniform(0, 250, 2)
            box = [x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)]
            label = int(rng.choice(CATEGORIES))
        boxes.append(box)
        labels.append(label)
    scores = rng.uniform(0.05, 1.0, num_det)
    scores[: min(3, num_det)] = 0.5  # ties: the stable order must match COCO's
    prediction = {"scores": torch.tensor(scores), "labels": torch.tensor(labels, dtype=torch.long),
                  "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)}
    return {"image_id": 7, "annotations": annotations}, prediction


@pytest.mark.parametrize(
    ("seed", "num_gt", "num_det", "crowd"),
    [(0, 5, 12, False), (1, 8, 30, True), (2, 3, 0, False), (3, 1, 1, False), (4, 10, 120, True), (5, 6, 6, False)],
)
def test_per_image_ap_equals_pycocotools(seed, num_gt, num_det, crowd):
    ground_truth, prediction = _random_case(seed, num_gt=num_gt, num_det=num_det, crowd=crowd)
    ours = per_image_box_ap(prediction, ground_truth)
    expected = _pycocotools_ap(ground_truth, prediction)
    assert ours.has_ground_truth
    assert ours.ap == pytest.approx(expected, abs=1e-9)
    assert ours.ap == pytest.approx(float(np.mean(ours.ap_per_iou)), abs=1e-12)


def test_perfect_and_empty_images():
    ground_truth = {"image_id": 1, "annotations": [{"bbox": [10.0, 10.0, 20.0, 30.0], "category_id": 2, "iscrowd": 0}]}
    perfect = {"scores": [0.9], "labels": [2], "boxes": [[10.0, 10.0, 30.0, 40.0]]}
    assert per_image_box_ap(perfect, ground_truth).ap == pytest.approx(1.0)
    assert per_image_box_ap({"scores": [], "labels": [], "boxes": []}, ground_truth).ap == 0.0
    empty_gt = {"image_id": 1, "annotations": []}
    nothing = per_image_box_ap({"scores": [0.2], "labels": [1], "boxes": [[0, 0, 5, 5]]}, empty_gt, score_threshold=0.5)
    assert nothing.ap == 1.0 and not nothing.has_ground_truth
    assert per_image_box_ap({"scores": [0.7], "labels": [1], "boxes": [[0, 0, 5, 5]]}, empty_gt,
                            score_threshold=0.5).ap == 0.0


def test_synthetic_rows_give_thing_boxes():
    dataset, label_info = make_synthetic_panoptic_dataset(
        config=SyntheticPanopticConfig(height=64, width=80, num_train_images=3, num_validation_images=1, seed=3)
    )
    row = dataset["train"][0]
    reference = detection_reference(row, label_info=label_info, image_id=5)
    things = [s for s in row["segments_info"] if label_info.is_thing(s["category_id"])]
    assert reference["image_id"] == 5 and reference["size"] == (64, 80)
    assert len(reference["annotations"]) == len(things) > 0
    for annotation, segment in zip(reference["annotations"], things):
        assert annotation["category_id"] == segment["category_id"]
        assert annotation["bbox"] == [float(v) for v in segment["bbox"]]  # the dataset's own visible-pixel boxes
    # Its own boxes as detections are a perfect image.
    prediction = {"scores": [1.0] * len(things), "labels": [a["category_id"] for a in reference["annotations"]],
                  "boxes": [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in reference["annotations"])]}
    crowd_free = all(a["iscrowd"] == 0 for a in reference["annotations"])
    assert per_image_box_ap(prediction, reference).ap == pytest.approx(1.0) or not crowd_free
    # The stock Deformable DETR processor takes it as COCO detection annotations.
    from modeling_ecom2f import EcoDeformableDetrImageProcessor

    processor = EcoDeformableDetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    encoded = processor(images=np.array(row["image"].convert("RGB")), annotations=reference, return_tensors="pt")
    label = encoded["labels"][0]
    assert label["class_labels"].tolist() == [a["category_id"] for a in reference["annotations"]]
    assert label["boxes"].shape == (len(things), 4) and bool((label["boxes"] <= 1).all())
