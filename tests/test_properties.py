"""Property-based tests (hypothesis): the image processor, the metrics and the depth resolution either give a
valid result or a clear error for any input drawn, never a crash from deep inside. Tiny inputs, few examples."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from configuration.configuration_ecom2f import EcoMask2FormerConfig  # noqa: E402
from modeling_ecom2f.data import SegmentationDataError  # noqa: E402
from modeling_ecom2f.ecom2f_depth import resolve_encoder_depths  # noqa: E402
from modeling_ecom2f.metrics import mean_iou, panoptic_quality, per_image_panoptic_quality  # noqa: E402
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor  # noqa: E402

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------------ processor

PROCESSOR = EcoMask2FormerImageProcessor(size={"shortest_edge": 32, "longest_edge": 64}, size_divisor=32)
NUMPY_DTYPES = ["uint8", "uint16", "int32", "int64", "float16", "float32", "float64", "bool"]
PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "I;16", "I", "F"]


@st.composite
def array_images(draw):
    """A NumPy array or torch tensor of a random dtype, layout, channel count, size (aspect ratios up to 60:1)
    and value range (including NaN and out-of-range values)."""
    height, width = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    if draw(st.booleans()):
        height = draw(st.integers(1, 2))  # extreme aspect ratio
    channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (height, width) if channels is None else (
        (channels, height, width) if draw(st.booleans()) else (height, width, channels))
    dtype = draw(st.sampled_from(NUMPY_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([1.0, 255.0, 65535.0, -1.0]))
    array = (rng.random(shape) * scale).astype(dtype)
    if np.issubdtype(array.dtype, np.floating) and draw(st.booleans()):
        array.flat[0] = draw(st.sampled_from([np.nan, np.inf, 0.5]))
    if draw(st.booleans()) and dtype not in ("uint16",):
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point() and draw(st.booleans()):
            tensor = tensor.to(draw(st.sampled_from([torch.bfloat16, torch.float16])))
        return tensor
    return array


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(PIL_MODES))
    size = (draw(st.integers(1, 60)), draw(st.integers(1, 3)))  # PIL size is (width, height)
    if draw(st.booleans()):
        size = size[::-1]
    return PIL.Image.new(mode, size, color=draw(st.integers(0, 255)) if mode not in ("F",) else 0.5)


def _check_processed(out) -> None:
    pixel_values, pixel_mask = out["pixel_values"], out["pixel_mask"]
    assert pixel_values.dtype == torch.float32 and pixel_values.shape[:2] == (1, 3)
    assert pixel_mask.shape == (1, *pixel_values.shape[-2:])
    assert set(pixel_mask.unique().tolist()) <= {0, 1} and pixel_mask.sum() > 0
    assert all(side > 0 and side % 32 == 0 for side in pixel_values.shape[-2:])
    assert torch.isfinite(pixel_values).all()


@FAST
@given(image=st.one_of(array_images(), pil_images()), do_rescale=st.booleans())
def test_processor_gives_a_valid_pair_or_a_clear_error(image, do_rescale):
    try:
        out = PROCESSOR(image, do_rescale=do_rescale, return_tensors="pt")
    except (ValueError, TypeError) as error:
        assert "image 0" in str(error), f"an error that does not name the image: {error!r}"
        return
    _check_processed(out)


@FAST
@given(height=st.integers(1, 4), width=st.integers(200, 5000))
def test_extreme_aspect_ratios_keep_every_side(height, width):
    """Long thin images (e.g. 2 x 5000) resize to a valid pair; neither side reaches 0."""
    for shape in ((height, width, 3), (width, height, 3)):
        _check_processed(PROCESSOR(np.zeros(shape, np.uint8), return_tensors="pt"))


# -------------------------------------------------------------------------------------------------------- metrics

THINGS, STUFF = (0, 1, 2), (3, 4)


@st.composite
def panoptic_pair(draw):
    """A reference and a prediction drawn as small random segment-id maps with random categories."""
    size = draw(st.integers(2, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    maps = []
    for key in ("category_id", "label_id"):
        seg = rng.integers(0, draw(st.integers(1, 5)) + 1, size=(size, size))  # 0 = void
        info = [{"id": int(i), key: int(rng.choice(THINGS + STUFF)), "iscrowd": 0}
                for i in np.unique(seg) if i != 0]
        maps.append({"segmentation": torch.from_numpy(seg), "segments_info": info})
    return maps[0], maps[1], rng


def _relabel(entry: dict, rng) -> dict:
    """The same segmentation with its segment ids permuted (to new random positive ids)."""
    seg = entry["segmentation"].numpy()
    ids = [s["id"] for s in entry["segments_info"]]
    new_ids = rng.permutation(np.arange(100, 100 + len(ids))).tolist()
    mapping = dict(zip(ids, new_ids))
    out = np.zeros_like(seg)
    for old, new in mapping.items():
        out[seg == old] = new
    info = [{**s, "id": mapping[s["id"]]} for s in entry["segments_info"]]
    return {"segmentation": torch.from_numpy(out), "segments_info": info}


def _in_unit_interval_or_nan(value: float) -> bool:
    return bool(np.isnan(value) or 0.0 <= value <= 1.0)


@FAST
@given(pair=panoptic_pair())
def test_pq_in_unit_interval_and_invariant_to_segment_ids(pair):
    reference, prediction, rng = pair
    kw = dict(thing_ids=THINGS, stuff_ids=STUFF)
    result = panoptic_quality([prediction], [reference], **kw)
    for name in ("pq", "sq", "rq", "pq_things", "pq_stuff"):
        assert _in_unit_interval_or_nan(getattr(result, name)), name
    per_image = per_image_panoptic_quality([prediction], [reference], **kw)
    assert 0.0 <= per_image.pq[0] <= 1.0
    permuted = panoptic_quality([_relabel(prediction, rng)], [_relabel(reference, rng)], **kw)
    np.testing.assert_equal([result.pq, result.sq, result.rq], [permuted.pq, permuted.sq, permuted.rq])


@FAST
@given(size=st.integers(1, 8), num_labels=st.integers(1, 5), seed=st.integers(0, 2**31),
       reduction=st.sampled_from(["dataset", "image"]))
def test_miou_in_unit_interval_and_one_on_a_perfect_prediction(size, num_labels, seed, reduction):
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, num_labels, size=(size, size))
    reference[rng.random((size, size)) < 0.2] = 255  # void
    prediction = rng.integers(0, num_labels, size=(size, size))
    result = mean_iou([prediction], [reference], num_labels=num_labels, reduction=reduction)
    assert _in_unit_interval_or_nan(result.mean_iou)
    assert all(_in_unit_interval_or_nan(v) for v in result.per_class_iou)
    perfect = mean_iou([np.where(reference == 255, 0, reference)], [reference], num_labels=num_labels)
    assert np.isnan(perfect.mean_iou) or perfect.mean_iou == 1.0
    # the class ids are names: permuting them in both maps permutes the per-class IoU and keeps the mean
    order = rng.permutation(num_labels)
    lookup = np.append(order, 0)  # index 255 -> any, re-voided below
    permuted_ref = np.where(reference == 255, 255, lookup[np.minimum(reference, num_labels)])
    permuted = mean_iou([order[prediction]], [permuted_ref], num_labels=num_labels, reduction=reduction)
    np.testing.assert_allclose(permuted.mean_iou, result.mean_iou, equal_nan=True)


@FAST
@given(pair=panoptic_pair())
def test_pq_rejects_bad_maps_with_a_data_error(pair):
    """A prediction whose map holds a segment id missing from its segments_info: an error naming the image."""
    reference, prediction, _ = pair
    bad = prediction["segmentation"].clone()
    bad[0, 0] = 99
    with pytest.raises(SegmentationDataError, match="image 'img-7'.*segment ids \\[99\\] absent"):
        panoptic_quality([{**prediction, "segmentation": bad}], [reference], thing_ids=THINGS, stuff_ids=STUFF,
                         image_ids=["img-7"])


# --------------------------------------------------------------------------------------------------------- depths

CONFIG = EcoMask2FormerConfig(encoder_layers=4, exit_layers=[2, 3, 4])


@st.composite
def depth_requests(draw):
    kind = draw(st.sampled_from(["int", "bool", "float", "tensor", "none", "str"]))
    if kind == "int":
        return draw(st.integers(-3, 8))
    if kind == "bool":
        return draw(st.booleans())
    if kind == "float":
        return draw(st.floats(allow_nan=True))
    if kind == "none":
        return None
    if kind == "str":
        return "3"
    dtype = draw(st.sampled_from([torch.long, torch.int32, torch.uint8, torch.float32, torch.bool]))
    shape = draw(st.sampled_from([(), (1,), (2,), (3,), (2, 1)]))
    values = draw(st.lists(st.integers(0, 6), min_size=1, max_size=6))
    count = int(np.prod(shape)) if shape else 1
    return torch.tensor((values * count)[:count], dtype=dtype).reshape(shape)


@FAST
@given(request=depth_requests(), batch_size=st.integers(1, 3))
def test_depth_resolution_gives_valid_depths_or_a_value_error(request, batch_size):
    try:
        depths = resolve_encoder_depths(CONFIG, request, batch_size=batch_size)
    except ValueError as error:
        assert "num_encoder_layers" in str(error)
        return
    if isinstance(depths, int):
        assert depths in CONFIG.exit_layers
    else:
        assert depths.dtype == torch.long and depths.shape == (batch_size,)
        assert set(depths.tolist()) <= set(CONFIG.exit_layers)
