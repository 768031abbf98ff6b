"""Pictures of panoptic segmentations: an overlay with a legend, prediction vs ground truth, and a grid (PNG).

Rendering uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed). Each category has
a fixed colour; instances of a thing category get lighter/darker variants, and segment boundaries are drawn white.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "category_color",
    "colorize_panoptic",
    "draw_panoptic_overlay",
    "draw_prediction_vs_ground_truth",
    "draw_panoptic_grid",
]

_INSTANCE_SHADES = (1.0, 0.72, 1.25, 0.55, 1.45, 0.85, 1.12)


def category_color(category_id: int) -> np.ndarray:
    """Fixed RGB (uint8) colour of a category: matplotlib's ``tab20`` (its 10 strong hues first, then their light
    partners), then golden-ratio hues."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb

    if 0 <= category_id < 20:
        rgb = colormaps["tab20"]((2 * category_id) % 20 + (category_id >= 10))[:3]
    else:
        rgb = hsv_to_rgb(((category_id * 0.618034) % 1.0, 0.65, 0.9))
    return (np.asarray(rgb) * 255).round().astype(np.uint8)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def colorize_panoptic(
    *, segmentation: Any, segments_info: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Colour a panoptic map.

    Args:
        segmentation: ``(H, W)`` segment ids (0 or -1 = void).
        segments_info: ``[{"id", "label_id" | "category_id", ...}]``.

    Returns:
        ``(colors (H, W, 3) uint8, labelled (H, W) bool, legend {category_id: rgb})``; void pixels are black.
    """
    seg = _to_numpy(segmentation).astype(np.int64)
    colors = np.zeros(seg.shape + (3,), np.uint8)
    legend: dict[int, np.ndarray] = {}
    per_category: dict[int, int] = {}
    ids, cols = [], []
    for s in segments_info:
        cat = int(s.get("label_id", s.get("category_id", -1)))
        k = per_category.get(cat, 0)
        per_category[cat] = k + 1
        base = category_color(cat).astype(np.float32)
        legend.setdefault(cat, base.astype(np.uint8))
        factor = _INSTANCE_SHADES[k % len(_INSTANCE_SHADES)]  # instances of one category: shades of its colour
        ids.append(int(s["id"]))
        cols.append(np.clip(base * factor, 0, 255).astype(np.uint8))
    labelled = np.zeros(seg.shape, bool)
    if ids:
        keys = np.asarray(ids, np.int64)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], seg), 0, len(ids) - 1)
        labelled = (keys[order][pos] == seg) & (seg > 0)
        colors[labelled] = np.stack(cols)[order][pos][labelled]
    edges = np.zeros(seg.shape, bool)
    edges[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    edges[:-1, :] |= seg[:-1, :] != seg[1:, :]
    colors[edges & labelled] = 255
    return colors, labelled, legend


def _overlay(image: np.ndarray, colors: np.ndarray, labelled: np.ndarray, alpha: float) -> np.ndarray:
    out = image.astype(np.float32).copy()
    out[labelled] = (1 - alpha) * out[labelled] + alpha * colors[labelled]
    return out.round().astype(np.uint8)


def _image(value: Any) -> np.ndarray:
    array = _to_numpy(value.convert("RGB") if hasattr(value, "convert") else value)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return array.astype(np.uint8)


def _finish(fig: Any, output_path: str | os.PathLike | None, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = buffer.getvalue()
    if output_path is not None:
        os.makedirs(os.path.dirname(os.fspath(output_path)) or ".", exist_ok=True)
        with open(output_path, "wb") as handle:
            handle.write(data)
    return data


def _legend(fig: Any, legend: Mapping[int, np.ndarray], id2label: Mapping[int, str], columns: int, y: float) -> None:
    """One legend for the figure, its top edge at figure height fraction ``y`` (just under the panels)."""
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=rgb / 255.0, edgecolor="black", label=id2label.get(cat, str(cat)))
        for cat, rgb in sorted(legend.items())
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="upper center",
            ncol=min(columns, len(handles)),
            frameon=False,
            bbox_to_anchor=(0.5, y),
            fontsize=9,
        )


def _check_size(image: np.ndarray, segmentation: Any, what: str) -> None:
    shape = tuple(_to_numpy(segmentation).shape)
    if shape != image.shape[:2]:
        raise ValueError(f"{what} size {shape} differs from image size {image.shape[:2]}")


def draw_panoptic_overlay(
    *,
    image: Any,
    segmentation: Any,
    segments_info: Sequence[Mapping[str, Any]],
    id2label: Mapping[int, str],
    alpha: float = 0.55,
    title: str | None = None,
    output_path: str | os.PathLike | None = None,
    dpi: int = 100,
) -> bytes:
    """PNG of a panoptic segmentation blended over its image, with a legend of the categories shown.

    Args:
        image: ``(H, W, 3)`` uint8 array or PIL image.
        segmentation, segments_info: A ``post_process_panoptic_segmentation`` output's fields (or ground truth).
        id2label: Category names.
        alpha: Opacity of the colours.
        output_path: Also write the PNG there.

    Returns:
        The PNG bytes.
    """
    from matplotlib.figure import Figure

    img = _image(image)
    _check_size(img, segmentation, "segmentation")
    colors, labelled, legend = colorize_panoptic(segmentation=segmentation, segments_info=segments_info)
    fig = Figure(figsize=(6, 6.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(_overlay(img, colors, labelled, alpha))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.94, bottom=0.12)
    _legend(fig, legend, id2label, columns=4, y=0.115)
    return _finish(fig, output_path, dpi)


def draw_prediction_vs_ground_truth(
    *,
    image: Any,
    prediction: Mapping[str, Any],
    reference: Mapping[str, Any],
    id2label: Mapping[int, str],
    alpha: float = 0.55,
    output_path: str | os.PathLike | None = None,
    dpi: int = 100,
) -> bytes:
    """PNG with three panels: the image, the prediction overlay and the ground-truth overlay, one shared legend.

    ``prediction`` / ``reference``: ``{"segmentation", "segments_info"}`` dicts (processor output / ground truth).
    """
    from matplotlib.figure import Figure

    img = _image(image)
    fig = Figure(figsize=(13, 5))
    legend: dict[int, np.ndarray] = {}
    panels = [("image", img)]
    for name, entry in (("prediction", prediction), ("ground truth", reference)):
        _check_size(img, entry["segmentation"], name)
        colors, labelled, entry_legend = colorize_panoptic(
            segmentation=entry["segmentation"], segments_info=entry["segments_info"]
        )
        legend.update(entry_legend)
        panels.append((name, _overlay(img, colors, labelled, alpha)))
    for k, (name, picture) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, k)
        ax.imshow(picture)
        ax.set_title(name)
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.12, wspace=0.04)
    _legend(fig, legend, id2label, columns=8, y=0.11)
    return _finish(fig, output_path, dpi)


def draw_panoptic_grid(
    *,
    samples: Sequence[tuple[Any, Any, Sequence[Mapping[str, Any]], str]],
    id2label: Mapping[int, str],
    columns: int = 4,
    output_path: str | os.PathLike | None = None,
    dpi: int = 100,
) -> bytes:
    """PNG grid: for each sample ``(image, segmentation, segments_info, caption)`` the image above its colour-coded
    panoptic map (void black, boundaries white), ``columns`` samples per row, one legend."""
    from matplotlib.figure import Figure

    rows = (len(samples) + columns - 1) // columns
    fig = Figure(figsize=(3.0 * columns, 6.2 * rows))
    legend: dict[int, np.ndarray] = {}
    for k, (image, segmentation, segments_info, caption) in enumerate(samples):
        img = _image(image)
        _check_size(img, segmentation, "segmentation")
        colors, _, entry_legend = colorize_panoptic(segmentation=segmentation, segments_info=segments_info)
        legend.update(entry_legend)
        row, col = divmod(k, columns)
        for offset, picture in ((0, img), (1, colors)):
            ax = fig.add_subplot(2 * rows, columns, (2 * row + offset) * columns + col + 1)
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            if offset == 0:
                ax.set_title(caption, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.05, wspace=0.04, hspace=0.2)
    _legend(fig, legend, id2label, columns=min(10, max(columns, 5)), y=0.045)
    return _finish(fig, output_path, dpi)
