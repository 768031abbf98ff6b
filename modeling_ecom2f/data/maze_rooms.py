"""Maze rooms: a segmentation task whose per-pixel answer is a number of hops away from the evidence.

An `n x n` maze is a random spanning tree of the cell grid (Kruskal: shuffled edges joined by union-find, which gives
shorter corridors than a depth-first maze). Cutting `rooms - 1` tree edges splits it into rooms. Every wall is drawn
alike, so a room boundary looks like any internal wall. One whole cell per room is painted in the room's class colour
(the marker); every free pixel of the room belongs to that class, walls are void. To read a pixel's class a model has
to follow open passages from the pixel to its room's marker: a flood fill over a branching tree (no pointer-doubling
shortcut). Markers are placed, among `marker_trials` random placements, where a guess of the nearest marker that
ignores walls is worst, so a spatial guess does not solve the task.

Recorded for analysis only (no model input uses them): per pixel, the hop distance (cells along open passages) from
the pixel's cell to its room's marker; per image `hops` (the largest such distance), `mean_hops`, `rooms`, `cells`
(maze side) and `nearest_marker_accuracy` (free cells the wall-blind nearest-marker guess gets right).

`render_maze_rooms` draws one image from a generator; `maze_rooms_dataset` wraps it in the project's panoptic
format (rooms are thing instances of their marker's class, walls are stuff).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .labels import SegmentationLabelInfo
from .panoptic_format import build_segments_info, panoptic_features, panoptic_to_semantic
from .synthetic import SyntheticSample, rendered_dataset_dict

#: Marker colours, one per class (RGB); free cells are light grey, walls dark.
MARKER_COLORS = ((220, 40, 40), (40, 170, 40), (40, 70, 220), (225, 190, 30), (170, 50, 190), (30, 180, 190))
FREE_COLOR = (200, 200, 200)
WALL_COLOR = (35, 35, 35)
VOID = 255


@dataclass(frozen=True, kw_only=True)
class MazeRoomsConfig:
    """Knobs of the maze-rooms images.

    Args:
        size: image side in pixels.
        min_cells, max_cells: maze side in cells, drawn per image.
        min_rooms, max_rooms: rooms per image (each a distinct class; at most `num_classes`).
        num_classes: marker classes.
        wall: wall thickness in pixels.
        min_room_cells: smallest room, in cells.
        marker_trials: random marker placements tried; the one the nearest-marker guess gets most wrong is kept.
        cell_pitch: cell size in pixels (walls included), the maze placed on a grid of that pitch (e.g. 16: one
            cell per 1/16 token); `None`: the largest pitch that fits the image.
        num_train_images, num_validation_images: rows of the panoptic data set's splits.
        seed: master seed; image `i` of a split uses `numpy.random.default_rng([seed, split, i])`.
    """

    size: int = 128
    min_cells: int = 5
    max_cells: int = 7
    min_rooms: int = 2
    max_rooms: int = 4
    num_classes: int = 4
    wall: int = 3
    min_room_cells: int = 3
    marker_trials: int = 16
    cell_pitch: int | None = None
    num_train_images: int = 1500
    num_validation_images: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.min_cells <= self.max_cells:
            raise ValueError(f"min_cells/max_cells: need 2 <= min_cells <= max_cells, got {self.min_cells}, {self.max_cells}")
        if not 1 <= self.min_rooms <= self.max_rooms <= min(self.num_classes, len(MARKER_COLORS)):
            raise ValueError(f"max_rooms: need 1 <= min_rooms <= max_rooms <= num_classes <= {len(MARKER_COLORS)}, "
                             f"got {self.min_rooms}, {self.max_rooms}, {self.num_classes}")
        if self.max_rooms * self.min_room_cells > self.min_cells ** 2:
            raise ValueError("min_room_cells: max_rooms rooms of min_room_cells cells do not fit the smallest maze")
        if self.wall < 1 or (self.size - self.wall) // self.max_cells <= self.wall + 1:
            raise ValueError(f"wall: cells of the largest maze would have no interior (size {self.size}, "
                             f"wall {self.wall}, max_cells {self.max_cells})")
        if self.cell_pitch is not None and (self.cell_pitch <= self.wall + 1
                                            or self.max_cells * self.cell_pitch + self.wall > self.size):
            raise ValueError(f"cell_pitch: {self.max_cells} cells of {self.cell_pitch} px and a {self.wall} px wall "
                             f"do not fit {self.size} px, or the cells have no interior")
        for name in ("num_train_images", "num_validation_images", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}: must be an int >= 0, got {getattr(self, name)!r}")
        if self.marker_trials < 1:
            raise ValueError(f"marker_trials: must be >= 1, got {self.marker_trials}")


def _find(parent: list[int], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _components(num_cells: int, edges: list[tuple[int, int]]) -> np.ndarray:
    parent = list(range(num_cells))
    for a, b in edges:
        parent[_find(parent, a)] = _find(parent, b)
    roots = [_find(parent, a) for a in range(num_cells)]
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def kruskal_tree(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Edges `(a, b)` (cell ids `row * n + col`) of a random spanning tree of the `n x n` grid."""
    edges = [(r * n + c, r * n + c + 1) for r in range(n) for c in range(n - 1)]
    edges += [(r * n + c, (r + 1) * n + c) for r in range(n - 1) for c in range(n)]
    parent = list(range(n * n))
    tree = []
    for index in rng.permutation(len(edges)):
        a, b = edges[index]
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
            tree.append((a, b))
    return tree


