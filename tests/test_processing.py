"""EcoMask2FormerImageProcessor: image forms, bad inputs, pixel_mask, depth-aware post-processing, save/load."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.models import tiny_eco_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerImageProcessor

SIZE = {"shortest_edge": 64, "longest_edge": 96}
H, W = 70, 90


@pytest.fixture(scope="module")
def processor():
    return EcoMask2FormerImageProcessor(size=SIZE)


@pytest.fixture(scope="module")
def rgb():
    """A uint8 RGB image `(H, W, 3)`."""
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def pixels(processor, images, **kwargs) -> torch.Tensor:
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"]


def _alpha(rgb):
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=-1)


RGB_FORMS = {
    "pil": lambda a: Image.fromarray(a),
    "numpy_hwc": lambda a: a,
    "numpy_chw": lambda a: a.transpose(2, 0, 1),
    "torch_chw": lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()),
    "torch_hwc": lambda a: torch.from_numpy(a.copy()),
    "numpy_float64_0_1": lambda a: a / 255.0,
    "torch_float32_0_1": lambda a: torch.from_numpy(a.transpose(2, 0, 1) / 255.0).float(),
    "torch_float16_0_1": lambda a: torch.from_numpy(a.transpose(2, 0, 1) / 255.0).half(),
    "numpy_rgba": _alpha,
    "pil_rgba": lambda a: Image.fromarray(_alpha(a), mode="RGBA"),
    "numpy_uint16": lambda a: a.astype(np.uint16) * 257,
    "torch_uint16": lambda a: torch.from_numpy(a.astype(np.int32) * 257).to(torch.uint16),
    "numpy_int64_0_255": lambda a: a.astype(np.int64),
}


@pytest.mark.parametrize("form", sorted(RGB_FORMS))
def test_rgb_forms_give_the_same_pixel_values(processor, rgb, form):
    expected = pixels(processor, rgb)
    assert expected.shape == (1, 3, 64, 96)
    torch.testing.assert_close(pixels(processor, RGB_FORMS[form](rgb)), expected, rtol=0, atol=0)


GRAY_FORMS = {
    "numpy_hw": lambda g: g,
    "numpy_hw1": lambda g: g[..., None],
    "numpy_1hw": lambda g: g[None],
    "torch_hw": lambda g: torch.from_numpy(g.copy()),
    "pil_L": lambda g: Image.fromarray(g, mode="L"),
    "pil_I16": lambda g: Image.fromarray(g.astype(np.uint16) * 257),
    "pil_I32": lambda g: Image.fromarray(g.astype(np.int32) * 257, mode="I"),
    "pil_F_0_1": lambda g: Image.fromarray((g / 255.0).astype(np.float32), mode="F"),
}


@pytest.mark.parametrize("form", sorted(GRAY_FORMS))
def test_grayscale_forms_are_replicated_to_rgb(processor, rgb, form):
    gray = rgb[..., 0]
    expected = pixels(processor, np.repeat(gray[..., None], 3, axis=-1))
    torch.testing.assert_close(pixels(processor, GRAY_FORMS[form](gray)), expected, rtol=0, atol=0)


def test_batches_lists_paths_and_other_pil_modes(processor, rgb, tmp_path):
    single = pixels(processor, rgb)
    for batch in (np.stack([rgb, rgb]), torch.from_numpy(np.stack([rgb, rgb]).transpose(0, 3, 1, 2).copy()),
                  [Image.fromarray(rgb), rgb / 255.0]):
        torch.testing.assert_close(pixels(processor, batch), single.expand(2, -1, -1, -1), rtol=0, atol=0)
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    torch.testing.assert_close(pixels(processor, str(path)), single, rtol=0, atol=0)
    for mode in ("P", "CMYK", "1", "LA"):  # converted through PIL
        assert pixels(processor, Image.fromarray(rgb).convert(mode)).shape == (1, 3, 64, 96)


def test_float_images_without_rescaling_are_used_as_given(rgb):
    kept = EcoMask2FormerImageProcessor(size=SIZE, do_rescale=False)
    torch.testing.assert_close(
        pixels(kept, rgb / 255.0), pixels(EcoMask2FormerImageProcessor(size=SIZE), rgb), rtol=0, atol=1e-5
    )


def test_input_data_format_settles_ambiguous_layouts(processor):
    ambiguous = np.zeros((3, 40, 3), np.uint8)  # (H=3, W=40, C=3) or (C=3, H=40, W=3)
    assert pixels(processor, ambiguous, do_resize=False).shape == (1, 3, 3, 40)
    assert pixels(processor, ambiguous, do_resize=False, input_data_format="channels_first").shape == (1, 3, 40, 3)


BAD_INPUTS = {
    "two_channels_last": (lambda a: a[..., :2], {}, ValueError, r"image 0 has shape \(70, 90, 2\): 2 channels"),
    "two_channels_first": (lambda a: torch.zeros(2, 70, 90), {}, ValueError, r"2 channels"),
    "five_dims": (lambda a: np.zeros((1, 1, 3, 8, 8)), {}, ValueError, r"5 dimensions is not an image"),
    "one_dim": (lambda a: [np.zeros(8)], {}, ValueError, r"1 dimensions is not an image"),
    "empty_list": (lambda a: [], {}, ValueError, r"empty list"),
    "empty_image": (lambda a: np.zeros((0, 8, 3), np.uint8), {}, ValueError, r"the image is empty"),
    "float_above_1": (lambda a: a / 255.0 * 2, {}, ValueError,
                      r"values in \[0, 2\], outside \[0, 1\] \(do_rescale=True\)"),
    "float_0_255": (lambda a: a.astype(np.float32), {"do_rescale": False}, ValueError,
                    r"outside \[0, 1\] \(do_rescale=False\)"),
    "float_negative": (lambda a: a / 255.0 - 0.5, {}, ValueError, r"outside \[0, 1\]"),
    "nan": (lambda a: np.full((8, 8), np.nan), {}, ValueError, r"NaN or infinite"),
    "bool": (lambda a: a > 100, {}, ValueError, r"dtype bool"),
    "int_out_of_range": (lambda a: a.astype(np.int32) + 200, {}, ValueError, r"integer images must be uint8"),
    "second_image_bad": (lambda a: [a, a[..., :2]], {}, ValueError, r"image 1 has shape"),
    "nested_list": (lambda a: [[a]], {}, TypeError, r"image 0 is a nested list"),
    "not_an_image": (lambda a: {"pixels": a}, {}, TypeError, r"image 0 is a dict"),
    "missing_file": (lambda a: "/nonexistent/image.png", {}, FileNotFoundError, r"image.png"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_clear_errors(processor, rgb, case):
    make, kwargs, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        processor(make(rgb), return_tensors="pt", **kwargs)


def test_pixel_mask_marks_padding_and_mask_labels_are_padded_with_zero(processor, rgb):
    wide, tall = rgb, np.ascontiguousarray(rgb[:, :30])  # resized to 64 x 96 and 96 x 64: padded to 96 x 96
    seg_wide, seg_tall = np.full(wide.shape[:2], 1, np.int64), np.full(tall.shape[:2], 2, np.int64)
    batch = processor([wide, tall], segmentation_maps=[seg_wide, seg_tall], return_tensors="pt")
    mask, values = batch["pixel_mask"], batch["pixel_values"]
    assert mask.shape == (2, 96, 96) and mask.dtype == torch.long
    assert mask[0, :64].all() and not mask[0, 64:].any()
    assert mask[1, :, :64].all() and not mask[1, :, 64:].any()
    assert (values[0, :, 64:] == 0).all() and (values[1, :, :, 64:] == 0).all()
    assert [c.tolist() for c in batch["class_labels"]] == [[1], [2]]
    assert torch.equal(batch["mask_labels"][0][0], mask[0].float())  # 1 on the image, 0 (not 255) on padding
    assert torch.equal(batch["mask_labels"][1][0], mask[1].float())


def test_the_model_uses_the_pixel_mask(processor, rgb):
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()
    images = [rgb, np.ascontiguousarray(rgb[:, :30])]
    batch = processor(images, return_tensors="pt")
    with torch.no_grad():
        masked = model(**batch, output_gate_logits=True)
        unmasked = model(pixel_values=batch["pixel_values"], output_gate_logits=True)
        ones = model(pixel_values=batch["pixel_values"], pixel_mask=torch.ones_like(batch["pixel_mask"]))
        alone = [model(**processor([image], return_tensors="pt"), output_gate_logits=True) for image in images]
    assert not torch.allclose(masked.masks_queries_logits, unmasked.masks_queries_logits)
    torch.testing.assert_close(ones.masks_queries_logits, unmasked.masks_queries_logits)
    for i, single in enumerate(alone):  # the padded batch gives each image what it gets alone
        height, width = masked.mask_sizes[i].tolist()
        assert [height, width] == list(single.masks_queries_logits.shape[-2:])
        torch.testing.assert_close(masked.masks_queries_logits[i, :, :height, :width], single.masks_queries_logits[0])
        torch.testing.assert_close(masked.gate_logits[i], single.gate_logits[0])
        assert masked.image_sizes[i].tolist() == list(single.image_sizes[0].tolist())


@pytest.fixture(scope="module")
def outputs_at_depths(processor, rgb):
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()
    batch = processor([rgb, rgb], return_tensors="pt")
    with torch.no_grad():
        return model(**batch, num_encoder_layers=torch.tensor([2, 4]))


def test_post_processing_reports_the_encoder_depth(processor, outputs_at_depths):
    sizes = [(H, W), (H, W)]
    for results in (
        processor.post_process_panoptic_segmentation(outputs_at_depths, threshold=0.0, target_sizes=sizes),
        processor.post_process_instance_segmentation(outputs_at_depths, threshold=0.0, target_sizes=sizes),
    ):
        assert [r["encoder_layers_used"] for r in results] == [2, 4]
        assert all(r["segmentation"].shape == (H, W) for r in results)
    plain = processor.post_process_semantic_segmentation(outputs_at_depths, target_sizes=sizes)
    assert all(isinstance(r, torch.Tensor) and r.shape == (H, W) for r in plain)  # stock behaviour by default
    dicts = processor.post_process_semantic_segmentation(
        outputs_at_depths, target_sizes=sizes, return_encoder_layers=True
    )
    assert [d["encoder_layers_used"] for d in dicts] == [2, 4]
    assert all(torch.equal(d["segmentation"], p) for d, p in zip(dicts, plain))
    scored = processor.post_process_semantic_segmentation(
        outputs_at_depths, return_encoder_layers=True, return_segmentation_scores=True
    )
    assert set(scored[0]) == {"segmentation", "segmentation_scores", "encoder_layers_used"}


def test_post_processing_of_outputs_without_depth_gives_none(processor, outputs_at_depths):
    stock_like = SimpleNamespace(
        class_queries_logits=outputs_at_depths.class_queries_logits,
        masks_queries_logits=outputs_at_depths.masks_queries_logits,
    )
    assert [r["encoder_layers_used"] for r in processor.post_process_instance_segmentation(stock_like)] == [None] * 2
    semantic = processor.post_process_semantic_segmentation(stock_like, return_encoder_layers=True)
    assert [r["encoder_layers_used"] for r in semantic] == [None] * 2


def test_pixel_mask_crops_padding_before_resizing(processor):
    # One image whose real area is the top half; query 0 (class 0) covers it, query 1 (class 1) the padding.
    masks = torch.full((1, 2, 8, 8), -10.0)
    masks[0, 0, :4], masks[0, 1, 4:] = 10.0, 10.0
    classes = torch.tensor([[[10.0, -10.0, -10.0], [-10.0, 10.0, -10.0]]])
    outputs = SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)
    pixel_mask = torch.zeros(1, 32, 32, dtype=torch.long)
    pixel_mask[:, :16] = 1
    uncropped = processor.post_process_semantic_segmentation(outputs, target_sizes=[(16, 32)])[0]
    cropped = processor.post_process_semantic_segmentation(outputs, target_sizes=[(16, 32)], pixel_mask=pixel_mask)[0]
    assert set(uncropped.unique().tolist()) == {0, 1}  # the padding leaks into the image without the crop
    assert cropped.unique().tolist() == [0]
    with pytest.raises(ValueError, match=r"pixel_mask must have shape \(batch_size=1, height, width\)"):
        processor.post_process_semantic_segmentation(outputs, pixel_mask=pixel_mask[0])
    with pytest.raises(ValueError, match="all zeros"):
        processor.post_process_panoptic_segmentation(outputs, pixel_mask=torch.zeros_like(pixel_mask))


def test_save_and_load(tmp_path, processor, rgb):
    from transformers import AutoImageProcessor

    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "EcoMask2FormerImageProcessor" and saved["size"] == SIZE
    loaded = EcoMask2FormerImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    for backend in ("pil", "torchvision"):
        auto = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)
        assert type(auto) is EcoMask2FormerImageProcessor
        torch.testing.assert_close(pixels(auto, rgb), pixels(processor, rgb), rtol=0, atol=0)
