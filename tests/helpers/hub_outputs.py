"""What the Hub tests compare between the in-process model and a copy loaded elsewhere (a folder, a repo id).

Used in the test process and, unchanged, in the fresh client processes (`_hub_load_client.py`), so both sides
compute the same things: processor outputs, raw logits and depths for a padded batch, the depth-aware
post-processing, and the pipeline's results for the three subtasks (threshold 0: random weights score low).
"""

from __future__ import annotations

import numpy as np
import torch

SUBTASKS = ("panoptic", "instance", "semantic")


def segment_outputs(*, model, processor, pipe, images: list) -> dict:
    """Everything compared, as tensors / plain Python (picklable by `torch.save`).

    Args:
        images: PIL images of different sizes (the batch is padded, so `pixel_mask` matters).
    """
    inputs = processor(images=images, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    sizes = [image.size[::-1] for image in images]
    panoptic = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.0, target_sizes=sizes, pixel_mask=inputs["pixel_mask"]
    )
    semantic = processor.post_process_semantic_segmentation(
        outputs, target_sizes=sizes, return_encoder_layers=True, pixel_mask=inputs["pixel_mask"]
    )
    result = {
        "pixel_values": inputs["pixel_values"],
        "pixel_mask": inputs["pixel_mask"],
        "class_queries_logits": outputs.class_queries_logits,
        "masks_queries_logits": outputs.masks_queries_logits,
        "encoder_layers_used": outputs.encoder_layers_used,
        "post_panoptic": [(r["segmentation"], r["segments_info"], r["encoder_layers_used"]) for r in panoptic],
        "post_semantic": [(r["segmentation"], r["encoder_layers_used"]) for r in semantic],
    }
    for subtask in SUBTASKS:
        kwargs = {} if subtask == "semantic" else {"threshold": 0.0}
        result[subtask] = [
            [(item["label"], item["score"], np.array(item["mask"])) for item in pipe(image, subtask=subtask, **kwargs)]
            for image in images
        ]
    return result


def assert_same_outputs(actual: dict, expected: dict) -> None:
    """Equal up to float round-off for logits; exactly equal for masks, labels, depths and (rounded) scores."""
    for key in ("pixel_values", "pixel_mask", "encoder_layers_used"):
        assert torch.equal(actual[key], expected[key]), key
    for key in ("class_queries_logits", "masks_queries_logits"):
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-5, msg=key)
    for (seg_a, info_a, depth_a), (seg_e, info_e, depth_e) in zip(actual["post_panoptic"], expected["post_panoptic"]):
        assert torch.equal(seg_a, seg_e) and info_a == info_e and depth_a == depth_e
    for (seg_a, depth_a), (seg_e, depth_e) in zip(actual["post_semantic"], expected["post_semantic"]):
        assert torch.equal(seg_a, seg_e) and depth_a == depth_e
    for subtask in SUBTASKS:
        assert len(actual[subtask]) == len(expected[subtask]), subtask
        for got, want in zip(actual[subtask], expected[subtask]):
            assert [(label, score) for label, score, _ in got] == [(label, score) for label, score, _ in want], subtask
            for (_, _, mask_a), (_, _, mask_e) in zip(got, want):
                assert np.array_equal(mask_a, mask_e), subtask
