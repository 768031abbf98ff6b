"""Image sources of the depth probe: seeded arrays (images, semantic labels, per-pixel and per-image difficulty).

Two sources, each image a pure function of `(source, knobs, seed, split, index)`:

- `shapes`: this project's synthetic generator (`modeling_ecom2f.data.render_synthetic_sample`, the depth-benchmark
  settings unless overridden), semantic labels of its things and stuff; per-image difficulty = its
  `DIFFICULTY_COLUMNS`; no per-pixel difficulty. The extra knob `difficulty_modes` (a list of `[low, high]`
  ranges) makes the difficulty multi-modal: image `i` draws its difficulty from range `i % len(modes)`.
- `maze`: maze rooms (`modeling_ecom2f.data.maze_rooms`; walls void here, stuff in its panoptic form), per-pixel hop distance and per-image hop statistics.

Difficulty is for analysis only: the probe and the gate never read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modeling_ecom2f.data.maze_rooms import MazeRoomsConfig, render_maze_rooms
from modeling_ecom2f.data.synthetic import DIFFICULTY_COLUMNS, render_synthetic_sample
from modeling_ecom2f.data.synthetic_config import depth_benchmark_config

SOURCES = ("shapes", "maze")
#: Split codes: images of different splits come from different random streams.
SPLITS = {"train": 0, "gate": 1, "validation": 2}


@dataclass
class ProbeArrays:
    """A block of images.

    Attributes:
        images: `(N, H, W, 3)` uint8.
        labels: `(N, H, W)` uint8 semantic class, 255 = void.
        pixel_difficulty: `(N, H, W)` int16, -1 where not defined.
        difficulty: per-image columns, each `(N,)`.
        class_names: names of the semantic classes.
    """

    images: np.ndarray
    labels: np.ndarray
    pixel_difficulty: np.ndarray
    difficulty: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def save(self, path) -> None:
        np.savez_compressed(path, images=self.images, labels=self.labels, pixel_difficulty=self.pixel_difficulty,
                            class_names=np.asarray(self.class_names),
                            **{f"difficulty__{k}": v for k, v in self.difficulty.items()})

    @classmethod
    def load(cls, path) -> "ProbeArrays":
        with np.load(path) as data:
            return cls(images=data["images"], labels=data["labels"], pixel_difficulty=data["pixel_difficulty"],
                       difficulty={k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("difficulty__")},
                       class_names=[str(c) for c in data["class_names"]])


def _shapes_configs(size: int, seed: int, overrides: dict) -> list:
    overrides = dict(overrides)
    modes = overrides.pop("difficulty_modes", None)
    if modes is None:
        return [depth_benchmark_config(height=size, width=size, seed=seed, **overrides)]
    return [depth_benchmark_config(height=size, width=size, seed=seed, difficulty_range=tuple(m), **overrides)
            for m in modes]


def class_names(source: str, *, size: int = 128, overrides: dict | None = None) -> list[str]:
    """The semantic classes of a source."""
    if source == "shapes":
        return list(_shapes_configs(size, 0, overrides or {})[0].id2label.values())
    if source == "maze":
        return [f"room_{i}" for i in range(MazeRoomsConfig(size=size, **(overrides or {})).num_classes)]
    raise ValueError(f"source: must be one of {SOURCES}, got {source!r}")


def make_arrays(*, source: str, split: str, count: int, size: int = 128, seed: int = 0,
                overrides: dict | None = None, progress=None) -> ProbeArrays:
    """`count` images of `split` (`train`, `gate` or `validation`) of `source`.

    Args:
        overrides: knobs of the source (`SyntheticPanopticConfig` fields for `shapes`, `MazeRoomsConfig` fields
            for `maze`).
        progress: optional callable wrapping the index iterable (e.g. `tqdm`).
    """
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {tuple(SPLITS)}, got {split!r}")
    overrides = dict(overrides or {})
    names = class_names(source, size=size, overrides=overrides)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty((count, size, size), dtype=np.uint8)
    pixel = np.full((count, size, size), -1, dtype=np.int16)
    columns: dict[str, list] = {}
    indices = range(count) if progress is None else progress(range(count))
    if source == "shapes":
        # The generator has train/validation streams; the gate split reads validation images past 10**6.
        configs = _shapes_configs(size, seed, overrides)
        stream, base = {"train": ("train", 0), "gate": ("validation", 10**6), "validation": ("validation", 0)}[split]
        for i in indices:
            sample = render_synthetic_sample(config=configs[i % len(configs)], split=stream, index=base + i)
            images[i] = sample.image
            labels[i] = np.where(sample.semantic == 255, 255, sample.semantic).astype(np.uint8)
            for name in DIFFICULTY_COLUMNS:
                columns.setdefault(name, []).append(float(sample.difficulty[name]))
    else:
        config = MazeRoomsConfig(size=size, **overrides)
        for i in indices:
            sample = render_maze_rooms(config, np.random.default_rng([seed, SPLITS[split], i]))
            images[i], labels[i], pixel[i] = sample["image"], sample["semantic"], sample["pixel_hops"]
            for name, value in sample["difficulty"].items():
                columns.setdefault(name, []).append(float(value))
    difficulty = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    return ProbeArrays(images=images, labels=labels, pixel_difficulty=pixel, difficulty=difficulty, class_names=names)


__all__ = ["ProbeArrays", "SOURCES", "SPLITS", "class_names", "make_arrays"]
