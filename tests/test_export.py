"""Export: torch.export and ONNX of a fixed-depth model, and the gated ONNX folder with its reference runtime.

One tiny PRO-SCALE model (token stages [1, 1, 2], TRC, LPE) is exported once per module; the heavy fixtures are
module-scoped so the file stays well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from helpers.models import tiny_eco_config
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_export import (
    EncoderSegment,
    GatedStem,
    GatedTail,
    _encoder_tokens,
    choose_depths,
    export_fixed_depth_program,
    export_gated_onnx,
    export_mode,
    load_manifest,
    program_to_onnx,
    run_exported,
)
from modeling_ecom2f.ecom2f_msda import EcoMultiscaleDeformableAttention

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime", "onnxscript")),
    reason="needs the export extra: onnx, onnxruntime, onnxscript",
)

IMAGE_SIZE = (64, 96)  # not square, so a swapped height/width would show
ATOL = 1e-4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = tiny_eco_config(
        token_scaling_layers=[1, 1, 2], token_recalibration=True, light_pixel_embedding=True, exit_layers=[2, 4],
        gate_trained=True, feature_size=64, decoder_layers=2,
        # With the default init_std=0.02 the outputs barely depend on the input (TRC moves the logits by 2e-5, under
        # the tolerance) and mask logits sit within ~1e-4 of the decoder's `sigmoid < 0.5` threshold, where float
        # noise flips attention masks. At 0.1 TRC moves them by ~6e-2 and 300 images gave no flip (max diff 7e-7).
        init_std=0.1,
    )
    model = EcoMask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        model.model.pixel_level_module.decoder.gate.classifier.weight.normal_(0.0, 3.0)  # spread the gate's choices
    return model


def images(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.fixture(scope="module")
def fixed_program(model):
    # A static batch exports 2-3x faster; the dynamic batch axis is covered by the gated graphs, which the runtime
    # feeds with batches of 6, 2 and every subset the gate makes.
    return export_fixed_depth_program(model, depth=2, image_size=IMAGE_SIZE, dynamic_batch=False)


@pytest.fixture(scope="module")
def gated_folder(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gated")
    export_gated_onnx(model, folder=folder, image_size=IMAGE_SIZE)
    return folder


def test_torch_export_fixed_depth_matches_eager(model, fixed_program):
    pixel_values = images(2, 1)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values, num_encoder_layers=2)
        class_logits, mask_logits = fixed_program.module()(pixel_values)
    assert class_logits.shape == expected.class_queries_logits.shape
    torch.testing.assert_close(class_logits, expected.class_queries_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(mask_logits, expected.masks_queries_logits, atol=1e-5, rtol=0)


@needs_onnx
def test_onnx_fixed_depth_round_trip(model, fixed_program, tmp_path):
    import onnxruntime as ort

    path = program_to_onnx(fixed_program, path=tmp_path / "depth2.onnx", input_names=["pixel_values"],
                           output_names=["class_queries_logits", "masks_queries_logits"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "pixel_values"
    assert graph_input.shape == [2, 3, *IMAGE_SIZE]
    pixel_values = images(2, 3)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values, num_encoder_layers=2)  # the user's core ("auto")
    class_logits, mask_logits = session.run(None, {"pixel_values": pixel_values.numpy()})
    assert max_diff(class_logits, expected.class_queries_logits) < ATOL
    assert max_diff(mask_logits, expected.masks_queries_logits) < ATOL


@needs_onnx
def test_gated_runtime_matches_gated_model(model, gated_folder):
    pixel_values = images(6, 5)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)  # trained gate: it picks each image's depth
    assert len(set(expected.encoder_layers_used.tolist())) >= 2, "the test needs images that exit at different depths"
    outputs = run_exported(gated_folder, pixel_values)
    np.testing.assert_array_equal(outputs["encoder_layers_used"], expected.encoder_layers_used.numpy())
    assert max_diff(outputs["gate_logits"], expected.gate_logits) < ATOL
    assert max_diff(outputs["class_queries_logits"], expected.class_queries_logits) < ATOL
    assert max_diff(outputs["masks_queries_logits"], expected.masks_queries_logits) < ATOL


@needs_onnx
def test_gated_runtime_gives_each_image_of_a_batch_what_it_gets_alone(gated_folder):
    # The graphs have a static image size, so a batch holds images of that size; each image's gate, depth and logits
    # must not depend on the images beside it.
    pixel_values = images(4, 7)
    batch, sessions = run_exported(gated_folder, pixel_values), {}
    assert len(set(batch["encoder_layers_used"].tolist())) >= 2, "the test needs images that exit at different depths"
    for i in range(len(pixel_values)):
        alone = run_exported(gated_folder, pixel_values[i : i + 1], sessions=sessions)
        assert alone["encoder_layers_used"][0] == batch["encoder_layers_used"][i]
        for name in ("gate_logits", "class_queries_logits", "masks_queries_logits"):
            assert max_diff(batch[name][i], alone[name][0]) < ATOL, name


def test_gated_modules_are_the_models_stages_at_every_exit(model):
    # The modules the gated export traces (stem -> segments -> tail), run eagerly, give the one-pass model's outputs
    # at every exit: they call the pixel decoder's own stages, so nothing can drift.
    pixel_values = images(2, 7)
    exits = list(model.config.exit_layers)
    with torch.no_grad(), export_mode(model):
        expected = dict(model.forward_exits(pixel_values, exits=exits, output_gate_logits=True))
        gate_logits, tokens, *fpn_features = GatedStem(model)(pixel_values)
        geometry = _encoder_tokens(model, pixel_values)[2]
        tail = GatedTail(model, tokens=geometry)
        for first, last in zip([0, *exits[:-1]], exits):
            tokens = EncoderSegment(model, first=first, last=last, tokens=geometry)(tokens)
            class_logits, mask_logits = tail(tokens, fpn_features)
            torch.testing.assert_close(class_logits, expected[last].class_queries_logits, atol=1e-6, rtol=0)
            torch.testing.assert_close(mask_logits, expected[last].masks_queries_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(gate_logits, expected[exits[-1]].gate_logits, atol=1e-6, rtol=0)


@needs_onnx
def test_gated_onnx_matches_eager_model_at_every_exit(model, gated_folder):
    pixel_values = images(3, 8)
    with torch.no_grad():
        expected = dict(model.forward_exits(pixel_values))  # the user's core ("auto"), all exits
    assert sorted(expected) == load_manifest(gated_folder)["exported_exits"]
    for depth, output in expected.items():
        outputs = run_exported(gated_folder, pixel_values, depth=depth)
        assert outputs["encoder_layers_used"].tolist() == [depth] * 3
        assert max_diff(outputs["class_queries_logits"], output.class_queries_logits) < ATOL, depth
        assert max_diff(outputs["masks_queries_logits"], output.masks_queries_logits) < ATOL, depth


@needs_onnx
def test_manifest_describes_the_folder(gated_folder):
    manifest = load_manifest(gated_folder)
    assert manifest["exit_layers"] == [2, 4] and manifest["exported_exits"] == [2, 4]
    assert [s["layers"] for s in manifest["segments"]] == [[0, 2], [2, 4]]
    assert manifest["image_size"] == list(IMAGE_SIZE) and manifest["dtype"] == "float32"
    assert manifest["tail"]["outputs"] == ["class_queries_logits", "masks_queries_logits"]
    for graph in (manifest["stem"], *manifest["segments"], manifest["tail"]):
        assert (gated_folder / graph["file"]).stat().st_size > 0


@needs_onnx
def test_errors_name_the_problem(model, gated_folder, tmp_path):
    with pytest.raises(ValueError, match="exit_layers"):
        export_fixed_depth_program(model, depth=3, image_size=IMAGE_SIZE)  # 3 is not an allowed exit
    with pytest.raises(ValueError, match="exit_layers"):
        export_gated_onnx(model, folder=tmp_path, image_size=IMAGE_SIZE, exits=[3, 5])
    with pytest.raises(ValueError, match="manifest.json"):
        run_exported(tmp_path, images(1, 0))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="format"):
        load_manifest(tmp_path)
    with pytest.raises(ValueError, match="64, 96"):
        run_exported(gated_folder, torch.randn(1, 3, 96, 64))
    with pytest.raises(ValueError, match="not exported"):
        run_exported(gated_folder, images(1, 0), depth=3)


def test_choose_depths_rounds_up_to_an_exported_exit():
    logits = np.eye(4, dtype=np.float32)  # image i picks exit_layers[i]
    assert choose_depths(logits, exit_layers=[1, 2, 3, 4], exported=[1, 2, 3, 4]).tolist() == [1, 2, 3, 4]
    assert choose_depths(logits, exit_layers=[1, 2, 3, 4], exported=[2, 3]).tolist() == [2, 2, 3, 3]


def test_export_mode_restores_the_model():
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).train()
    cores = [m for m in model.modules() if isinstance(m, EcoMultiscaleDeformableAttention)]
    backbone_config = model.model.pixel_level_module.encoder.config
    assert backbone_config._attn_implementation == "sdpa" and cores[0].implementation == "auto"
    with pytest.raises(RuntimeError, match="inside"), export_mode(model):
        assert not model.training and backbone_config._attn_implementation == "eager"
        assert {m.implementation for m in cores} == {"reference"}
        raise RuntimeError("inside")
    assert model.training and backbone_config._attn_implementation == "sdpa"
    assert {m.implementation for m in cores} == {"auto"}
