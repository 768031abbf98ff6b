"""Every knob of the procedural data set in one typed, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["SyntheticPanopticConfig", "THING_SHAPES", "STUFF_TEXTURES", "depth_benchmark_config"]

#: The thing classes the renderer can draw (each is a shape; the class id is the position in the config's tuple).
THING_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "ellipse", "star", "hexagon")
#: The stuff classes the renderer can draw (each is a textured background region).
STUFF_TEXTURES: tuple[str, ...] = ("sky", "grass", "sand", "water")


@dataclass(frozen=True, kw_only=True)
class SyntheticPanopticConfig:
    """Parameters of :func:`make_synthetic_panoptic_dataset`.

    Each image draws its own ``difficulty`` ``d`` uniformly in ``difficulty_range``; the per-image knobs below
    interpolate between their easy value (``d = 0``) and their hard value (``d = 1``), so one data set mixes
    images a shallow encoder handles with images that need a deep one.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        num_train_images: Rows in the ``train`` split.
        num_validation_images: Rows in the ``validation`` split.
        seed: Master seed; image ``i`` of a split uses ``numpy.random.default_rng([seed, split, i])``, so any image
            can be regenerated alone and the same seed always gives the same bytes.
        thing_classes: Shapes used as thing classes (a subset of ``THING_SHAPES``); ids ``0..T-1``.
        stuff_classes: Textures used as stuff classes (a subset of ``STUFF_TEXTURES``); ids ``T..T+S-1``.
        min_objects: Fewest thing instances an image asks for (easy end).
        max_objects: Most thing instances an image asks for (hard end).
        min_object_size: Smallest object diameter in pixels (reached only by hard images).
        max_object_size: Largest object diameter as a fraction of ``min(height, width)`` (easy images).
        max_stuff_regions: Most stuff regions per image (at least one; never more than ``len(stuff_classes)``).
        max_occlusion: Probability, at ``d = 1``, that an object is placed on top of an earlier one.
        max_clutter: Distractor strokes and dots drawn into the stuff at ``d = 1`` (they stay labelled as stuff).
        max_color_similarity: At ``d = 1`` object colours are blended this far towards the stuff colour under
            them (0 = every class keeps its own colour).
        max_noise_std: Standard deviation of pixel noise (0..255 scale) at ``d = 1``.
        crowd_probability: Probability that an image also holds a crowd region (a cluster of tiny shapes of one
            class annotated as one ``iscrowd=1`` segment, as COCO does).
        min_visible_pixels: An object left with fewer visible pixels after occlusion becomes void.
        difficulty_range: ``(low, high)`` within ``[0, 1]`` from which each image's difficulty is drawn.
    """

    height: int = 256
    width: int = 256
    num_train_images: int = 800
    num_validation_images: int = 200
    seed: int = 0
    thing_classes: tuple[str, ...] = THING_SHAPES
    stuff_classes: tuple[str, ...] = STUFF_TEXTURES
    min_objects: int = 1
    max_objects: int = 24
    min_object_size: int = 4
    max_object_size: float = 0.45
    max_stuff_regions: int = 3
    max_occlusion: float = 0.6
    max_clutter: int = 40
    max_color_similarity: float = 0.75
    max_noise_std: float = 16.0
    crowd_probability: float = 0.1
    min_visible_pixels: int = 4
    difficulty_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 16:
                raise ValueError(f"{name}: must be an int >= 16, got {getattr(self, name)!r}")
        for name in ("num_train_images", "num_validation_images", "seed", "max_clutter"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}: must be an int >= 0, got {getattr(self, name)!r}")
        object.__setattr__(self, "thing_classes", tuple(self.thing_classes))
        object.__setattr__(self, "stuff_classes", tuple(self.stuff_classes))
        object.__setattr__(self, "difficulty_range", tuple(float(v) for v in self.difficulty_range))
        _check_names("thing_classes", self.thing_classes, THING_SHAPES)
        _check_names("stuff_classes", self.stuff_classes, STUFF_TEXTURES)
        if not isinstance(self.min_objects, int) or self.min_objects < 1:
            raise ValueError(f"min_objects: must be an int >= 1, got {self.min_objects!r}")
        if not isinstance(self.max_objects, int) or self.max_objects < self.min_objects:
            raise ValueError(
                f"max_objects: must be an int >= min_objects ({self.min_objects}), got {self.max_objects!r}"
            )
        if not isinstance(self.min_object_size, int) or self.min_object_size < 2:
            raise ValueError(f"min_object_size: must be an int >= 2 pixels, got {self.min_object_size!r}")
        if not 0.0 < self.max_object_size <= 1.0:
            raise ValueError(f"max_object_size: must be in (0, 1], got {self.max_object_size!r}")
        if self.max_object_size * min(self.height, self.width) < self.min_object_size:
            raise ValueError("max_object_size: the largest object would be smaller than min_object_size")
        if not isinstance(self.max_stuff_regions, int) or self.max_stuff_regions < 1:
            raise ValueError(f"max_stuff_regions: must be an int >= 1, got {self.max_stuff_regions!r}")
        for name in ("max_occlusion", "max_color_similarity", "crowd_probability"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.max_noise_std <= 128.0:
            raise ValueError(f"max_noise_std: must be in [0, 128], got {self.max_noise_std!r}")
        if not isinstance(self.min_visible_pixels, int) or self.min_visible_pixels < 1:
            raise ValueError(f"min_visible_pixels: must be an int >= 1, got {self.min_visible_pixels!r}")
        low, high = self.difficulty_range if len(self.difficulty_range) == 2 else (-1.0, -1.0)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                f"difficulty_range: must be (low, high) with 0 <= low <= high <= 1, got {self.difficulty_range!r}"
            )

    @property
    def id2label(self) -> dict[int, str]:
        """Category id -> name: things first (``0..T-1``), then stuff."""
        return dict(enumerate(self.thing_classes + self.stuff_classes))

    @property
    def thing_ids(self) -> tuple[int, ...]:
        """Ids of the thing categories."""
        return tuple(range(len(self.thing_classes)))

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _check_names(field_name: str, names: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not names:
        raise ValueError(f"{field_name}: must name at least one class")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"{field_name}: unknown classes {unknown}; choose from {list(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field_name}: classes must be unique, got {list(names)}")


def depth_benchmark_config(**overrides) -> SyntheticPanopticConfig:
    """The settings of the main job's benchmark, where encoder depth matters per image (`run_eco_m2f.py`).

    Compared with the defaults, things are fewer and larger (1-5 objects of at least 14 px at 128x128, little
    occlusion, no crowd or clutter strokes), so a small parent trained on a CPU recognises them; the per-image
    difficulty ``d`` mostly drives camouflage (object colour blended up to 70% towards the stuff under it) and pixel
    noise (up to std 40), which a deeper encoder can average out and a shallow one cannot. Both are visible in the
    image itself (no marker or channel encodes ``d``).
    """
    values = dict(height=128, width=128, num_train_images=1500, num_validation_images=600, min_objects=1,
                  max_objects=5, min_object_size=14, max_object_size=0.45, max_stuff_regions=3, max_occlusion=0.2,
                  max_clutter=0, max_color_similarity=0.7, max_noise_std=40.0, crowd_probability=0.0)
    values.update(overrides)
    return SyntheticPanopticConfig(**values)
