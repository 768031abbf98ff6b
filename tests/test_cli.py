"""The console scripts of pyproject.toml point at the recipe's entry points, which parse and run each step."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_console_scripts_resolve_to_callables():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert {"ecom2f-train-early-exit", "ecom2f-derive-exit-dataset", "ecom2f-train-gate", "ecom2f-evaluate",
            "ecom2f-main-job"} <= set(scripts)
    for name, target in scripts.items():
        module, attribute = target.split(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


@pytest.mark.parametrize("main", ["train_early_exit_main", "derive_exit_dataset_main", "train_gate_main",
                                  "evaluate_main", "main_job_main"])
def test_each_entry_point_parses_its_step_arguments(main, capsys):
    from modeling_ecom2f.experiments import cli

    with pytest.raises(SystemExit) as info:
        getattr(cli, main)(["--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out
