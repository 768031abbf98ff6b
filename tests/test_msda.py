"""The embedding-bag deformable attention core equals transformers' grid_sample reference (values and gradients:
the hand-written backward of `ecom2f_msda_autograd`)."""

from __future__ import annotations

import pytest
import torch
from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention

from helpers.models import tiny_eco_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_msda import (
    EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM,
    multi_scale_deformable_attention_embedding_bag,
    resolve_msda_implementation,
)

SHAPES = {
    1: [(5, 7)],
    2: [(5, 7), (9, 13)],
    3: [(3, 5), (7, 9), (13, 17)],
}


def _inputs(batch: int, shapes, *, heads: int = 4, head_dim: int = 8, points: int = 3, seed: int = 0,
            spread: float = 1.4):
    generator = torch.Generator().manual_seed(seed)
    tokens = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(batch, tokens, heads, head_dim, generator=generator)
    # Locations reach beyond [0, 1] so that zero padding at every border is exercised.
    locations = torch.rand(batch, 11, heads, levels, points, 2, generator=generator) * spread - (spread - 1) / 2
    weights = torch.randn(batch, 11, heads, levels * points, generator=generator).softmax(-1)
    return value, locations, weights.view(batch, 11, heads, levels, points)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_values_equal_reference(levels, batch):
    value, locations, weights = _inputs(batch, SHAPES[levels])
    expected = multi_scale_deformable_attention(value, SHAPES[levels], locations, weights)
    got = multi_scale_deformable_attention_embedding_bag(value, SHAPES[levels], locations, weights)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_points_far_outside_every_level_read_zero():
    """Points many pixels outside a level (clamped onto the zero border by the fast core) contribute nothing."""
    shapes = SHAPES[3]
    value, locations, weights = _inputs(2, shapes, spread=6.0, seed=7)
    expected = multi_scale_deformable_attention(value, shapes, locations, weights)
    got = multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    outside = torch.full_like(locations, 3.0)
    assert multi_scale_deformable_attention_embedding_bag(value, shapes, outside, weights).abs().max() == 0


def test_half_precision_locations_address_the_right_rows():
    """bf16 sampling locations (autocast) on a level with more rows than bf16 integers hold: same rows as float32."""
    shapes = [(40, 50)]
    value, locations, weights = _inputs(1, shapes, seed=3)
    rounded = locations.to(torch.bfloat16)
    expected = multi_scale_deformable_attention_embedding_bag(value, shapes, rounded.float(), weights)
    got = multi_scale_deformable_attention_embedding_bag(value, shapes, rounded, weights)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def _gradients(core, inputs, shapes, *, requires=(True, True, True)):
    value, locations, weights = (t.clone().requires_grad_(r) for t, r in zip(inputs, requires))
    output = core(value, shapes, locations, weights)
    (output * torch.linspace(-1, 1, output.shape[-1])).sum().backward()
    return [t.grad for t in (value, locations, weights)]


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("spread", [1.4, 6.0])  # 6.0: most points far outside every level
def test_gradients_equal_reference(levels, batch, spread):
    """The hand-written backward gives the reference core's gradients (value, locations, weights)."""
    inputs = _inputs(batch, SHAPES[levels], seed=4, spread=spread)
    expected = _gradients(multi_scale_deformable_attention, inputs, SHAPES[levels])
    got = _gradients(multi_scale_deformable_attention_embedding_bag, inputs, SHAPES[levels])
    for name, e, g in zip(("value", "locations", "weights"), expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item(), msg=name)


@pytest.mark.parametrize("requires", [(True, False, False), (False, True, False), (False, False, True)])
def test_gradient_of_one_input_alone(requires):
    shapes = SHAPES[2]
    inputs = _inputs(2, shapes, seed=5)
    expected = _gradients(multi_scale_deformable_attention, inputs, shapes, requires=requires)
    got = _gradients(multi_scale_deformable_attention_embedding_bag, inputs, shapes, requires=requires)
    for r, e, g in zip(requires, expected, got):
        assert (g is None) == (not r)
        if r:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


def test_no_query_at_all():
    """An empty batch (an early-exit loop can hand a layer no image): empty output and gradients, no error."""
    shapes = SHAPES[2]
    value, locations, weights = (t[:0].requires_grad_(True) for t in _inputs(1, shapes))
    output = multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights)
    assert output.shape == (0, 11, 32)
    output.sum().backward()
    assert value.grad.shape == value.shape and locations.grad.shape == locations.shape
    with torch.no_grad():
        assert multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights).shape == (0, 11, 32)


