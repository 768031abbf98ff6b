"""Vectorised drawing primitives of the procedural data set: shape masks, stuff textures, region layouts.

Everything is NumPy on a local pixel grid (no per-pixel Python loops); randomness comes only from the
``numpy.random.Generator`` passed in, so a seed fixes every byte.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["THING_BASE_COLORS", "STUFF_BASE_COLORS", "shape_mask", "stuff_texture", "stuff_layout", "smooth_noise"]

#: Base RGB colour of each thing class: far apart in colour space, so easy images are easy.
THING_BASE_COLORS: dict[str, tuple[int, int, int]] = {
    "circle": (220, 50, 50),
    "square": (245, 205, 35),
    "triangle": (150, 60, 205),
    "ellipse": (250, 125, 25),
    "star": (245, 245, 245),
    "hexagon": (35, 35, 45),
}
#: Base RGB colour of each stuff class (its texture varies around it).
STUFF_BASE_COLORS: dict[str, tuple[int, int, int]] = {
    "sky": (115, 165, 230),
    "grass": (70, 145, 60),
    "sand": (210, 188, 140),
    "water": (35, 105, 150),
}
# Polygon shapes: (number of spikes, inner radius / outer radius). A regular n-gon is the star whose inner vertices
# sit on the edge midpoints, i.e. inner ratio cos(pi / n).
_POLYGONS: dict[str, tuple[int, float]] = {
    "triangle": (3, math.cos(math.pi / 3)),
    "square": (4, math.cos(math.pi / 4)),
    "hexagon": (6, math.cos(math.pi / 6)),
    "star": (5, 0.45),
}


def shape_mask(shape: str, *, dy: np.ndarray, dx: np.ndarray, radius: float, angle: float, aspect: float) -> np.ndarray:
    """Boolean mask of one shape on a local grid.

    Args:
        shape: One of ``THING_BASE_COLORS``.
        dy: ``(h, 1)`` row offsets from the shape centre, in pixels.
        dx: ``(1, w)`` column offsets from the shape centre, in pixels.
        radius: Circumradius in pixels.
        angle: Rotation in radians.
        aspect: Minor/major axis ratio (ellipse only).

    Returns:
        ``(h, w)`` bool mask.
    """
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    u = dx * cos_a + dy * sin_a
    v = dy * cos_a - dx * sin_a
    if shape == "circle":
        return u * u + v * v <= radius * radius
    if shape == "ellipse":
        return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0
    spikes, inner = _POLYGONS[shape]
    # Fold the point into the first half-sector [0, pi/n] and test it against the edge from the outer vertex
    # (R, 0) to the inner vertex at angle pi/n: the point is inside when it lies on the centre's side of that edge.
    sector = 2.0 * math.pi / spikes
    rho = np.hypot(u, v)
    alpha = np.mod(np.arctan2(v, u), sector)
    alpha = np.minimum(alpha, sector - alpha)
    px, py = rho * np.cos(alpha), rho * np.sin(alpha)
    qx, qy = radius * inner * math.cos(sector / 2), radius * inner * math.sin(sector / 2)
    return (qx - radius) * py - qy * (px - radius) >= 0.0


def smooth_noise(rng: np.random.Generator, *, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise ``(height, width)`` float32, amplitude about 1 (a coarse grid upsampled bilinearly)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR), dtype=np.float32)


def stuff_texture(name: str, *, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A textured ``(height, width, 3)`` float32 fill (0..255 scale) for one stuff class."""
    base = np.array(STUFF_BASE_COLORS[name], dtype=np.float32) + rng.uniform(-15, 15, size=3).astype(np.float32)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    phase = rng.uniform(0, 2 * math.pi)
    if name == "sky":  # vertical gradient with soft clouds
        shade = 45.0 * ys / height + 10.0 * smooth_noise(rng, height=height, width=width, cells=4)
    elif name == "grass":  # blades: vertical stripes that sway
        period = rng.uniform(4.0, 9.0)
        shade = 18.0 * np.sin(2 * math.pi * xs / period + phase + 0.8 * np.sin(ys / 9.0)) + 6.0 * smooth_noise(
            rng, height=height, width=width, cells=8
        )
    elif name == "sand":  # speckles on a mottled base
        speckle = (rng.random((height, width)) < 0.06).astype(np.float32)
        shade = -45.0 * speckle + 12.0 * smooth_noise(rng, height=height, width=width, cells=6)
    else:  # water: horizontal waves
        period = rng.uniform(6.0, 14.0)
        shade = 22.0 * np.sin(2 * math.pi * ys / period + 2.0 * np.sin(2 * math.pi * xs / (width / 2.0) + phase))
    return np.clip(base[None, None, :] + shade[..., None], 0.0, 255.0).astype(np.float32)


def stuff_layout(*, height: int, width: int, regions: int, rng: np.random.Generator) -> np.ndarray:
    """Split the image into ``regions`` organic regions: a Voronoi diagram of random seeds on a wavy-warped grid.

    Returns:
        ``(height, width)`` int64 region index in ``[0, regions)``.
    """
    if regions == 1:
        return np.zeros((height, width), dtype=np.int64)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    amp = rng.uniform(0.03, 0.08) * min(height, width)
    wy = ys + amp * np.sin(2 * math.pi * xs / (width * rng.uniform(0.3, 0.8)) + rng.uniform(0, 6.3))
    wx = xs + amp * np.sin(2 * math.pi * ys / (height * rng.uniform(0.3, 0.8)) + rng.uniform(0, 6.3))
    seeds = rng.uniform(0, 1, size=(regions, 2)) * np.array([height, width], dtype=np.float32)
    dist = (wy[..., None] - seeds[:, 0]) ** 2 + (wx[..., None] - seeds[:, 1]) ** 2
    return np.argmin(dist, axis=-1).astype(np.int64)
