"""The speed protocol (`benchmarks/speed_protocol.py`) end to end on a tiny config: every cell, part, fraction of
the GEMM rate, stand-in gain and extra row is measured and written (seconds on one CPU thread)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import speed_protocol  # noqa: E402


def test_protocol_on_a_tiny_config(tmp_path):
    threads = torch.get_num_threads()
    try:
        payload = speed_protocol.main([
            "--model", "tiny", "--sizes", "64", "--threads", "1", "--rounds", "2",
            "--gain-size", "64", "--gain-rounds", "1",
            "--rows", "batch4", "onnx", "--batch-size", "64", "--out", str(tmp_path), "--name", "tiny",
        ])
    finally:
        torch.set_num_threads(threads)
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert written["meta"]["rounds"] == 2 and set(written["gemm"]) == {"1"}
    assert [(c["size"], c["threads"]) for c in payload["cells"]] == [(64, 1)]
    for cell in payload["cells"]:
        assert cell["gemm_gmacs"] > 0 and len(cell["load_before"]) == 3
        for name in ("stock", "ecom2f"):
            parts = cell["models"][name]
            assert len(parts["forward"]["runs_ms"]) == 2  # the warm-up round is not kept
            for part in ("backbone", "deformable encoder", "pixel decoder, other", "transformer decoder", "forward"):
                assert parts[part]["gmacs"] > 0 and parts[part]["fraction_of_gemm"] > 0
            assert parts["post-processing"]["median_ms"] > 0
            # the parts cannot take longer than the forward that contains them
            inner = sum(parts[p]["median_ms"] for p in ("backbone", "deformable encoder", "pixel decoder, other"))
            assert inner <= parts["forward"]["max_ms"] * 1.5
    for diff in payload["logit_max_abs_diff"].values():
        assert diff["class_queries_logits"] <= 1e-5 and diff["masks_queries_logits"] <= 1e-5
    assert set(payload["standin_gains"]) == set(speed_protocol.STANDINS)
    assert all(g["stock_ms"] > 0 and g["standin_ms"] > 0 for g in payload["standin_gains"].values())
    (row,) = payload["batch4"]
    assert row["batch"] == 4 and len(row["mixed_depths"]) == 4 and len(set(row["mixed_depths"])) > 1
    assert set(row["models"]) == {"stock", "ecom2f", "ecom2f mixed"}
    # mixed depths run fewer encoder multiply-adds than full depth, on the same batch
    encoder = {name: row["models"][name]["deformable encoder"]["gmacs"] for name in ("ecom2f", "ecom2f mixed")}
    assert encoder["ecom2f mixed"] < encoder["ecom2f"]
    text = (tmp_path / "tiny.md").read_text()
    assert "| 64 | 1 |" in text and "Stand-in gains" in text and "batch 4 at 64x64" in text
    (onnx,) = payload["onnx"]
    assert onnx["mask_logits_max_abs_diff"] <= 1e-4 and onnx["onnxruntime"]["median_ms"] > 0
    assert "onnxruntime vs eager" in text
