"""A batch gives every image what it gets alone: images of any sizes in one padded batch (the processor's
`pixel_mask`) get the class and mask logits, gate logits, depth and post-processed segmentation of their solo run,
through the model, `forward_exits`, the pipeline, the gated ONNX runtime and the Deformable DETR variant.

Tiny random-init models (init_std 0.1, so that mask logits sit away from the decoder's `sigmoid < 0.5` attention
threshold and the gate's choice depends on the image); hypothesis draws sizes (multiples of 32 and not), batch sizes
2-4 and depth requests, derandomised so that the examples are the same on every run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers.data import gradient_image  # noqa: E402
from helpers.demo import DEMO  # noqa: E402
from helpers.detection import tiny_eco_detector  # noqa: E402
from helpers.models import tiny_eco_model  # noqa: E402
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerImageProcessor  # noqa: E402
from modeling_ecom2f.ecom2f_size_groups import image_extents, pad_images, size_groups  # noqa: E402

ATOL = 1e-4
FEW = settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# Image sides, multiples of 32 and not; each model's coarsest map (stride 32, Deformable DETR's extra level 64) needs
# two cells, so one side exceeds that stride.
SEGMENTER_SIDES = st.one_of(st.sampled_from([64, 96]), st.integers(33, 80))
DETECTOR_SIDES = st.one_of(st.sampled_from([96, 128]), st.integers(65, 100))


def _gated(model):
    """Give the model a trained-looking gate whose choice varies from image to image."""
    gate = model.exit_gate
    with torch.no_grad():
        for layer in gate.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(1))
    model.config.gate_trained = True
    return model


@pytest.fixture(scope="module")
def segmenter():
    # 64 channels in 32 GroupNorm groups: with one channel per group the projected map's per-channel spatial mean,
    # which the gate pools, would be 0 for every image.
    return _gated(tiny_eco_model(init_std=0.1, exit_layers=[1, 2, 3, 4], feature_size=64))


@pytest.fixture(scope="module")
def detector():
    return _gated(tiny_eco_detector(init_std=0.1, d_model=64))  # 2 channels per GroupNorm group, as above


@st.composite
def batches(draw, *, sides=SEGMENTER_SIDES, exits=(1, 2, 3, 4)):
    """`(images, depth request)`: 2-4 random images of random sizes and `None` (gate), an exit or one per image."""
    count = draw(st.integers(2, 4))
    sizes = [(draw(sides), draw(sides)) for _ in range(count)]
    if draw(st.booleans()):
        sizes[-1] = sizes[0]  # two images of one size share a group
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    images = [torch.randn(3, h, w, generator=generator) for h, w in sizes]
    kind = draw(st.sampled_from(["gate", "fixed", "per_image"]))
    depths = {"gate": None, "fixed": draw(st.sampled_from(exits)),
              "per_image": torch.tensor([draw(st.sampled_from(exits)) for _ in range(count)])}[kind]
    return images, depths


def _depth_of(depths, i):
    return depths if not isinstance(depths, torch.Tensor) else int(depths[i])


def alone(model, image, **kwargs):
    ones = torch.ones(1, *image.shape[1:], dtype=torch.long)
    with torch.no_grad():
        return model(pixel_values=image[None], pixel_mask=ones, output_gate_logits=True, **kwargs)


@FEW
@given(batches())
def test_mixed_size_batch_equals_each_image_alone(segmenter, batch):
    images, depths = batch
    pixel_values, pixel_mask = pad_images(images)
    processor = EcoMask2FormerImageProcessor()
    with torch.no_grad():
        out = segmenter(pixel_values=pixel_values, pixel_mask=pixel_mask, num_encoder_layers=depths,
                        output_gate_logits=True)
    batch_panoptic = processor.post_process_panoptic_segmentation(out, threshold=0.0)
    batch_semantic = processor.post_process_semantic_segmentation(out)
    for i, image in enumerate(images):
        solo = alone(segmenter, image, num_encoder_layers=_depth_of(depths, i))
        height, width = solo.masks_queries_logits.shape[-2:]
        assert out.mask_sizes[i].tolist() == [height, width]
        assert out.image_sizes[i].tolist() == list(image.shape[1:])
        torch.testing.assert_close(out.class_queries_logits[i], solo.class_queries_logits[0], rtol=0, atol=ATOL)
        torch.testing.assert_close(out.masks_queries_logits[i, :, :height, :width], solo.masks_queries_logits[0],
                                   rtol=0, atol=ATOL)
        torch.testing.assert_close(out.gate_logits[i], solo.gate_logits[0], rtol=0, atol=ATOL)
        assert int(out.encoder_layers_used[i]) == int(solo.encoder_layers_used[0])
        # Post-processing without target sizes: each image's own processed size and the solo segmentation.
        solo_panoptic = processor.post_process_panoptic_segmentation(solo, threshold=0.0)[0]
        assert batch_panoptic[i]["segmentation"].shape == image.shape[1:]
        assert torch.equal(batch_panoptic[i]["segmentation"], solo_panoptic["segmentation"])
        assert [s["label_id"] for s in batch_panoptic[i]["segments_info"]] == [
            s["label_id"] for s in solo_panoptic["segments_info"]]
        assert torch.equal(batch_semantic[i], processor.post_process_semantic_segmentation(solo)[0])


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_forward_exits_of_a_mixed_batch_equal_the_forward_at_each_depth(segmenter, batch):
    # The forward gives each image what it gets alone (the test above), so this holds for forward_exits too.
    images, _ = batch
    pixel_values, pixel_mask = pad_images(images)
    with torch.no_grad():
        exits = dict(segmenter.forward_exits(pixel_values, pixel_mask=pixel_mask, exits=[2, 4],
                                             output_gate_logits=True))
        assert sorted(exits) == [2, 4]
        for depth, out in exits.items():
            forward = segmenter(pixel_values=pixel_values, pixel_mask=pixel_mask, num_encoder_layers=depth,
                                output_gate_logits=True)
            for name in ("class_queries_logits", "masks_queries_logits", "gate_logits", "mask_sizes"):
                torch.testing.assert_close(getattr(out, name), getattr(forward, name), rtol=0, atol=ATOL, msg=name)
            assert out.encoder_layers_used.tolist() == [depth] * len(images)


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(batches(sides=DETECTOR_SIDES, exits=(2, 3, 4)))
def test_deformable_detr_mixed_batch_equals_each_image_alone(detector, batch):
    images, depths = batch
    pixel_values, pixel_mask = pad_images(images)
    with torch.no_grad():
        out = detector(pixel_values=pixel_values, pixel_mask=pixel_mask, num_encoder_layers=depths,
                       output_gate_logits=True)
    for i, image in enumerate(images):
        solo = alone(detector, image, num_encoder_layers=_depth_of(depths, i))
        for name in ("logits", "pred_boxes", "gate_logits"):
            torch.testing.assert_close(getattr(out, name)[i], getattr(solo, name)[0], rtol=0, atol=ATOL, msg=name)
        assert int(out.encoder_layers_used[i]) == int(solo.encoder_layers_used[0])


@pytest.mark.parametrize("name, side", [("segmenter", 64), ("detector", 96)])
def test_the_gate_varies_so_the_properties_can_fail(request, name, side):
    model, generator = request.getfixturevalue(name), torch.Generator().manual_seed(0)
    depths = {int(alone(model, torch.randn(3, side, side, generator=generator)).encoder_layers_used[0])
              for _ in range(8)}
    assert len(depths) >= 2, depths


def test_same_size_batches_take_the_one_pass_path():
    pixel_values = torch.zeros(3, 3, 64, 96)
    assert size_groups(None, pixel_values) is None
    assert size_groups(torch.ones(3, 64, 96, dtype=torch.long), pixel_values) is None
    mask = torch.ones(3, 64, 96, dtype=torch.long)
    mask[1, 40:] = 0
    groups = size_groups(mask, pixel_values)
    assert [(g.height, g.width, g.indices.tolist()) for g in groups] == [(64, 96, [0, 2]), (40, 96, [1])]


def test_a_mask_that_is_not_the_processors_padding_is_refused():
    mask = torch.ones(2, 64, 64, dtype=torch.long)
    mask[0, :8] = 0  # padding at the top
    with pytest.raises(ValueError, match="pixel_mask of image 0 is not a rectangle of ones at the top-left"):
        image_extents(mask)
    mask[0] = 0
    with pytest.raises(ValueError, match="pixel_mask of image 0 is all zeros"):
        image_extents(mask)


def test_pipeline_batches_give_each_image_its_solo_result(tmp_path):
    from transformers import pipeline

    from helpers.hub_fixtures import save_model_folder, tiny_processor, trained_gate_model

    folder = save_model_folder(tmp_path / "model", model=trained_gate_model(), processor=tiny_processor())
    images = [gradient_image(72, 88), gradient_image(40, 100), gradient_image(64, 64), gradient_image(90, 30)]
    # The stock pipeline collate concatenates `pixel_values`, so images of different sizes need one padded canvas:
    # `pad_size`; the model crops each image's padding away again.
    padded = EcoMask2FormerImageProcessor(**{**tiny_processor().to_dict(), "pad_size": {"height": 96, "width": 96}})
    batched = pipeline("image-segmentation", model=str(folder), image_processor=padded)
    single = pipeline("image-segmentation", model=str(folder))
    for subtask, kwargs in (("panoptic", {"threshold": 0.0}), ("semantic", {})):
        results = batched(images, batch_size=4, subtask=subtask, **kwargs)
        for image, result in zip(images, results):
            expected = single(image, subtask=subtask, **kwargs)
            assert result, f"{subtask}: no segments"
            assert [r["label"] for r in result] == [r["label"] for r in expected]
            assert [r["score"] for r in result] == pytest.approx([r["score"] for r in expected], abs=1e-5)
            for got, want in zip(result, expected):
                assert got["mask"].size == image.size
                np.testing.assert_array_equal(np.asarray(got["mask"]), np.asarray(want["mask"]))


def test_demo_model_keeps_the_4_room_examples_depth_and_labels_next_to_a_crop():
    from PIL import Image

    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(DEMO / "model").eval()
    processor = EcoMask2FormerImageProcessor.from_pretrained(DEMO / "model")
    four_rooms = Image.open(DEMO / "examples" / "rooms_4_hops_14_validation_103.png").convert("RGB")
    crop = Image.open(DEMO / "examples" / "rooms_2_hops_15_validation_065.png").convert("RGB").crop((0, 0, 80, 128))
    assert (four_rooms.size, crop.size) == ((128, 128), (80, 128))
    with torch.no_grad():
        solo = model(**processor([four_rooms], return_tensors="pt"))
        inputs = processor([four_rooms, crop], return_tensors="pt")
        batch = model(**inputs)
    assert inputs["pixel_values"].shape[-2:] != solo.image_sizes[0].tolist()  # the 4-room image is padded
    assert int(batch.encoder_layers_used[0]) == int(solo.encoder_layers_used[0])
    sizes = [four_rooms.size[::-1], crop.size[::-1]]
    alone_result = processor.post_process_panoptic_segmentation(solo, target_sizes=sizes[:1])[0]
    batch_result = processor.post_process_panoptic_segmentation(batch, target_sizes=sizes)[0]
    assert alone_result["segments_info"], "the 4-room example should have segments"
    agreement = (batch_result["segmentation"] == alone_result["segmentation"]).float().mean().item()
    assert agreement == 1.0
    assert batch_result["segments_info"] == alone_result["segments_info"]
    # Without target sizes, every result has its image's own processed size (not a fixed 384 x 384).
    shapes = [tuple(r["segmentation"].shape) for r in processor.post_process_panoptic_segmentation(batch)]
    assert shapes == [tuple(size) for size in batch.image_sizes.tolist()] and shapes[0] == (128, 128)


def test_a_mixed_size_training_step_supervises_each_image_on_its_own_area():
    from helpers.models import tiny_labels

    model = tiny_eco_model().train()
    images = [torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(2)), torch.randn(3, 64, 64)]
    pixel_values, pixel_mask = pad_images(images)
    mask_labels, class_labels = tiny_labels(2, 64, 96)
    mask_labels[1][:, :, 64:] = 0  # the processor pads mask labels with 0
    out = model(pixel_values=pixel_values, pixel_mask=pixel_mask, mask_labels=mask_labels, class_labels=class_labels,
                num_encoder_layers=2)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert (out.masks_queries_logits[1, :, :, 16:] == -1e4).all()  # outside the 64x64 image: a constant "no segment"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
