"""`argparse` value types and the argument pieces shared by the recipe's segmentation and detection model groups
(`arguments`, `detection_arguments`)."""

from __future__ import annotations

import argparse
import json


def json_object(text: str) -> dict:
    """A JSON object given inline or as a path to a `.json` file."""
    if text.strip().startswith("{"):
        value = json.loads(text)
    else:
        with open(text, encoding="utf-8") as handle:
            value = json.load(handle)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0 or value == float("inf"):  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def add_fresh_config_arguments(group, *, config_class: str, backbone_default: str, backbone_help: str) -> None:
    """`--config_name`, `--backbone` and `--backbone_kwargs`: where a fresh (randomly initialised) config comes from."""
    group.add_argument("--config_name", type=json_object,
                       help=f"a fresh {config_class} as JSON (inline or a file); ignored with --model_name_or_path")
    group.add_argument("--backbone", default=backbone_default, help=backbone_help)
    group.add_argument("--backbone_kwargs", type=json_object, default=None,
                       help="keyword arguments of the backbone config (JSON)")


def add_eco_field_arguments(parser: argparse.ArgumentParser, *, token_scaling_help: str):
    """The ECO-M2F and PRO-SCALE config fields both model families have (override the loaded or fresh config);
    returns the group, for the fields only one family has."""
    eco = parser.add_argument_group("ECO-M2F and PRO-SCALE fields (override the loaded or fresh config)")
    eco.add_argument("--exit_layers", type=int, nargs="+", help="allowed exit depths, e.g. 2 3 4 5 6")
    eco.add_argument("--exit_loss_weighting", choices=("linear", "uniform"))
    eco.add_argument("--gate_hidden_size", type=int)
    eco.add_argument("--token_scaling_layers", type=int, nargs="+", help=token_scaling_help)
    eco.add_argument("--token_recalibration", action="store_true", default=None, help="PRO-SCALE TRC")
    eco.add_argument("--deformable_attention_implementation", choices=("auto", "reference", "embedding_bag"))
    return eco


__all__ = ["add_eco_field_arguments", "add_fresh_config_arguments", "json_object", "non_negative_float",
           "positive_int"]
