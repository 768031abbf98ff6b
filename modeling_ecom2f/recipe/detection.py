"""The detection task of the recipe: EcoDeformableDetr trained and evaluated on the recipe's data sources, whose
panoptic rows give COCO boxes of their thing instances (`modeling_ecom2f.data.detection_reference`).

This module holds what a detector needs that a segmenter does not: its model (fresh, from a stock Deformable DETR
folder or from an EcoDeformableDetr folder), its image processor, the collator that turns rows into `pixel_values`,
`pixel_mask` and `labels` (normalised cxcywh boxes, as the stock processor makes them). Evaluation and step 2's
per-image box AP are in `detection_evaluation`; `tasks.detection_task` ties both into the `RecipeTask` the shared
steps run.

Classes: the detector's class index is the data set's label id (the boxes keep their `category_id`); its label set
is every id up to the largest thing id, so with the usual "things first" numbering (the synthetic data, COCO
panoptic adapters) it is exactly the thing classes. Stuff regions are not objects and get no boxes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from configuration.configuration_eco_deformable_detr import EcoDeformableDetrConfig

from ..data import SegmentationLabelInfo, decode_row, detection_reference
from ..modeling_eco_deformable_detr import EcoDeformableDetrForObjectDetection
from .modeling import backbone_config, checkpoint_model_type, eco_overrides
from .runtime import RecipeError

logger = logging.getLogger("modeling_ecom2f.recipe")

DETECTION_MODEL_TYPES = ("deformable_detr", EcoDeformableDetrConfig.model_type)
NEEDS = ("the detection recipe needs a Deformable DETR ('deformable_detr') or EcoDeformableDetr "
         f"('{EcoDeformableDetrConfig.model_type}') checkpoint")
#: Backbone stages that feed the encoder (strides 8, 16, 32); a stride-2 conv adds the fourth level (1/64).
OUT_FEATURES = ["stage2", "stage3", "stage4"]
PROCESSOR_FILE = "preprocessor_config.json"


def detection_labels(label_info: SegmentationLabelInfo) -> dict:
    """`id2label` / `label2id` of the detector: every label id from 0 to the largest thing id."""
    if not label_info.thing_ids:
        raise RecipeError("the data set has no thing categories: there are no objects to detect")
    top = max(label_info.thing_ids)
    id2label = {i: str(label_info.id2label.get(i, f"unused_{i}")) for i in range(top + 1)}
    return {"id2label": id2label, "label2id": {name: i for i, name in id2label.items()}}


def fresh_detection_config(args: argparse.Namespace, label_info: SegmentationLabelInfo) -> EcoDeformableDetrConfig:
    """A new EcoDeformableDetrConfig from `--config_name` or the size flags (random-init backbone, no download)."""
    labels = detection_labels(label_info)
    if getattr(args, "config_name", None):
        data = {"use_pretrained_backbone": False, **args.config_name, **labels, **eco_overrides(args)}
        data.pop("num_labels", None)
        return EcoDeformableDetrConfig(**data)
    if args.backbone.startswith("timm:"):
        raise RecipeError(f"--backbone {args.backbone}: timm backbones are not wired up in the detection recipe; use a "
                          "preset (resnet-mini, swin-mini) or a transformers backbone model_type")
    backbone = backbone_config(args.backbone, {"out_features": OUT_FEATURES, **(args.backbone_kwargs or {})})
    width = args.d_model
    return EcoDeformableDetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=width,
        encoder_layers=args.encoder_layers, decoder_layers=args.decoder_layers,
        encoder_attention_heads=args.num_attention_heads, decoder_attention_heads=args.num_attention_heads,
        encoder_ffn_dim=2 * width, decoder_ffn_dim=4 * width, num_queries=args.num_queries, num_feature_levels=4,
        with_box_refine=bool(args.with_box_refine), **labels, **eco_overrides(args),
    )


def _labels_match(config, label_info: SegmentationLabelInfo) -> bool:
    return {int(k): str(v) for k, v in config.id2label.items()} == detection_labels(label_info)["id2label"]


def _check_folder(path) -> None:
    checkpoint_model_type(path, supported=DETECTION_MODEL_TYPES, needs=NEEDS)
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    if config.get("two_stage"):
        raise RecipeError(f"{path} holds a two-stage Deformable DETR; the detection recipe supports single-stage "
                          "models only (EcoDeformableDetrConfig rejects two_stage=True)")


def load_detection_model(path: str | os.PathLike, *, label_info: SegmentationLabelInfo | None = None,
                         overrides: dict | None = None) -> EcoDeformableDetrForObjectDetection:
    """A stock Deformable DETR or EcoDeformableDetr folder as an EcoDeformableDetr detector to train; with
    `label_info` whose classes differ from the checkpoint's, the class heads are re-initialised (with a warning)."""
    _check_folder(path)
    config = EcoDeformableDetrConfig.from_pretrained(path, **(overrides or {}))
    relabel = label_info is not None and not _labels_match(config, label_info)
    if relabel:
        labels = detection_labels(label_info)
        logger.warning("the checkpoint's %d classes differ from the data set's %d detection classes: the class heads "
                       "are re-initialised", len(config.id2label), len(labels["id2label"]))
        config.id2label, config.label2id = labels["id2label"], labels["label2id"]
    structural = bool({"token_scaling_layers", "token_recalibration", "gate_hidden_size"} & set(overrides or {}))
    model, info = EcoDeformableDetrForObjectDetection.from_pretrained(
        path, config=config, ignore_mismatched_sizes=relabel or structural, output_loading_info=True
    )
    new = [k for k in info.get("missing_keys", []) if ".gate." not in k]
    if new:
        logger.warning("%d weights of %s are newly initialised (e.g. %s)", len(new), path, new[:3])
    return model


