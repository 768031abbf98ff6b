"""`python examples/segment_image.py` with no arguments segments the demo's example mazes with the shipped gated
model at every exit and with the gate, and writes overlays that hold real segments (rooms and walls)."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from helpers.recipe import load_example


def test_no_arguments_writes_overlays_of_the_shipped_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative: outputs/segment_image
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = load_example("segment_image").module.main([])
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "outputs" / "segment_image"
    assert json.loads((out / "summary.json").read_text()) == summary
    images = sorted({row["image"] for row in summary})
    assert len(images) == 4  # demo/examples: mazes of one to four rooms
    for name in images:
        rows = [row for row in summary if row["image"] == name]
        assert [row["variant"] for row in rows] == ["exit 2", "exit 3", "exit 4", "exit 5", "exit 6", "gate"]
        assert [row["encoder_layers"] for row in rows[:-1]] == [2, 3, 4, 5, 6]
        assert rows[-1]["encoder_layers"] in (2, 3, 4, 5, 6)
        assert all(row["segments"] > 1 for row in rows), rows  # the walls and at least one room, at every exit
        stem = name.rsplit(".", 1)[0]
        for overlay in (out / f"exits_{stem}.png", out / f"gate_{stem}.png"):
            pixels = np.asarray(Image.open(overlay).convert("RGB"))
            assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, overlay  # drawn, not blank
    # More rooms, more segments: the deepest exit finds the walls plus one segment per room on these mazes.
    deepest = {row["image"]: row["segments"] for row in summary if row["variant"] == "exit 6"}
    assert [deepest[name] for name in images] == [2, 3, 4, 5]