def hop_distances(num_cells: int, edges: list[tuple[int, int]], sources: list[int]) -> np.ndarray:
    """Breadth-first distance (in edges) from the nearest of `sources` to every cell; -1 where unreachable."""
    neighbours: list[list[int]] = [[] for _ in range(num_cells)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    distance = np.full(num_cells, -1, dtype=np.int64)
    queue = deque(sources)
    distance[sources] = 0
    while queue:
        a = queue.popleft()
        for b in neighbours[a]:
            if distance[b] < 0:
                distance[b] = distance[a] + 1
                queue.append(b)
    return distance


def _split_rooms(n: int, tree: list[tuple[int, int]], rooms: int, min_cells: int, rng: np.random.Generator):
    """Cut `rooms - 1` tree edges one by one, each drawn among the edges whose cut leaves every room with at least
    `min_cells` cells."""
    kept = list(tree)
    for _ in range(rooms - 1):
        allowed = [i for i in range(len(kept))
                   if np.bincount(_components(n * n, kept[:i] + kept[i + 1:])).min() >= min_cells]
        if not allowed:
            raise RuntimeError(f"could not split a {n}x{n} maze into {rooms} rooms of >= {min_cells} cells")
        kept.pop(int(rng.choice(allowed)))
    return kept, _components(n * n, kept)


def _nearest_marker_accuracy(n: int, room: np.ndarray, markers: list[int]) -> float:
    rows, cols = np.divmod(np.arange(n * n), n)
    marker_rows, marker_cols = np.divmod(np.asarray(markers), n)
    dist = (rows[:, None] - marker_rows[None]) ** 2 + (cols[:, None] - marker_cols[None]) ** 2  # (cells, rooms)
    return float((dist.argmin(axis=1) == room).mean())


def render_maze_rooms(config: MazeRoomsConfig, rng: np.random.Generator) -> dict:
    """One maze-rooms image.

    Returns:
        `image` `(size, size, 3)` uint8, `semantic` `(size, size)` uint8 (marker class, 255 on walls and margins),
        `pixel_hops` `(size, size)` int16 (hop distance of the pixel's cell from its marker, -1 on void) and
        `difficulty` (the per-image columns of the module docstring).
    """
    n = int(rng.integers(config.min_cells, config.max_cells + 1))
    rooms = int(rng.integers(config.min_rooms, config.max_rooms + 1))
    for attempt in range(100):  # a greedy split can corner itself in a small maze: then draw another maze
        try:
            kept, room = _split_rooms(n, kruskal_tree(n, rng), rooms, config.min_room_cells, rng)
            break
        except RuntimeError:
            if attempt == 99:
                raise
    best = None
    for _ in range(config.marker_trials):
        markers = [int(rng.choice(np.flatnonzero(room == r))) for r in range(rooms)]
        accuracy = _nearest_marker_accuracy(n, room, markers)
        if best is None or accuracy < best[0]:
            best = (accuracy, markers)
    nearest_accuracy, markers = best
    classes = rng.choice(config.num_classes, size=rooms, replace=False)
    hops = hop_distances(n * n, kept, markers)

    size, wall = config.size, config.wall
    if config.cell_pitch is None:
        pitch = (size - wall) // n
        offset = (size - (n * pitch + wall)) // 2
    else:  # on the pitch grid: cell borders fall on token borders of stride `pitch`
        pitch = config.cell_pitch
        offset = pitch * ((size // pitch - n) // 2)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = WALL_COLOR
    semantic = np.full((size, size), VOID, dtype=np.uint8)
    pixel_hops = np.full((size, size), -1, dtype=np.int16)

    def paint(rows: slice, cols: slice, cell: int, color) -> None:
        image[rows, cols] = color
        semantic[rows, cols] = classes[room[cell]]
        pixel_hops[rows, cols] = max(int(pixel_hops[rows, cols].max()), int(hops[cell]))

    for cell in range(n * n):
        r, c = divmod(cell, n)
        top, left = offset + r * pitch + wall, offset + c * pitch + wall
        color = MARKER_COLORS[classes[room[cell]]] if cell in markers else FREE_COLOR
        paint(slice(top, top + pitch - wall), slice(left, left + pitch - wall), cell, color)
    for a, b in kept:  # open passages: the wall between two cells of one room becomes free
        (ra, ca), (rb, _) = divmod(a, n), divmod(b, n)  # b is right of or below a
        top, left = offset + ra * pitch + wall, offset + ca * pitch + wall
        if ra == rb:  # horizontal neighbours: open the vertical wall at the right of `a`
            rows, cols = slice(top, top + pitch - wall), slice(left + pitch - wall, left + pitch)
        else:
            rows, cols = slice(top + pitch - wall, top + pitch), slice(left, left + pitch - wall)
        far = a if hops[a] >= hops[b] else b
        paint(rows, cols, far, FREE_COLOR)
    difficulty = {"hops": int(hops.max()), "mean_hops": float(hops.mean()), "rooms": rooms, "cells": n,
                  "nearest_marker_accuracy": nearest_accuracy}
    return {"image": image, "semantic": semantic, "pixel_hops": pixel_hops, "difficulty": difficulty}


#: Per-image difficulty columns of the maze-rooms data set (name -> datasets dtype); `difficulty` = `hops`.
MAZE_DIFFICULTY_COLUMNS: dict[str, str] = {"difficulty": "float32", "hops": "int32", "mean_hops": "float32",
                                           "rooms": "int32", "cells": "int32", "nearest_marker_accuracy": "float32"}
_SPLIT_CODES = {"train": 0, "validation": 1}


def maze_benchmark_config(**overrides) -> MazeRoomsConfig:
    """The settings that met the depth-benchmark pilot's go criterion (docs/depth_benchmark_pilot.md, route 2b):
    128 px, 4-6 cells on a 16-px grid (one cell per 1/16 token), 1-4 rooms (a one-room maze is solved by its colour,
    the others need the flood fill), 1500 training and 600 validation images."""
    values = dict(size=128, min_cells=4, max_cells=6, min_rooms=1, max_rooms=4, cell_pitch=16)
    values.update(overrides)
    return MazeRoomsConfig(**values)


def maze_label_info(config: MazeRoomsConfig) -> SegmentationLabelInfo:
    """Marker classes `0..num_classes-1` are things (`room_0`, ...); class `num_classes` is the stuff `wall`."""
    names = {i: f"room_{i}" for i in range(config.num_classes)} | {config.num_classes: "wall"}
    return SegmentationLabelInfo(id2label=names, thing_ids=tuple(range(config.num_classes)), name="ecom2f-maze-rooms")


def render_maze_rooms_sample(*, config: MazeRoomsConfig, split: str, index: int) -> SyntheticSample:
    """Image `index` of `split` in the panoptic format: each room a thing instance of its marker's class, walls and
    margins one `wall` stuff segment; depends only on `(config, split, index)`."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split: must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    drawn = render_maze_rooms(config, np.random.default_rng([config.seed, _SPLIT_CODES[split], int(index)]))
    semantic = drawn["semantic"].astype(np.int64)
    wall_id = config.num_classes + 1
    # rooms have distinct classes, so the class identifies the room: segment id = class + 1
    ids = np.where(semantic == VOID, wall_id, semantic + 1)
    segments = [(int(c) + 1, int(c), 0) for c in np.unique(semantic) if c != VOID] + [(wall_id, config.num_classes, 0)]
    segments_info = build_segments_info(ids, segments)
    difficulty = dict(drawn["difficulty"], difficulty=float(drawn["difficulty"]["hops"]))
    return SyntheticSample(image=drawn["image"], panoptic_ids=ids, segments_info=segments_info,
                           semantic=panoptic_to_semantic(ids, segments_info),
                           instance_ids=np.where(semantic == VOID, 0, ids), difficulty=difficulty,
                           image_id=f"maze-{split}-{int(index):06d}")


def make_maze_rooms_panoptic_dataset(*, config: MazeRoomsConfig | None = None):
    """The maze-rooms data set as a `datasets.DatasetDict` (`train`, `validation`) with the standard columns
    (`image`, `annotation`, `segments_info`, `image_id`) plus `MAZE_DIFFICULTY_COLUMNS`; returns
    `(dataset_dict, label_info)`."""
    from datasets import Value

    config = config or MazeRoomsConfig()
    label_info = maze_label_info(config)
    features = panoptic_features({name: Value(dtype) for name, dtype in MAZE_DIFFICULTY_COLUMNS.items()})
    counts = {"train": config.num_train_images, "validation": config.num_validation_images}
    render = lambda split, index: render_maze_rooms_sample(config=config, split=split, index=index)  # noqa: E731
    return rendered_dataset_dict(render, counts=counts, features=features, label_info=label_info), label_info


__all__ = ["MAZE_DIFFICULTY_COLUMNS", "MazeRoomsConfig", "hop_distances", "kruskal_tree",
           "make_maze_rooms_panoptic_dataset", "maze_benchmark_config", "maze_label_info", "render_maze_rooms",
           "render_maze_rooms_sample"]
