"""Model construction for the recipe: from a stock Mask2Former folder, an EcoMask2Former folder, or a fresh config.

A fresh config takes any transformers backbone config (by `model_type` plus keyword arguments), a timm model
(`timm:<name>`, random init: nothing is downloaded), or one of the small presets below. The ECO-M2F and PRO-SCALE
fields given on the command line override the loaded or fresh config, so PRO-SCALE and combined models train with
the same script.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from configuration.configuration_ecom2f import EcoMask2FormerConfig

from ..data import SegmentationLabelInfo
from ..modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from .artifacts import check_weight_files, read_json_file
from .runtime import RecipeError

logger = logging.getLogger("modeling_ecom2f.recipe")

SUPPORTED_MODEL_TYPES = ("mask2former", EcoMask2FormerConfig.model_type)
STAGES = ["stage1", "stage2", "stage3", "stage4"]
#: Small fresh backbones (random init) that train on a CPU.
BACKBONE_PRESETS: dict[str, dict] = {
    "swin-mini": {"model_type": "swin", "embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8],
                  "window_size": 4, "drop_path_rate": 0.0, "out_features": STAGES},
    "swin-tiny": {"model_type": "swin", "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24],
                  "window_size": 7, "drop_path_rate": 0.3, "out_features": STAGES},
    "resnet-mini": {"model_type": "resnet", "embedding_size": 32, "hidden_sizes": [32, 64, 128, 256],
                    "depths": [1, 1, 1, 1], "layer_type": "basic", "out_features": STAGES},
}
#: Config fields the ECO-M2F / PRO-SCALE command-line flags override.
ECO_FIELDS = ("exit_layers", "exit_loss_weighting", "gate_hidden_size", "token_scaling_layers", "token_recalibration",
              "light_pixel_embedding", "deformable_attention_implementation", "encoder_n_points")


def eco_overrides(args: argparse.Namespace) -> dict:
    """The ECO-M2F / PRO-SCALE fields given on the command line (unset flags are left out)."""
    return {name: getattr(args, name) for name in ECO_FIELDS if getattr(args, name, None) is not None}


def checkpoint_model_type(path: str | os.PathLike, *, supported: tuple[str, ...] = SUPPORTED_MODEL_TYPES,
                          needs: str | None = None) -> str:
    """The `model_type` of a saved model folder; `RecipeError` if it is no folder or no model of ours, or if its
    `config.json` or a weight file is corrupt, truncated or missing (`artifacts.check_weight_files`).

    `supported` are the accepted model types and `needs` the phrase naming them in the error (default: the
    Mask2Former recipe's).
    """
    folder = Path(path)
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise RecipeError(f"model folder {folder} does not exist (the Hub is not used offline: pass a local folder)")
    if not config_file.is_file():
        raise RecipeError(f"{folder} has no config.json: it is not a model saved with save_pretrained")
    model_type = read_json_file(config_file, what="model config").get("model_type")
    if model_type not in supported:
        needs = needs or (f"the recipe needs a Mask2Former ('mask2former') or EcoMask2Former "
                          f"('{EcoMask2FormerConfig.model_type}') checkpoint")
        raise RecipeError(f"{folder} holds a {model_type!r} model (model_type in {config_file}); {needs}")
    check_weight_files(folder)
    return model_type


def backbone_config(name: str, kwargs: dict | None = None):
    """A backbone config from a preset name, a transformers `model_type`, or `timm:<model name>`."""
    from transformers import CONFIG_MAPPING, TimmBackboneConfig

    kwargs = dict(kwargs or {})
    if name.startswith("timm:"):
        options = {"out_indices": (1, 2, 3, 4), "use_pretrained_backbone": False, **kwargs}
        return TimmBackboneConfig(backbone=name[len("timm:"):], **options)
    if name in BACKBONE_PRESETS:
        options = {**BACKBONE_PRESETS[name], **kwargs}
    else:
        options = {"model_type": name, "out_features": STAGES, **kwargs}
    model_type = options.pop("model_type")
    if model_type not in CONFIG_MAPPING:
        raise RecipeError(f"--backbone {name!r}: unknown transformers model_type {model_type!r} (presets: "
                          f"{sorted(BACKBONE_PRESETS)}; or timm:<name>)")
    return CONFIG_MAPPING[model_type](**options)


def fresh_config(args: argparse.Namespace, label_info: SegmentationLabelInfo) -> EcoMask2FormerConfig:
    """A new EcoMask2FormerConfig from `--config_name` or the size flags, labelled with the data set's classes."""
    labels = {"id2label": dict(label_info.id2label), "label2id": label_info.label2id}
    if getattr(args, "config_name", None):
        data = {**args.config_name, **labels, **eco_overrides(args)}
        data.pop("num_labels", None)
        return EcoMask2FormerConfig(**data)
    hidden = args.hidden_dim or args.feature_size
    return EcoMask2FormerConfig(
        backbone_config=backbone_config(args.backbone, args.backbone_kwargs),
        feature_size=args.feature_size, mask_feature_size=args.feature_size, hidden_dim=hidden,
        encoder_feedforward_dim=2 * args.feature_size, dim_feedforward=4 * hidden,
        encoder_layers=args.encoder_layers, decoder_layers=args.decoder_layers, num_queries=args.num_queries,
        num_attention_heads=args.num_attention_heads, train_num_points=args.train_num_points, **labels,
        **eco_overrides(args),
    )


def _labels_match(config, label_info: SegmentationLabelInfo) -> bool:
    return {int(k): str(v) for k, v in config.id2label.items()} == dict(label_info.id2label)


def with_encoder_layers_for_stages(path: str | os.PathLike, overrides: dict) -> dict:
    """`overrides` plus the `encoder_layers` its PRO-SCALE stages imply (their sum), when that differs from the saved
    config's: a 6-layer parent loads as a (3,3,3) model of 9 layers. The saved exits are then replaced by the default
    range unless `exit_layers` is overridden too. Encoder layers the parent lacks are newly initialised."""
    stages = overrides.get("token_scaling_layers")
    if not stages or "encoder_layers" in overrides:
        return overrides
    saved = read_json_file(Path(path) / "config.json", what="model config").get("encoder_layers")
    if saved == sum(stages):
        return overrides
    logger.info("token_scaling_layers %s: encoder_layers %s -> %d", list(stages), saved, sum(stages))
    layers = sum(stages)
    return {"encoder_layers": layers, "exit_layers": list(range(min(2, layers), layers + 1)), **overrides}


def load_model(path: str | os.PathLike, *, label_info: SegmentationLabelInfo | None = None,
               overrides: dict | None = None) -> EcoMask2FormerForUniversalSegmentation:
    """Load a saved stock Mask2Former or EcoMask2Former folder as an EcoMask2Former model.

    Args:
        path: the folder.
        label_info: the training data's classes. If they differ from the checkpoint's, the class head is
            re-initialised for them (with a warning); None keeps the checkpoint's classes.
        overrides: ECO-M2F / PRO-SCALE config fields to change (weights whose shapes no longer fit are reported as
            newly initialised).

    Raises:
        RecipeError: no folder, no config, or a model of another type.
    """
    checkpoint_model_type(path)
    overrides = with_encoder_layers_for_stages(path, dict(overrides or {}))
    config = EcoMask2FormerConfig.from_pretrained(path, **overrides)
    relabel = label_info is not None and not _labels_match(config, label_info)
    if relabel:
        logger.warning("the checkpoint's %d classes differ from the data set's %d: the class head is re-initialised",
                       len(config.id2label), label_info.num_labels)
        config.id2label = dict(label_info.id2label)
        config.label2id = label_info.label2id
    structural = bool({"token_scaling_layers", "token_recalibration", "light_pixel_embedding", "gate_hidden_size",
                       "exit_layers", "encoder_layers"}
                      & set(overrides or {}))
    model, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(
        path, config=config, ignore_mismatched_sizes=relabel or structural, output_loading_info=True
    )
    new = [k for k in info.get("missing_keys", []) if ".gate." not in k]
    if new:
        logger.warning("%d weights of %s are newly initialised (e.g. %s)", len(new), path, new[:3])
    return model


def build_model(args: argparse.Namespace, label_info: SegmentationLabelInfo) -> EcoMask2FormerForUniversalSegmentation:
    """Step 1's starting model: `--model_name_or_path` if given, else a fresh config (random init)."""
    if args.model_name_or_path:
        return load_model(args.model_name_or_path, label_info=label_info, overrides=eco_overrides(args))
    return EcoMask2FormerForUniversalSegmentation(fresh_config(args, label_info))


def load_trained_model(path: str | os.PathLike, *, label_info: SegmentationLabelInfo | None = None):
    """A step-1 or step-3 output for inference (`eval()` mode). The data set's classes must match the model's."""
    checkpoint_model_type(path)
    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(path).eval()
    if label_info is not None and not _labels_match(model.config, label_info):
        raise RecipeError(f"the model in {path} predicts {model.config.id2label}, but the data set's classes are "
                          f"{dict(label_info.id2label)}: evaluate it on the data it was trained for")
    return model


def gate_module(model) -> torch.nn.Module:
    """The ECO-M2F gate of an ecom2f model: in the pixel decoder (EcoMask2Former) or on the base model
    (EcoDeformableDetr)."""
    base = model.model
    gate = getattr(base, "gate", None)
    if gate is None:
        gate = base.pixel_level_module.decoder.gate
    return gate


def rebuild_gate(model, *, hidden_size: int | None, objective: str, pooling: str = "mean") -> torch.nn.Module:
    """Give `model` a freshly initialised gate of the given form (step 3 may choose another gate than the parent's
    untrained one: a hidden layer, a utility objective); the config records the new form. Returns the gate."""
    from ..ecom2f_gate import EcoExitGate

    model.config.gate_hidden_size = hidden_size
    model.config.gate_objective = objective
    model.config.gate_pooling = pooling
    model.config.validate_architecture()
    old = gate_module(model)
    first = old.classifier if isinstance(old.classifier, torch.nn.Linear) else old.classifier[0]
    in_channels = first.in_features // (2 if getattr(old, "pooling", "mean") == "mean_std" else 1)
    gate = EcoExitGate(in_channels=in_channels, num_exits=model.config.num_exits, hidden_size=hidden_size,
                       pooling=pooling)
    torch.nn.init.normal_(gate.classifier.weight if hidden_size is None else gate.classifier[0].weight,
                          std=model.config.init_std)
    for layer in gate.modules():
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.zeros_(layer.bias)
    gate.to(device=first.weight.device, dtype=first.weight.dtype)
    owner = model.model if getattr(model.model, "gate", None) is not None else model.model.pixel_level_module.decoder
    owner.gate = gate
    return gate


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


__all__ = [
    "BACKBONE_PRESETS",
    "ECO_FIELDS",
    "SUPPORTED_MODEL_TYPES",
    "backbone_config",
    "build_model",
    "checkpoint_model_type",
    "count_parameters",
    "eco_overrides",
    "fresh_config",
    "gate_module",
    "load_model",
    "load_trained_model",
    "rebuild_gate",
]
