"""The embedded default data set: seeded procedural images with thing shapes and textured stuff regions.

One drawing gives all three ground truths: the panoptic id map (with ``segments_info``), the semantic map and the
instance map are read off the same arrays that paint the image. Each image draws a difficulty ``d`` in ``[0, 1]``
that sets its object count, object sizes, occlusion, clutter, colour similarity and noise; the values actually
realised are stored as columns, so an adaptive-depth model has something to adapt to and analyses can group by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .labels import SegmentationLabelInfo
from .panoptic_format import (
    build_segments_info,
    encode_png,
    panoptic_features,
    panoptic_ids_to_rgb,
    panoptic_to_semantic,
)
from .synthetic_config import SyntheticPanopticConfig
from .synthetic_drawing import STUFF_BASE_COLORS, THING_BASE_COLORS, shape_mask, stuff_layout, stuff_texture

__all__ = ["SyntheticSample", "DIFFICULTY_COLUMNS", "render_synthetic_sample", "make_synthetic_panoptic_dataset",
           "rendered_dataset_dict"]

_SPLIT_CODES = {"train": 0, "validation": 1}

#: Per-image difficulty columns of the synthetic data set (name -> datasets dtype).
DIFFICULTY_COLUMNS: dict[str, str] = {
    "difficulty": "float32",  # the drawn d in [0, 1]
    "num_things": "int32",  # visible, non-crowd thing instances
    "num_stuff_regions": "int32",
    "min_thing_area": "int32",  # pixels of the smallest visible thing (0 if none)
    "mean_thing_area": "float32",
    "occlusion_fraction": "float32",  # share of drawn thing pixels hidden by later objects
    "clutter_count": "int32",  # distractor strokes and dots, labelled as stuff
    "color_similarity": "float32",  # blend of object colour towards the stuff colour
    "noise_std": "float32",
    "has_crowd": "bool",
}


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered image with its three ground truths.

    Attributes:
        image: ``(H, W, 3)`` uint8.
        panoptic_ids: ``(H, W)`` int64 segment ids, 0 = void.
        segments_info: ``[{id, category_id, iscrowd, area, bbox}]``.
        semantic: ``(H, W)`` int64 category ids, 255 = void.
        instance_ids: ``(H, W)`` int64 thing instance ids (= panoptic id of non-crowd things), 0 elsewhere.
        difficulty: The ``DIFFICULTY_COLUMNS`` values.
        image_id: ``"synthetic-<split>-<index>"``.
    """

    image: np.ndarray
    panoptic_ids: np.ndarray
    segments_info: list[dict[str, Any]]
    semantic: np.ndarray
    instance_ids: np.ndarray
    difficulty: dict[str, Any]
    image_id: str


