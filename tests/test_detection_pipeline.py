"""After `import modeling_ecom2f`: Auto classes and pipeline("object-detection") use EcoDeformableDetr; the Hub folder
loads with trust_remote_code in a fresh process that cannot import this project."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, pipeline

import modeling_ecom2f
from helpers.data import gradient_image
from helpers.detection import tiny_eco_detector
from helpers.hub_fixtures import write_test_images
from helpers.fake_hub import REPO_ROOT, client_env, run_python
from hub.eco_deformable_detr_folder import write_detection_hub_folder
from hub.folder import NotAnEcoModelError, UntrainedGateWarning

PROCESSOR_KWARGS = {"size": {"shortest_edge": 64, "longest_edge": 96}}


def _gate_model():
    """Tiny detector whose trained gate always picks exit 3 (of [2, 3, 4])."""
    model = tiny_eco_detector()
    with torch.no_grad():
        model.model.gate.classifier.weight.zero_()
        model.model.gate.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    model.config.gate_trained = True
    return model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eco_detr")
    _gate_model().save_pretrained(folder)
    modeling_ecom2f.EcoDeformableDetrImageProcessor(**PROCESSOR_KWARGS).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image():
    return gradient_image(72, 100)


def test_auto_classes_resolve_to_ours(model_folder):
    assert type(AutoConfig.from_pretrained(model_folder)) is modeling_ecom2f.EcoDeformableDetrConfig
    model = AutoModelForObjectDetection.from_pretrained(model_folder)
    assert type(model) is modeling_ecom2f.EcoDeformableDetrForObjectDetection
    processor = AutoImageProcessor.from_pretrained(model_folder)
    assert type(processor) is modeling_ecom2f.EcoDeformableDetrImageProcessor
    assert type(AutoConfig.for_model("eco_deformable_detr")) is modeling_ecom2f.EcoDeformableDetrConfig


def test_pipeline_matches_post_processing(model_folder, image):
    from helpers.logs import transformers_messages

    with transformers_messages() as messages:
        detector = pipeline("object-detection", model=str(model_folder))
    assert not [m for m in messages if "is not supported for" in m]  # the class is in the pipeline's name table
    assert type(detector.model) is modeling_ecom2f.EcoDeformableDetrForObjectDetection
    results = detector(image, threshold=0.0)
    assert results and all(set(r) == {"score", "label", "box"} for r in results)
    processor, model = detector.image_processor, detector.model
    inputs = processor(images=image, return_tensors="pt")
    assert "pixel_mask" in inputs
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[image.size[::-1]])[0]
    assert expected["encoder_layers_used"] == 3  # the gate chose, not the default deepest exit (4)
    assert [r["score"] for r in results] == pytest.approx(expected["scores"].tolist())
    assert [r["label"] for r in results] == [model.config.id2label[int(l)] for l in expected["labels"]]


def test_hub_folder_rejects_other_folders(tmp_path):
    with pytest.raises(NotAnEcoModelError):
        write_detection_hub_folder(model_dir=tmp_path, output_dir=tmp_path / "out")


@pytest.mark.slow
def test_hub_folder_loads_in_a_fresh_process(model_folder, tmp_path):
    export = tmp_path / "export"
    write_detection_hub_folder(model_dir=model_folder, output_dir=export, repo_id="tester/eco-detr")
    config = json.loads((export / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_eco_deformable_detr.EcoDeformableDetrConfig",
        "AutoModel": "modeling_eco_deformable_detr.EcoDeformableDetrModel",
        "AutoModelForObjectDetection": "modeling_eco_deformable_detr.EcoDeformableDetrForObjectDetection",
    }
    assert json.loads((export / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoImageProcessor": "image_processing_eco_deformable_detr.EcoDeformableDetrImageProcessor"}
    assert {"modeling_eco_deformable_detr.py", "configuration_ecom2f.py", "ecom2f_encoder.py"} <= {
        p.name for p in export.iterdir()}

    images = write_test_images(tmp_path / "images")
    out, cwd = tmp_path / "fresh.pt", tmp_path / "cwd"
    cwd.mkdir()
    run_python([str(REPO_ROOT / "tests" / "_detection_load_client.py"), str(export), str(out), *map(str, images),
                "--prove-block", str(REPO_ROOT)],
               env=client_env(hub=None, home=tmp_path / "hf_home"), cwd=cwd, project_importable=False)
    report = torch.load(out, weights_only=False)
    assert all(report["visible_before_block"].values()) and not any(report["visible_at_end"].values())
    assert report["classes"]["model"].endswith("modeling_eco_deformable_detr.EcoDeformableDetrForObjectDetection")
    assert report["classes"]["model"].startswith("transformers_modules.")
    assert report["classes"]["pipeline_processor"].endswith("EcoDeformableDetrImageProcessor")
    assert not [m for m in report["pipeline_load_messages"] if "is not supported" in m]  # the exported code lists it
    assert not report["loading_info"]["missing_keys"] and not report["loading_info"]["unexpected_keys"]
    assert report["base_model"]["class"].endswith("modeling_eco_deformable_detr.EcoDeformableDetrModel")
    assert not report["base_model"]["loading_info"]["missing_keys"]

    model = modeling_ecom2f.EcoDeformableDetrForObjectDetection.from_pretrained(model_folder).eval()
    processor = modeling_ecom2f.EcoDeformableDetrImageProcessor.from_pretrained(model_folder)
    inputs = processor(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")
    with torch.no_grad():
        for depth in (2, 4):
            expected = model(**inputs, num_encoder_layers=depth).logits
            torch.testing.assert_close(report["logits"][depth], expected, rtol=0, atol=1e-5)
            assert report["encoder_layers_used"][depth].tolist() == [depth] * len(images)
    assert all(report["pipeline"])


def test_untrained_gate_hub_folder_warns(tmp_path):
    folder = tmp_path / "model"
    tiny_eco_detector().save_pretrained(folder)
    with pytest.warns(UntrainedGateWarning):
        write_detection_hub_folder(model_dir=folder, output_dir=tmp_path / "export")
    assert (tmp_path / "export" / "preprocessor_config.json").is_file()
