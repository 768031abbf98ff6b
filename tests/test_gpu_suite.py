"""The device suite (`benchmarks/gpu_suite.py`: speed table, training step, sampling core) runs end to end with
`--device cpu` on tiny sizes and records every variant with its equivalence check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_suite  # noqa: E402


def test_suite_on_cpu(tmp_path):
    payload = gpu_suite.main(["--device", "cpu", "--model", "tiny", "--sizes", "64", "--train-settings", "recipe",
                              "--core-size", "64", "--rounds", "1", "--warmup", "0", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "gpu_suite_cpu.json").read_text())["meta"]["device"] == "cpu"
    variants = {"stock", "ecom2f[reference]", "ecom2f[embedding_bag]"}
    assert {(r["batch"], r["variant"]) for r in payload["speed"]} == {(b, v) for b in (1, 4) for v in variants}
    assert all(r["median_ms"] > 0 and r["mask_logits_max_abs_diff"] <= 1e-5 for r in payload["speed"])
    assert {r["variant"] for r in payload["train"]} == variants
    assert all(r["check"]["loss_difference_to_stock"] <= 1e-4 for r in payload["train"])
    assert set(payload["core"]["cores"]) == {"reference", "embedding_bag"}
    assert payload["core"]["max_relative_difference"] <= 1e-5
    assert "## Training step" in (tmp_path / "gpu_suite_cpu.md").read_text()
