"""Step 2's stored per-image PQ vectors equal a direct evaluation of each image alone at each depth, and the labels
for any beta come from the stored table without the model."""

from __future__ import annotations


import numpy as np
import torch

from helpers.recipe import read_json

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.data import SegmentationLabelInfo, decode_row, panoptic_reference  # noqa: E402
from modeling_ecom2f.metrics import per_image_panoptic_quality  # noqa: E402
from modeling_ecom2f.recipe import (  # noqa: E402
    histogram_table,
    ideal_depths,
    label_histogram,
    load_derived_dataset,
    quality_matrix,
)
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor  # noqa: E402


def test_stored_pq_equals_a_direct_per_image_evaluation(tiny_chain):
    import datasets

    paths = tiny_chain["paths"]
    derived, info = load_derived_dataset(paths["step2"])
    exits = info["exit_layers"]
    stored = quality_matrix(derived, exits)
    train = datasets.load_from_disk(str(paths["data"]))["train"]
    labels = SegmentationLabelInfo.from_dataset(train)
    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(paths["step1"]).eval()
    processor = EcoMask2FormerImageProcessor.from_pretrained(paths["step1"])
    direct = np.zeros_like(stored)
    for i, row in enumerate(train):
        image, _, _, image_id = decode_row(row)
        inputs = processor(images=[image], return_tensors="pt")
        reference = panoptic_reference(row)
        for j, depth in enumerate(exits):
            with torch.no_grad():
                outputs = model(pixel_values=inputs["pixel_values"], num_encoder_layers=depth)
            prediction = processor.post_process_panoptic_segmentation(
                outputs, threshold=0.5, overlap_mask_area_threshold=0.8, label_ids_to_fuse=set(),
                target_sizes=[tuple(reference["segmentation"].shape)])
            direct[i, j] = per_image_panoptic_quality(prediction, [reference], thing_ids=labels.thing_ids,
                                                      stuff_ids=labels.stuff_ids).pq[0]
        assert derived[i]["image_id"] == image_id and derived[i]["index"] == i
    np.testing.assert_allclose(stored, direct, atol=1e-9)
    assert np.isfinite(np.asarray(derived["loss"])).all() and (np.asarray(derived["loss"]) > 0).all()
    assert len(derived[0]["sq"]) == len(derived[0]["rq"]) == len(exits)


def test_labels_for_any_beta_come_from_the_stored_table(tiny_chain):
    paths = tiny_chain["paths"]
    derived, info = load_derived_dataset(paths["step2"])
    pq = quality_matrix(derived, info["exit_layers"])
    saved = read_json(paths["step2"] / "label_histograms.json")["betas"]
    for beta in (0.0, 0.01, 0.1):
        labels = ideal_depths(pq, info["exit_layers"], beta)
        assert {str(k): v for k, v in label_histogram(labels, info["exit_layers"]).items()} == saved[f"{beta:g}"]["counts"]
    # a beta nobody asked for before: no model needed
    assert ideal_depths(pq, info["exit_layers"], 0.0123).shape == (len(derived),)
    assert (paths["step2"] / "label_histograms.txt").read_text().strip() == histogram_table(
        pq, info["exit_layers"], sorted(map(float, saved))).strip()


def test_an_old_format_derived_set_still_reads(tmp_path):
    """A step-2 folder written before `derived_info.json` named its task and quality column (only `pq` per exit):
    read as segmentation with quality `pq`."""
    import datasets

    rows = [{"index": i, "image_id": f"img{i}", "pq": [shallow, 0.5], "sq": [0.8, 0.9], "rq": [0.3, 0.6],
             "loss": [1.0, 0.5]} for i, shallow in enumerate((0.2, 0.4, 0.8))]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "derived.parquet"))
    (tmp_path / "derived_info.json").write_text(
        '{"exit_layers": [2, 3], "split": "train", "num_images": 3, "model_digest": "x", "pq_units": "fraction"}',
        encoding="utf-8")
    derived, info = load_derived_dataset(tmp_path)
    expected = np.array([r["pq"] for r in rows])
    np.testing.assert_allclose(quality_matrix(derived, info["exit_layers"]), expected)
    np.testing.assert_array_equal(ideal_depths(expected, [2, 3], 0.0), [3, 3, 2])
