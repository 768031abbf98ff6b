"""Pictures: overlay with legend, prediction vs ground truth, grid; all PNG via matplotlib's Agg canvas."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modeling_ecom2f.data import (
    colorize_panoptic,
    draw_panoptic_grid,
    draw_panoptic_overlay,
    draw_prediction_vs_ground_truth,
)

ID2LABEL = {0: "circle", 1: "square", 3: "sky"}


def _scene():
    seg = np.full((40, 48), 3, np.int64)
    seg[5:15, 5:15] = 7
    seg[20:30, 20:35] = 8
    seg[0:3, 0:3] = 0
    info = [{"id": 3, "category_id": 3}, {"id": 7, "category_id": 0}, {"id": 8, "category_id": 0}]
    image = np.full((40, 48, 3), 90, np.uint8)
    return image, seg, info


def test_colorize_distinguishes_instances_and_leaves_void_black():
    _, seg, info = _scene()
    colors, labelled, legend = colorize_panoptic(segmentation=seg, segments_info=info)
    assert sorted(legend) == [0, 3]
    assert not labelled[0:3, 0:3].any() and (colors[0:3, 0:3] == 0).all()
    assert tuple(colors[10, 10]) != tuple(colors[25, 27])  # two circles, two shades
    assert tuple(colors[35, 40]) == tuple(legend[3])
    assert (colors[4, 5:15] == 255).all() and (colors[5, 5:14] != 255).any()  # boundary drawn white, outside


def test_overlay_and_side_by_side_png(tmp_path):
    image, seg, info = _scene()
    data = draw_panoptic_overlay(
        image=image,
        segmentation=seg,
        segments_info=info,
        id2label=ID2LABEL,
        title="gt",
        output_path=tmp_path / "overlay.png",
    )
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG" and (tmp_path / "overlay.png").read_bytes() == data
    pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 10  # image, colours, legend text
    pred = {"segmentation": seg, "segments_info": [dict(s, label_id=s["category_id"]) for s in info]}
    side = draw_prediction_vs_ground_truth(
        image=image, prediction=pred, reference={"segmentation": seg, "segments_info": info}, id2label=ID2LABEL
    )
    wide = Image.open(io.BytesIO(side))
    assert wide.width > 2 * wide.height
    with pytest.raises(ValueError, match="differs from image size"):
        draw_panoptic_overlay(image=image[:10], segmentation=seg, segments_info=info, id2label=ID2LABEL)


def test_grid_png(tmp_path):
    image, seg, info = _scene()
    data = draw_panoptic_grid(
        samples=[(image, seg, info, f"#{k}") for k in range(3)],
        id2label=ID2LABEL,
        columns=2,
        output_path=tmp_path / "grid.png",
    )
    grid = Image.open(io.BytesIO(data))
    assert grid.height > grid.width  # two sample rows, each an image above its map
