"""Shared helpers for the data and metrics tests: random panoptic maps and their torchmetrics encoding."""

from __future__ import annotations

import numpy as np
import torch

THINGS = (0, 1, 2)
STUFF = (3, 4)


def _random_box(rng: np.random.Generator, size: int, low: int, high: int) -> tuple[slice, slice]:
    """A random rectangle inside a `size` x `size` map, each side in [low, high) pixels."""
    h, w = rng.integers(low, high, size=2)
    y, x = rng.integers(0, size - h), rng.integers(0, size - w)
    return slice(y, y + h), slice(x, x + w)


def random_reference(rng: np.random.Generator, *, size: int = 32, crowd: bool = True, void: bool = True) -> dict:
    """A random panoptic ground truth: stuff bands, rectangles of things on top, optional void and crowd patches.

    Returns ``{"segmentation": (size, size) int64 tensor, "segments_info": [{id, category_id, iscrowd}]}``.
    """
    seg = np.zeros((size, size), np.int64)
    info = []
    next_id = 1
    cut = int(rng.integers(4, size - 4))
    for rows, cat in ((slice(0, cut), int(rng.choice(STUFF))), (slice(cut, size), int(rng.choice(STUFF)))):
        seg[rows] = next_id
        info.append({"id": next_id, "category_id": cat, "iscrowd": 0})
        next_id += 1
    for _ in range(int(rng.integers(0, 7))):
        seg[_random_box(rng, size, 2, size // 2)] = next_id
        crowd_flag = int(crowd and rng.random() < 0.15)
        info.append({"id": next_id, "category_id": int(rng.choice(THINGS)), "iscrowd": crowd_flag})
        next_id += 1
    if void:
        for _ in range(int(rng.integers(0, 3))):
            seg[_random_box(rng, size, 1, size // 3)] = 0
    present = set(np.unique(seg).tolist())
    info = [s for s in info if s["id"] in present]
    return {"segmentation": torch.from_numpy(seg), "segments_info": info}


def perturbed_prediction(rng: np.random.Generator, reference: dict, *, void: bool = True) -> dict:
    """A prediction in ``post_process_panoptic_segmentation`` form derived from ``reference`` with errors:
    shifted and eroded segments, wrong labels, dropped and spurious segments, split stuff, optional void holes."""
    ref = reference["segmentation"].numpy()
    size = ref.shape[0]
    cats = {s["id"]: s["category_id"] for s in reference["segments_info"]}
    pred = np.zeros_like(ref)
    info = []
    next_id = 1
    for seg_id, cat in cats.items():
        mask = ref == seg_id
        if rng.random() < 0.15:  # dropped
            continue
        if rng.random() < 0.4:  # shifted
            mask = np.roll(mask, tuple(int(v) for v in rng.integers(-3, 4, size=2)), axis=(0, 1))
        label = cat if rng.random() > 0.15 else int(rng.choice(THINGS + STUFF))
        pred[mask] = next_id
        info.append({"id": next_id, "label_id": label, "was_fused": False, "score": float(rng.random())})
        next_id += 1
    for _ in range(int(rng.integers(0, 3))):  # spurious segments (and a second segment of a stuff class)
        pred[_random_box(rng, size, 2, size // 3)] = next_id
        info.append({"id": next_id, "label_id": int(rng.choice(THINGS + STUFF)), "was_fused": False, "score": 0.5})
        next_id += 1
    if void:
        for _ in range(int(rng.integers(0, 3))):
            pred[_random_box(rng, size, 1, size // 2)] = 0
        if rng.random() < 0.2:
            pred[pred == 0] = -1  # the post-processor's "nothing kept" value
    present = set(np.unique(pred).tolist())
    info = [s for s in info if s["id"] in present]
    return {"segmentation": torch.from_numpy(pred).to(torch.int32), "segments_info": info}


def to_torchmetrics_input(entry: dict, *, crowd_as_void: bool = True) -> torch.Tensor:
    """``(H, W, 2)`` (category, instance) tensor as torchmetrics' PanopticQuality wants; void -> an unknown category."""
    seg = entry["segmentation"].numpy().astype(np.int64)
    void_cat = 1 + max(THINGS + STUFF)
    out = np.zeros(seg.shape + (2,), np.int64)
    out[..., 0] = void_cat
    for s in entry["segments_info"]:
        if crowd_as_void and s.get("iscrowd", 0):
            continue
        mask = seg == s["id"]
        out[mask, 0] = s.get("label_id", s.get("category_id"))
        out[mask, 1] = s["id"]
    return torch.from_numpy(out)


# ---- on-disk fixtures in each real data set's exact layout -------------------------------------------------------


def _save(path, array, **kwargs):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _photo(rng, height, width):
    return rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)


def write_coco_panoptic(root, *, num_images: int = 3, size: tuple[int, int] = (24, 32)) -> dict:
    """``root/val2017/*.jpg``, ``root/annotations/panoptic_val2017.json`` + ``panoptic_val2017/*.png``.

    Category ids are COCO-like and non-contiguous (1 person, 3 car: things; 184 sky, 193 grass: stuff). Segment ids
    are large (RGB-encoded). Returns the written ``{"json": path, "expected": {image_id: (ids, segments_info)}}``.
    """
    import json

    rng = np.random.default_rng(0)
    height, width = size
    categories = [
        {"id": 1, "name": "person", "isthing": 1},
        {"id": 3, "name": "car", "isthing": 1},
        {"id": 184, "name": "sky", "isthing": 0},
        {"id": 193, "name": "grass", "isthing": 0},
    ]
    images, annotations, expected = [], [], {}
    for k in range(num_images):
        image_id = 139 + k
        ids = np.zeros((height, width), np.int64)
        info = []
        layout = [
            (slice(0, height // 2), slice(None), 184, 0),
            (slice(height // 2, height), slice(None), 193, 0),
            (slice(2, 10), slice(3, 9 + k), 1, 0),
            (slice(12, 20), slice(15, 27), 3, 0),
            (slice(14, 18), slice(28, 31), 3, 1),
        ]
        for n, (rows, cols, cat, crowd) in enumerate(layout):
            seg_id = 0x10203 * (n + 1) + 7 * k  # big ids, as COCO's RGB colours give
            ids[rows, cols] = seg_id
            info.append({"id": seg_id, "category_id": cat, "iscrowd": crowd})
        ids[0, :4] = 0  # a little void
        for s in info:
            ys, xs = np.nonzero(ids == s["id"])
            s["area"] = int(ys.size)
            s["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        name = f"{image_id:012d}"
        _save(root / "val2017" / f"{name}.jpg", _photo(rng, height, width), quality=95)
        rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
        _save(root / "annotations" / "panoptic_val2017" / f"{name}.png", rgb)
        images.append({"id": image_id, "file_name": f"{name}.jpg", "height": height, "width": width})
        annotations.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": info})
        expected[str(image_id)] = (ids, info)
    path = root / "annotations" / "panoptic_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return {"json": path, "image_dir": root / "val2017", "expected": expected}


def write_ade20k(root, *, size: tuple[int, int] = (20, 24)) -> dict:
    """``ADEChallengeData2016`` with 150 class names, semantic and instance annotations for 2 validation images.

    Semantic: rows 0-9 wall (1), rows 10-19 floor (4); a person region (13) with two instances (instance category
    1 -> semantic 13) and a person-labelled patch without instance (stays void).
    """
    rng = np.random.default_rng(1)
    height, width = size
    names = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0.01\t10\t1\tclass {i}" for i in range(1, 151)]
    names[1], names[4], names[13] = "1\t0.1\t1\t1\twall", "4\t0.1\t1\t1\tfloor, flooring", "13\t0.1\t1\t1\tperson"
    (root / "objectInfo150.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "objectInfo150.txt").write_text("\n".join(names) + "\n")
    (root / "ade20k_instance_catid_mapping.txt").write_text(
        "Instancce100 SceneParsing150 FullADE20K\n1 13 person\n2 20 chair\n"
    )
    for k in range(2):
        name = f"ADE_val_{k + 1:08d}"
        sem = np.full((height, width), 1, np.uint8)
        sem[height // 2 :] = 4
        sem[2:8, 2:8] = 13
        sem[2:8, 10:16] = 13
        sem[12:16, 18:22] = 13  # person pixels without an instance -> void
        sem[0, 0] = 0  # "other" -> void
        ins = np.zeros((height, width, 3), np.uint8)
        ins[2:8, 2:8] = (1, 1, 0)
        ins[2:8, 10:16] = (1, 2 + k, 0)
        _save(root / "images" / "validation" / f"{name}.jpg", _photo(rng, height, width))
        _save(root / "annotations" / "validation" / f"{name}.png", sem)
        _save(root / "annotations_instance" / "validation" / f"{name}.png", ins)
    return {"root": root}


def write_cityscapes(root, *, size: tuple[int, int] = (16, 32)) -> dict:
    """``leftImg8bit``/``gtFine`` for 2 val images: sky (23) top, road (7) bottom, two cars (26000, 26001), a car
    group without instance id (crowd), an "unlabeled" (0) patch and an ego-vehicle (1) patch (void)."""
    rng = np.random.default_rng(2)
    height, width = size
    for k, city in enumerate(("frankfurt", "lindau")):
        stem = f"{city}_000000_{k:06d}"
        labels = np.full((height, width), 23, np.uint8)
        labels[height // 2 :] = 7
        inst = labels.astype(np.uint16)
        for n, cols in enumerate((slice(2, 8), slice(10, 16))):
            labels[8:14, cols] = 26
            inst[8:14, cols] = 26000 + n
        labels[9:12, 20:26] = 26
        inst[9:12, 20:26] = 26  # group: no instance id
        labels[0:2, 0:4] = 0
        inst[0:2, 0:4] = 0
        labels[14:, 28:] = 1
        inst[14:, 28:] = 1
        _save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", _photo(rng, height, width))
        _save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", labels)
        _save(root / "gtFine" / "val" / city / f"{stem}_gtFine_instanceIds.png", inst)
    return {"root": root}


def gradient_image(height: int, width: int):
    """A smooth RGB test image (PIL) of `height` x `width`: colour ramps along x, y and the diagonal."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 2, y * 3, (x + y) % 256], -1).astype(np.uint8))
