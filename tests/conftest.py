"""Shared fixtures; the builders behind them live in `tests/helpers/`."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from helpers.models import tiny_eco_model
from helpers.recipe import build_detection_chain, build_tiny_chain


@pytest.fixture
def eco_model():
    return tiny_eco_model()


@pytest.fixture
def pixel_values():
    return torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> dict:
    """Data on disk, then steps 1-3 and the evaluation through the example scripts in this process (once)."""
    return build_tiny_chain(tmp_path_factory.mktemp("ecom2f-recipe"))


@pytest.fixture(scope="session")
def detection_chain(tmp_path_factory) -> dict:
    """Steps 1-3 and the evaluation through the detection scripts (once)."""
    return build_detection_chain(tmp_path_factory.mktemp("ecom2f-detr-recipe"))
