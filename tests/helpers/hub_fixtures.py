"""Shared pieces of the Hub tests: a tiny model with a "trained" gate, its processor, test images, references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.models import tiny_eco_config

PROCESSOR_KWARGS = {"size": {"shortest_edge": 64, "longest_edge": 96}}
MASK_LOGIT_SCALE = 1e4  # random-init mask logits are about 1e-4
CLASS_LOGIT_SCALE = 10.0
IMAGE_SIZES = ((96, 80), (64, 88))  # PIL (width, height); different aspect ratios, so the batch is padded


def gate_choice(config) -> int:
    """The depth the test gate picks: a middle exit, so that a working gate is told apart from the deepest exit."""
    return config.exit_layers[len(config.exit_layers) // 2]


def trained_gate_model(*, gate_trained: bool = True):
    """Tiny EcoMask2Former whose gate always picks `gate_choice(config)`.

    The gate is "trained" by setting its weights (zero weights, a bias that favours one exit) and
    `config.gate_trained=True`. So that panoptic segmentation keeps segments (the stock post-processor needs
    confident classes and masks), the null class is pushed down and the class and mask logits are scaled up.
    """
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config()).eval()
    config = model.config
    classifier = model.model.pixel_level_module.decoder.gate.classifier
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.bias[config.exit_layers.index(gate_choice(config))] = 5.0
        model.class_predictor.weight.mul_(CLASS_LOGIT_SCALE)
        model.class_predictor.bias[-1] = -10.0
        mask_embedder = model.model.transformer_module.decoder.mask_predictor.mask_embedder
        mask_embedder.get_submodule("2.0").weight.mul_(MASK_LOGIT_SCALE)  # its last linear layer
    config.gate_trained = gate_trained
    return model


def tiny_processor():
    from modeling_ecom2f import EcoMask2FormerImageProcessor

    return EcoMask2FormerImageProcessor(**PROCESSOR_KWARGS)


def save_model_folder(folder: Path, *, model, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_test_images(folder: Path) -> list[Path]:
    """Smooth RGB images with a few rectangles, saved as PNG (bytes identical for every process that reads them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (width, height) in enumerate(IMAGE_SIZES):
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60 * (i + 1))], -1).astype(np.uint8)
        pixels[height // 4 : height // 2, width // 5 : width // 2] = (250, 30, 30)
        pixels[height // 2 :, width // 2 :] = (20, 200, 90)
        path = folder / f"image_{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def reference_outputs(*, model, processor, image_paths: list[Path]) -> dict:
    """What the in-process model gives (the expected side of `_hub_outputs.assert_same_outputs`)."""
    from transformers import pipeline

    from helpers.hub_outputs import segment_outputs

    pipe = pipeline("image-segmentation", model=model, image_processor=processor)
    images = [Image.open(path).convert("RGB") for path in image_paths]
    return segment_outputs(model=model, processor=processor, pipe=pipe, images=images)


def tiny_png(path: Path) -> Path:
    """A small PNG standing in for the training run's PQ-GFLOPs plot."""
    Image.fromarray(np.full((8, 12, 3), 200, np.uint8)).save(path)
    return path


def eval_results_for(config) -> dict:
    """A schema-valid results dict for `config` (made-up numbers, for card tests only)."""
    exits = [{"depth": k, "pq": 40.0 + k, "gflops": 1.5 + 0.25 * k} for k in config.exit_layers]
    gate = {"pq": 42.5, "gflops": 2.1, "mean_depth": float(gate_choice(config))}
    return {"dataset": {"name": "Synthetic shapes", "split": "validation"}, "exits": exits, "gate": gate}
