"""After `import modeling_ecom2f`: the Auto classes resolve to ours and pipeline("image-segmentation") works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
    pipeline,
)

import modeling_ecom2f
from helpers.data import gradient_image
from helpers.hub_fixtures import gate_choice, save_model_folder, tiny_processor, trained_gate_model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eco_model")
    return save_model_folder(folder, model=trained_gate_model(), processor=tiny_processor())


@pytest.fixture(scope="module")
def image():
    return gradient_image(72, 88)


def test_auto_classes_resolve_to_ecom2f(model_folder):
    assert type(AutoConfig.from_pretrained(model_folder)) is modeling_ecom2f.EcoMask2FormerConfig
    for auto in (AutoModelForUniversalSegmentation, AutoModelForImageSegmentation):
        assert type(auto.from_pretrained(model_folder)) is modeling_ecom2f.EcoMask2FormerForUniversalSegmentation
    assert type(AutoImageProcessor.from_pretrained(model_folder)) is modeling_ecom2f.EcoMask2FormerImageProcessor
    config = AutoConfig.for_model("eco_mask2former")
    assert type(config) is modeling_ecom2f.EcoMask2FormerConfig


@pytest.fixture(scope="module")
def segmenter(model_folder):
    return pipeline("image-segmentation", model=str(model_folder))


def test_pipeline_uses_our_classes_and_passes_the_pixel_mask(segmenter, image):
    assert type(segmenter.model) is modeling_ecom2f.EcoMask2FormerForUniversalSegmentation
    assert type(segmenter.image_processor) is modeling_ecom2f.EcoMask2FormerImageProcessor
    assert "pixel_mask" in segmenter.preprocess(image)


@pytest.mark.parametrize("subtask", ["panoptic", "instance", "semantic"])
def test_pipeline_subtasks_match_the_post_processor(segmenter, image, subtask):
    kwargs = {} if subtask == "semantic" else {"threshold": 0.0}
    results = segmenter(image, subtask=subtask, **kwargs)
    assert results, f"{subtask}: no segments"
    labels = set(segmenter.model.config.id2label.values())
    for item in results:
        assert item["label"] in labels
        assert item["mask"].mode == "L" and item["mask"].size == image.size
        assert (item["score"] is None) == (subtask == "semantic")

    processor, model = segmenter.image_processor, segmenter.model
    inputs = processor(images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    target = [image.size[::-1]]
    if subtask == "semantic":
        expected = processor.post_process_semantic_segmentation(outputs, target_sizes=target)[0]
        assert sorted(item["label"] for item in results) == sorted(
            model.config.id2label[int(label)] for label in expected.unique()
        )
    else:
        post = getattr(processor, f"post_process_{subtask}_segmentation")
        expected = post(outputs, threshold=0.0, overlap_mask_area_threshold=0.5, target_sizes=target)[0]
        assert [item["score"] for item in results] == [s["score"] for s in expected["segments_info"]]
        depth = gate_choice(model.config)
        assert expected["encoder_layers_used"] == depth != model.config.max_exit  # the gate chose, not the default
        for item, segment in zip(results, expected["segments_info"]):
            mask = (expected["segmentation"] == segment["id"]).numpy()
            assert np.array_equal(np.array(item["mask"]) > 0, mask)


def test_pipeline_runs_a_utility_gate_at_the_processor_gate_beta(tmp_path, image):
    from helpers.hub_fixtures import PROCESSOR_KWARGS

    model = trained_gate_model()
    model.config.gate_objective = "utility"
    classifier = model.model.pixel_level_module.decoder.gate.classifier
    with torch.no_grad():  # predicted gains of exits 2, 3, 4: 0, 0.1, 0.15 (PQ fraction) for every image
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([0.0, 0.1, 0.15]))
    chosen = []
    for beta, depth in ((0.0, 4), (0.07, 3), (0.5, 2)):
        processor = modeling_ecom2f.EcoMask2FormerImageProcessor(**PROCESSOR_KWARGS, gate_beta=beta)
        folder = save_model_folder(tmp_path / f"beta{beta}", model=model, processor=processor)
        segmenter = pipeline("image-segmentation", model=str(folder))
        assert segmenter.image_processor.gate_beta == beta
        handle = segmenter.model.register_forward_hook(
            lambda module, args, kwargs, output: chosen.append((kwargs.get("gate_beta"),
                                                                output.encoder_layers_used.tolist())),
            with_kwargs=True)
        segmenter(image, subtask="panoptic", threshold=0.0)
        handle.remove()
        assert chosen[-1] == (beta, [depth])


def _unsupported(messages: list[str]) -> list[str]:
    return [m for m in messages if "is not supported for" in m]


def test_pipeline_load_logs_no_unsupported_model_message(model_folder, monkeypatch):
    from transformers.models.auto.modeling_auto import MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES

    from helpers.logs import transformers_messages

    with transformers_messages() as messages:
        pipeline("image-segmentation", model=str(model_folder))
    assert not _unsupported(messages)
    # Control: without the entry `import modeling_ecom2f` adds, transformers logs the message this test looks for.
    monkeypatch.delitem(MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES, modeling_ecom2f.EcoMask2FormerConfig.model_type)
    with transformers_messages() as messages:
        pipeline("image-segmentation", model=str(model_folder))
    assert _unsupported(messages) and "EcoMask2FormerForUniversalSegmentation" in _unsupported(messages)[0]
