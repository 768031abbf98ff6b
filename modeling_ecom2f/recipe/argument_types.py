"""`argparse` value types shared by the recipe's argument groups (`arguments`, `detection_arguments`)."""

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


__all__ = ["json_object", "non_negative_float", "positive_int"]