@pytest.mark.parametrize("spread", [1.4, 3.0])
def test_gradcheck_float64(spread):
    """Finite differences in float64 on tiny shapes, with points inside, on the border band and far outside."""
    shapes = [(3, 4), (2, 3)]
    inputs = _inputs(2, shapes, heads=2, head_dim=3, points=2, seed=6, spread=spread)
    value, locations, weights = (t.double().requires_grad_(True) for t in inputs)
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attention_embedding_bag(v, shapes, loc, w),
        (value, locations, weights), eps=1e-6, atol=1e-6,
    )


def test_gradients_under_autocast_keep_input_dtypes():
    """bf16 inputs (autocast): gradients come back in the inputs' dtypes, close to the float32 reference's at the
    same (bf16-rounded) inputs."""
    shapes = SHAPES[3]
    half = [t.to(torch.bfloat16) for t in _inputs(2, shapes, seed=8)]
    expected = _gradients(multi_scale_deformable_attention, [t.float() for t in half], shapes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _gradients(multi_scale_deformable_attention_embedding_bag, half, shapes)
    for e, g in zip(expected, got):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.float(), e, rtol=2e-2, atol=2e-2 * e.abs().max().item())


def test_training_step_gradients_agree_across_cores(pixel_values):
    """The whole tiny model, loss on every output: each parameter's gradient is the same with either core."""
    grads = {}
    for core in ("reference", "embedding_bag"):
        torch.manual_seed(0)
        model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(deformable_attention_implementation=core))
        out = model.train()(pixel_values=pixel_values, num_encoder_layers=model.config.encoder_layers)
        (out.masks_queries_logits.square().mean() + out.class_queries_logits.square().mean()).backward()
        grads[core] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads["reference"].keys() == grads["embedding_bag"].keys()
    encoder = [n for n in grads["reference"] if ".encoder." in n and "sampling_offsets" in n]
    assert encoder and all(grads["reference"][n].abs().max() > 0 for n in encoder)  # the core's gradients flow
    for name, expected in grads["reference"].items():
        torch.testing.assert_close(grads["embedding_bag"][name], expected, rtol=1e-4,
                                   atol=1e-5 + 1e-4 * expected.abs().max().item(), msg=name)


def test_model_outputs_agree_across_cores(pixel_values):
    outputs = {}
    for core in ("reference", "embedding_bag"):
        torch.manual_seed(0)
        model = EcoMask2FormerForUniversalSegmentation(
            tiny_eco_config(deformable_attention_implementation=core, token_scaling_layers=[1, 1, 2], exit_layers=[1, 2, 3, 4])
        ).eval()
        with torch.no_grad():
            outputs[core] = model(pixel_values=pixel_values, num_encoder_layers=torch.tensor([1, 4]), output_hidden_states=True)
    for a, b in zip(outputs["reference"].pixel_decoder_hidden_states, outputs["embedding_bag"].pixel_decoder_hidden_states):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_auto_resolution():
    cpu = torch.device("cpu")
    assert resolve_msda_implementation("auto", cpu) == "embedding_bag"
    assert resolve_msda_implementation("auto", torch.device("cuda")) == "reference"
    assert resolve_msda_implementation("reference", cpu) == "reference"
    # Training on CPU: the embedding-bag core from EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM channels per head (measured).
    narrow, wide = EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM // 2, EMBEDDING_BAG_TRAINING_MIN_HEAD_DIM
    assert resolve_msda_implementation("auto", cpu, head_dim=narrow, needs_grad=True) == "reference"
    assert resolve_msda_implementation("auto", cpu, head_dim=wide, needs_grad=True) == "embedding_bag"
    assert resolve_msda_implementation("auto", cpu, head_dim=narrow, needs_grad=False) == "embedding_bag"
    assert resolve_msda_implementation("embedding_bag", cpu, head_dim=narrow, needs_grad=True) == "embedding_bag"


def test_auto_core_follows_the_pass(monkeypatch):
    """The module asks for the core with its head width and whether a backward will follow."""
    import modeling_ecom2f.ecom2f_msda as msda

    seen = []
    original = msda.resolve_msda_implementation
    monkeypatch.setattr(msda, "resolve_msda_implementation",
                        lambda *a, **k: seen.append((k["head_dim"], k["needs_grad"])) or original(*a, **k))
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config())
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.eval()(pixel_values=pixel_values)
    assert seen and not any(grad for _, grad in seen)
    seen.clear()
    model.train()(pixel_values=pixel_values).class_queries_logits.sum().backward()
    head_dim = model.config.feature_size // model.config.num_attention_heads
    assert seen and all(grad and dim == head_dim for dim, grad in seen)