def render_synthetic_sample(*, config: SyntheticPanopticConfig, split: str, index: int) -> SyntheticSample:
    """Render image ``index`` of ``split`` ("train" or "validation"); depends only on ``(config, split, index)``."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split: must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], int(index)])
    height, width = config.height, config.width
    num_things = len(config.thing_classes)
    d = float(rng.uniform(*config.difficulty_range))

    # 1. Stuff: organic regions, each with its own class and texture.
    regions = int(rng.integers(1, min(config.max_stuff_regions, len(config.stuff_classes)) + 1))
    region_classes = rng.choice(len(config.stuff_classes), size=regions, replace=False)
    layout = stuff_layout(height=height, width=width, regions=regions, rng=rng)
    image = np.empty((height, width, 3), dtype=np.float32)
    ids = np.empty((height, width), dtype=np.int64)
    segments: list[tuple[int, int, int]] = []
    region_colors = np.empty((regions, 3), dtype=np.float32)
    for r, cls in enumerate(region_classes):
        name = config.stuff_classes[int(cls)]
        mask = layout == r
        image[mask] = stuff_texture(name, height=height, width=width, rng=rng)[mask]
        ids[mask] = r + 1
        segments.append((r + 1, num_things + int(cls), 0))
        region_colors[r] = STUFF_BASE_COLORS[name]
    next_id = regions + 1

    # 2. Clutter: strokes and dots in thing-like colours, drawn into the stuff and labelled as stuff.
    clutter = int(round(config.max_clutter * d * rng.uniform(0.5, 1.0)))
    if clutter:
        canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        palette = np.array(list(THING_BASE_COLORS.values()), dtype=np.float32)
        for _ in range(clutter):
            color = tuple(
                int(c) for c in np.clip(palette[rng.integers(len(palette))] + rng.uniform(-30, 30, 3), 0, 255)
            )
            x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
            if rng.random() < 0.5:
                length, theta = rng.uniform(5, 0.3 * width), rng.uniform(0, math.pi)
                xy = [x0, y0, x0 + length * math.cos(theta), y0 + length * math.sin(theta)]
                draw.line(xy, fill=color, width=int(rng.integers(1, 3)))
            else:
                r_dot = rng.uniform(0.5, 2.0)
                draw.ellipse([x0 - r_dot, y0 - r_dot, x0 + r_dot, y0 + r_dot], fill=color)
        image = np.asarray(canvas, dtype=np.float32).copy()

    color_similarity = config.max_color_similarity * d
    min_side = min(height, width)

    def paint(shape: str, cls: int, cy: float, cx: float, radius: float, seg_id: int, strength: float) -> int:
        """Draw one shape over ``image`` and ``ids``; returns the pixels it covered."""
        y0, y1 = max(int(math.floor(cy - radius - 1)), 0), min(int(math.ceil(cy + radius + 2)), height)
        x0, x1 = max(int(math.floor(cx - radius - 1)), 0), min(int(math.ceil(cx + radius + 2)), width)
        if y1 <= y0 or x1 <= x0:
            return 0
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
        angle = float(rng.uniform(0, 2 * math.pi))
        mask = shape_mask(shape, dy=dy, dx=dx, radius=radius, angle=angle, aspect=float(rng.uniform(0.4, 0.7)))
        if not mask.any():
            return 0
        under = region_colors[layout[min(int(cy), height - 1), min(int(cx), width - 1)]]
        base = np.array(THING_BASE_COLORS[shape], dtype=np.float32)
        color = (1.0 - strength) * base + strength * under + rng.uniform(-12, 12, 3).astype(np.float32)
        # Soft directional shading, so shapes look solid rather than flat stickers.
        light = 1.0 + 0.18 * (dx * math.cos(angle) + dy * math.sin(angle)) / max(radius, 1.0)
        patch = image[y0:y1, x0:x1]
        patch[mask] = np.clip(color[None, None, :] * light[..., None], 0, 255)[mask]
        ids[y0:y1, x0:x1][mask] = seg_id
        return int(mask.sum())

    # 3. Optional crowd: a cluster of tiny shapes of one class, annotated as one iscrowd segment (COCO convention).
    has_crowd = bool(rng.random() < config.crowd_probability)
    crowd_id = -1
    if has_crowd:
        cls = int(rng.integers(num_things))
        crowd_id, next_id = next_id, next_id + 1
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        spread = rng.uniform(0.06, 0.14) * min_side
        for _ in range(int(rng.integers(8, 20))):
            paint(
                config.thing_classes[cls],
                cls,
                cy + rng.normal(0, spread),
                cx + rng.normal(0, spread),
                float(rng.uniform(1.5, 3.5)),
                crowd_id,
                0.0,
            )
        segments.append((crowd_id, cls, 1))

    # 4. Things, in z-order: later objects occlude earlier ones.
    upper = config.min_objects + int(round((config.max_objects - config.min_objects) * d))
    count = int(rng.integers(max(config.min_objects, upper // 2), upper + 1))
    largest = config.max_object_size * min_side * (1.0 - 0.6 * d)
    smallest = config.min_object_size + (1.0 - d) * 0.35 * (largest - config.min_object_size)
    largest = max(largest, float(config.min_object_size))
    occlusion_p = config.max_occlusion * d
    centres: list[tuple[float, float, float]] = []
    drawn = 0
    thing_ids_drawn: list[int] = []
    for _ in range(count):
        cls = int(rng.integers(num_things))
        radius = 0.5 * math.exp(rng.uniform(math.log(smallest), math.log(max(largest, smallest))))
        if centres and rng.random() < occlusion_p:  # overlap an earlier object on purpose
            py, px, pr = centres[int(rng.integers(len(centres)))]
            theta, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 0.9) * (pr + radius)
            cy = float(np.clip(py + reach * math.sin(theta), 0, height - 1))
            cx = float(np.clip(px + reach * math.cos(theta), 0, width - 1))
        else:
            cy, cx = rng.uniform(radius * 0.5, height - radius * 0.5), rng.uniform(radius * 0.5, width - radius * 0.5)
        strength = color_similarity * float(rng.uniform(0.5, 1.0))
        covered = paint(config.thing_classes[cls], cls, cy, cx, radius, next_id, strength)
        if covered:
            segments.append((next_id, cls, 0))
            thing_ids_drawn.append(next_id)
            centres.append((cy, cx, radius))
            drawn += covered
            next_id += 1

    # 5. Remnants of occluded objects smaller than min_visible_pixels become void (the pixels stay painted).
    areas = np.bincount(ids.ravel(), minlength=next_id)
    tiny = [s for s in thing_ids_drawn if 0 < areas[s] < config.min_visible_pixels]
    if tiny:
        lut = np.arange(next_id, dtype=np.int64)
        lut[tiny] = 0
        ids = lut[ids]
        areas = np.bincount(ids.ravel(), minlength=next_id)

    # 6. Pixel noise.
    noise_std = config.max_noise_std * d
    if noise_std > 0:
        image += np.float32(noise_std) * rng.standard_normal(size=image.shape, dtype=np.float32)
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    segments_info = build_segments_info(ids, segments)
    visible = np.array([areas[s] for s in thing_ids_drawn if areas[s] > 0], dtype=np.int64)
    thing_cat = {s["id"] for s in segments_info if s["category_id"] < num_things and not s["iscrowd"]}
    instance_ids = np.where(np.isin(ids, np.fromiter(thing_cat, dtype=np.int64, count=len(thing_cat))), ids, 0)
    difficulty = {
        "difficulty": d,
        "num_things": int(visible.size),
        "num_stuff_regions": int(sum(1 for s in segments_info if s["category_id"] >= num_things)),
        "min_thing_area": int(visible.min()) if visible.size else 0,
        "mean_thing_area": float(visible.mean()) if visible.size else 0.0,
        "occlusion_fraction": float(1.0 - visible.sum() / drawn) if drawn else 0.0,
        "clutter_count": clutter,
        "color_similarity": float(color_similarity),
        "noise_std": float(noise_std),
        "has_crowd": bool(has_crowd and any(s["id"] == crowd_id for s in segments_info)),
    }
    return SyntheticSample(
        image=image_u8,
        panoptic_ids=ids,
        segments_info=segments_info,
        semantic=panoptic_to_semantic(ids, segments_info),
        instance_ids=instance_ids,
        difficulty=difficulty,
        image_id=f"synthetic-{split}-{int(index):06d}",
    )


def make_synthetic_panoptic_dataset(
    *, config: SyntheticPanopticConfig | None = None
) -> tuple["datasets.DatasetDict", SegmentationLabelInfo]:  # noqa: F821
    """Build the procedural data set as ``datasets.DatasetDict`` with ``train`` and ``validation`` splits.

    Columns: the standard ``image``, ``annotation`` (RGB id PNG), ``segments_info``, ``image_id``, plus the
    ``DIFFICULTY_COLUMNS``. Images and annotations are stored as PNG bytes in memory (about 0.1 MB per 256x256
    image); use ``save_to_disk`` to keep a large set.

    Returns:
        ``(dataset_dict, label_info)``; the label metadata is also in each split's ``info.description``.
    """
    from datasets import Value

    config = config or SyntheticPanopticConfig()
    label_info = SegmentationLabelInfo(id2label=config.id2label, thing_ids=config.thing_ids, name="ecom2f-synthetic")
    counts = {"train": config.num_train_images, "validation": config.num_validation_images}
    features = panoptic_features({name: Value(dtype) for name, dtype in DIFFICULTY_COLUMNS.items()})
    render = lambda split, index: render_synthetic_sample(config=config, split=split, index=index)  # noqa: E731
    return rendered_dataset_dict(render, counts=counts, features=features, label_info=label_info), label_info


def rendered_dataset_dict(render, *, counts: dict[str, int], features, label_info: SegmentationLabelInfo):
    """A ``DatasetDict`` of rendered samples: ``render(split, index) -> SyntheticSample`` for ``index < counts[split]``;
    the standard columns as PNG bytes plus every extra column of ``features`` read from ``sample.difficulty``."""
    from datasets import Dataset, DatasetDict

    extra = [name for name in features if name not in ("image", "annotation", "segments_info", "image_id")]
    splits = {}
    for split, count in counts.items():
        columns: dict[str, list] = {name: [] for name in features}
        for index in range(count):
            sample = render(split, index)
            columns["image"].append({"bytes": encode_png(sample.image), "path": None})
            columns["annotation"].append({"bytes": encode_png(panoptic_ids_to_rgb(sample.panoptic_ids)), "path": None})
            columns["segments_info"].append(sample.segments_info)
            columns["image_id"].append(sample.image_id)
            for name in extra:
                columns[name].append(sample.difficulty[name])
        splits[split] = label_info.attach_to(Dataset.from_dict(columns, features=features))
    return DatasetDict(splits)