def build_detection_model(args: argparse.Namespace, label_info: SegmentationLabelInfo):
    """Step 1's starting detector: `--model_name_or_path` if given, else a fresh config (random init)."""
    if args.model_name_or_path:
        return load_detection_model(args.model_name_or_path, label_info=label_info, overrides=eco_overrides(args))
    return EcoDeformableDetrForObjectDetection(fresh_detection_config(args, label_info))


def load_trained_detector(path: str | os.PathLike, *, label_info: SegmentationLabelInfo | None = None):
    """A step-1 or step-3 detector for inference (`eval()` mode); its classes must be the data set's."""
    _check_folder(path)
    model = EcoDeformableDetrForObjectDetection.from_pretrained(path).eval()
    if label_info is not None and not _labels_match(model.config, label_info):
        raise RecipeError(f"the detector in {path} predicts {model.config.id2label}, but the data set's detection "
                          f"classes are {detection_labels(label_info)['id2label']}: evaluate it on the data it was "
                          "trained for")
    return model


def build_detection_image_processor(*, image_size: int | None, max_image_size: int | None = None,
                                    model_dir: str | None = None):
    """`EcoDeformableDetrImageProcessor`: the one saved with the model if any (and no size is forced), else a fresh
    one resizing the shortest edge to `image_size` (longest edge at most `max_image_size`, default twice that)."""
    from processing.image_processing_eco_deformable_detr import EcoDeformableDetrImageProcessor

    if model_dir is not None and image_size is None and os.path.isfile(os.path.join(model_dir, PROCESSOR_FILE)):
        return EcoDeformableDetrImageProcessor.from_pretrained(model_dir)
    size = image_size or 128
    return EcoDeformableDetrImageProcessor(size={"shortest_edge": size, "longest_edge": max_image_size or 2 * size})


class EcoDeformableDetrCollator:
    """`collate_fn` for standard rows (optionally augmented: arrays from `data.PanopticRows`) to detector inputs.

    Args:
        image_processor: a Deformable DETR image processor (COCO detection annotations).
        label_info: the data set's labels; only thing instances become boxes, and ids are checked against it.
        processor_kwargs: extra keyword arguments of every processor call (e.g. `{"do_resize": False}`).
        return_references: also return `references` (`detection_reference` dicts at the original resolution),
            `target_sizes` and `image_ids` for evaluation.

    Returns (per call): a `BatchFeature` with `pixel_values (B, 3, H, W)`, `pixel_mask (B, H, W)` and `labels` (per
    image `class_labels (n,)` and normalised cxcywh `boxes (n, 4)`, crowd boxes left out as by the stock processor).
    """

    def __init__(self, *, image_processor: Any, label_info: SegmentationLabelInfo | None = None,
                 processor_kwargs: Mapping[str, Any] | None = None, return_references: bool = False) -> None:
        if not callable(image_processor):
            raise TypeError("image_processor: must be callable like DeformableDetrImageProcessor")
        self.image_processor = image_processor
        self.label_info = label_info
        self.processor_kwargs = dict(processor_kwargs or {})
        self.return_references = return_references

    def __call__(self, rows: Sequence[Mapping[str, Any]]):
        images, annotations, references, names = [], [], [], []
        for position, row in enumerate(rows):
            image, _, _, image_id = decode_row(row, label_info=self.label_info)
            reference = detection_reference(row, label_info=self.label_info, image_id=position)
            images.append(image)
            annotations.append({"image_id": position, "annotations": reference["annotations"]})
            references.append(reference)
            names.append(image_id)
        batch = self.image_processor(images=images, annotations=annotations, return_tensors="pt",
                                     **self.processor_kwargs)
        if self.return_references:
            batch["references"] = references
            batch["target_sizes"] = [tuple(r["size"]) for r in references]
            batch["image_ids"] = names
        return batch


def detection_model_inputs(batch, device) -> dict[str, Any]:
    """The tensors of a collated batch the detector takes, on `device` (labels: class ids and boxes only)."""
    out = {"pixel_values": batch["pixel_values"].to(device), "pixel_mask": batch["pixel_mask"].to(device)}
    if "labels" in batch:
        out["labels"] = [{"class_labels": label["class_labels"].to(device), "boxes": label["boxes"].to(device)}
                         for label in batch["labels"]]
    return out


__all__ = [
    "DETECTION_MODEL_TYPES",
    "EcoDeformableDetrCollator",
    "build_detection_image_processor",
    "build_detection_model",
    "detection_labels",
    "detection_model_inputs",
    "fresh_detection_config",
    "load_detection_model",
    "load_trained_detector",
]