# Non-finite input: the fast core must agree with the reference per (query, head) and never index out of
# range. `_corrupt` writes a fault into a few (image 0) queries only.
FAULTS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 1e30, "-huge": -1e30}


def _corrupt(locations, weights, fault: float, target: str):
    locations, weights = locations.clone(), weights.clone()
    if target == "locations":
        locations[0, 2, 1, 0, 0, 0] = fault  # x of one point
        locations[0, 5, :, -1, 1, 1] = fault  # y of one point on the last level, every head
    else:
        weights[0, 2, 1, 0, 0] = fault
        weights[0, 5, :, -1, 1] = fault
    return locations, weights


def _assert_same_per_query_head(got, expected, heads: int, *, rtol: float = 1e-5, atol: float = 1e-5):
    """Same finiteness per (image, query, head) as the reference, and equal values where finite."""
    got, expected = got.float().unflatten(-1, (heads, -1)), expected.float().unflatten(-1, (heads, -1))
    expected_finite = torch.isfinite(expected).all(-1)
    assert torch.equal(torch.isfinite(got).all(-1), expected_finite)
    assert not torch.isfinite(got[~expected_finite]).any(), "a non-finite head must be non-finite on every channel"
    torch.testing.assert_close(got[expected_finite], expected[expected_finite], rtol=rtol, atol=atol)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target", ["locations", "weights"])
def test_non_finite_inputs_match_reference(levels, fault, target):
    shapes = SHAPES[levels]
    value, locations, weights = _inputs(2, shapes, seed=11)
    locations, weights = _corrupt(locations, weights, FAULTS[fault], target)
    expected = multi_scale_deformable_attention(value, shapes, locations, weights)
    got = multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights)
    _assert_same_per_query_head(got, expected, heads=4)
    if fault in ("nan", "inf", "-inf"):
        assert not torch.isfinite(got[0, 2]).all()  # the fault shows where it was put ...
    assert torch.isfinite(got[1]).all()  # ... and image 1 is untouched


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fault", ["nan", "inf", "huge"])
def test_non_finite_locations_under_autocast(dtype, fault):
    """Half-precision locations/weights (as autocast produces them) with faults: same finiteness as the reference."""
    shapes = SHAPES[3]
    value, locations, weights = _inputs(2, shapes, seed=12)
    locations, weights = _corrupt(locations, weights, FAULTS[fault], "locations")
    locations, weights, value = locations.to(dtype), weights.to(dtype), value.to(dtype)
    expected = multi_scale_deformable_attention(value.float(), shapes, locations.float(), weights.float())
    with torch.autocast("cpu", dtype=dtype):
        got = multi_scale_deformable_attention_embedding_bag(value, shapes, locations, weights)
    _assert_same_per_query_head(got, expected, heads=4, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target", ["locations", "weights"])
def test_non_finite_input_gradients_match_reference(levels, fault, target):
    """Faults in image 0: every gradient (value, locations, weights) is non-finite exactly where the reference's is,
    equal to it elsewhere, and image 1's gradients are all finite."""
    shapes = SHAPES[levels]
    value, locations, weights = _inputs(2, shapes, seed=13)
    locations, weights = _corrupt(locations, weights, FAULTS[fault], target)
    expected = _gradients(multi_scale_deformable_attention, (value, locations, weights), shapes)
    got = _gradients(multi_scale_deformable_attention_embedding_bag, (value, locations, weights), shapes)
    for name, e, g in zip(("value", "locations", "weights"), expected, got):
        finite = torch.isfinite(e)
        assert torch.equal(torch.isfinite(g), finite), name
        assert finite[1].all(), name
        torch.testing.assert_close(g[finite], e[finite], rtol=1e-4, atol=1e-4 * e[finite].abs().max().item(), msg=name)


def test_nan_image_does_not_change_the_other_image_of_the_batch():
    """A batch [NaN image, good image] through the tiny model with the fast core: the good image's outputs equal
    its outputs alone (the fast core used to raise `Expected i < index_size` for the whole batch)."""
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(deformable_attention_implementation="embedding_bag"))
    good = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    batch = torch.cat([torch.full_like(good, float("nan")), good])
    with torch.no_grad():
        alone, together = model.eval()(pixel_values=good), model(pixel_values=batch)
    for name in ("class_queries_logits", "masks_queries_logits"):
        assert not torch.isfinite(getattr(together, name)[0]).all()
        torch.testing.assert_close(getattr(together, name)[1:], getattr(alone, name), rtol=1e-4, atol=1e-5)
