"""From data set rows to model inputs (``pixel_values``, ``pixel_mask``, ``mask_labels``, ``class_labels``) and to
evaluation ground truth.

The collator decodes each row, optionally augments it, turns the panoptic map into the processor's
(instance map + ``instance_id_to_semantic_id``) form, and calls the image processor: transformers' stock
``Mask2FormerImageProcessor`` (torchvision or PIL backend) or any object with the same ``__call__``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .augmentation import EcoMask2FormerTrainAugmentation
from .errors import SegmentationDataError
from .labels import SegmentationLabelInfo
from .panoptic_format import annotation_to_ids, open_image_file, panoptic_to_semantic, validate_panoptic

__all__ = ["EcoMask2FormerCollator", "make_collate_fn", "decode_row", "panoptic_reference", "semantic_reference"]


def _rgb(value: Any, *, image_id: object) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a PIL image, array, path or undecoded datasets image."""
    from PIL import Image

    from .panoptic_format import _open_bytes

    if isinstance(value, Mapping):
        value = _open_bytes(value["bytes"], image_id=image_id) if value.get("bytes") else value.get("path")
    if isinstance(value, str):
        value = open_image_file(value, image_id=image_id, what="image")
    if isinstance(value, Image.Image):
        value = value.convert("RGB")
    array = np.array(value)  # a writable copy (torch.from_numpy in the processor warns on read-only arrays)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise SegmentationDataError(image_id=image_id, problem=f"image has unusable shape {array.shape}")
    return array.astype(np.uint8, copy=False)


def decode_row(
    row: Mapping[str, Any], *, label_info: SegmentationLabelInfo | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], str]:
    """Decode and check one standard row: ``(image (H, W, 3) uint8, ids (H, W) int64, segments_info, image_id)``."""
    image_id = str(row.get("image_id", "?"))
    image = _rgb(row["image"], image_id=image_id)
    ids = annotation_to_ids(row["annotation"], image_id=image_id)
    info = list(row.get("segments_info") or [])
    validate_panoptic(
        ids,
        info,
        image_id=image_id,
        image_size=image.shape[:2],
        category_ids=None if label_info is None else label_info.id2label,
        require_listed_present=False,
    )
    return image, ids, info, image_id


def panoptic_reference(row: Mapping[str, Any], *, label_info: SegmentationLabelInfo | None = None) -> dict[str, Any]:
    """Ground truth of one row in the metrics' form: ``{"segmentation": (H, W) LongTensor (0 = void),
    "segments_info": [{"id", "category_id", "iscrowd"}], "image_id"}`` at the original resolution."""
    import torch

    _, ids, info, image_id = decode_row(row, label_info=label_info)
    segments = [
        {"id": int(s["id"]), "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0))} for s in info
    ]
    return {"segmentation": torch.from_numpy(ids), "segments_info": segments, "image_id": image_id}


def semantic_reference(row: Mapping[str, Any], *, ignore_index: int = 255) -> "torch.Tensor":  # noqa: F821
    """Semantic ground truth ``(H, W)`` LongTensor (category per pixel, ``ignore_index`` on void)."""
    import torch

    _, ids, info, _ = decode_row(row)
    return torch.from_numpy(panoptic_to_semantic(ids, info, ignore_index=ignore_index))


class EcoMask2FormerCollator:
    """``collate_fn`` for a DataLoader over standard rows.

    Args:
        image_processor: ``Mask2FormerImageProcessor`` (or the project's subclass, or any object accepting
            ``(images=, segmentation_maps=, instance_id_to_semantic_id=, return_tensors="pt", **kwargs)``).
        augmentation: Training augmentation, or None (evaluation).
        label_info: If given, category ids are checked against it.
        ignore_index: Value for void and crowd pixels in the maps handed to the processor (crowd regions are not
            supervised, as in detectron2's Mask2Former panoptic mapper).
        processor_kwargs: Extra keyword arguments for every processor call (e.g. ``{"do_resize": False}`` after
            augmentation has fixed the size).
        return_references: Also return ``references`` (original-resolution ``panoptic_reference`` dicts),
            ``target_sizes`` and ``image_ids`` for evaluation; pop them before calling the model.
        seed: Augmentation seed. In DataLoader workers the stream also mixes in torch's per-worker seed, so
            workers and epochs differ.

    Returns (per call):
        ``BatchFeature`` with ``pixel_values (B, 3, H, W)``, ``pixel_mask (B, H, W)``, ``mask_labels``
        (list of ``(n_i, H, W)`` float, 0/1 also on padding) and ``class_labels`` (list of ``(n_i,)`` long).
    """

    def __init__(
        self,
        *,
        image_processor: Any,
        augmentation: EcoMask2FormerTrainAugmentation | None = None,
        label_info: SegmentationLabelInfo | None = None,
        ignore_index: int = 255,
        processor_kwargs: Mapping[str, Any] | None = None,
        return_references: bool = False,
        seed: int = 0,
    ) -> None:
        if not callable(image_processor):
            raise TypeError("image_processor: must be callable like Mask2FormerImageProcessor")
        self.image_processor = image_processor
        self.augmentation = augmentation
        self.label_info = label_info
        self.ignore_index = int(ignore_index)
        self.processor_kwargs = dict(processor_kwargs or {})
        self.return_references = return_references
        self.seed = int(seed)
        self._rng: np.random.Generator | None = None
        self._rng_key: object = None

    def _generator(self) -> np.random.Generator:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        key = None if info is None else info.seed
        if self._rng is None or key != self._rng_key:
            self._rng = np.random.default_rng([self.seed] if key is None else [self.seed, key])
            self._rng_key = key
        return self._rng

    def _instance_map(self, ids: np.ndarray, info: Sequence[Mapping[str, Any]], image_id: str):
        """Compact instance map for the processor (void/crowd -> ignore_index) and its id -> class mapping."""
        kept = [s for s in info if not s.get("iscrowd", 0)]
        present = set(np.unique(ids).tolist())
        kept = [s for s in kept if int(s["id"]) in present]
        codes = [k if k < self.ignore_index else k + 1 for k in range(len(kept))]
        lut_keys = np.array([int(s["id"]) for s in kept], dtype=np.int64)
        out = np.full(ids.shape, self.ignore_index, dtype=np.int64)
        if kept:
            order = np.argsort(lut_keys)
            pos = np.clip(np.searchsorted(lut_keys[order], ids), 0, len(kept) - 1)
            hit = lut_keys[order][pos] == ids
            out[hit] = np.asarray(codes, dtype=np.int64)[order][pos][hit]
        return out, {code: int(s["category_id"]) for code, s in zip(codes, kept)}

    def __call__(self, rows: Sequence[Mapping[str, Any]]):
        images, maps, mappings, references, sizes, names = [], [], [], [], [], []
        for row in rows:
            image, ids, info, image_id = decode_row(row, label_info=self.label_info)
            if self.return_references:
                segments = [
                    {"id": int(s["id"]), "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0))}
                    for s in info
                ]
                import torch

                references.append(
                    {"segmentation": torch.from_numpy(ids), "segments_info": segments, "image_id": image_id}
                )
                sizes.append(tuple(ids.shape))
            if self.augmentation is not None:
                image, ids = self.augmentation(image=image, panoptic_ids=ids, rng=self._generator())
            instance_map, mapping = self._instance_map(ids, info, image_id)
            images.append(image)
            maps.append(instance_map)
            mappings.append(mapping)
            names.append(image_id)
        # The maps use ignore_index for void/crowd and hold compact instance ids: the processor must drop that value
        # and must not reduce labels, whatever its own defaults are (the stock one defaults to ignore_index=None).
        kwargs = {"ignore_index": self.ignore_index, "do_reduce_labels": False, **self.processor_kwargs}
        batch = self.image_processor(
            images=images, segmentation_maps=maps, instance_id_to_semantic_id=mappings, return_tensors="pt", **kwargs
        )
        if "mask_labels" in batch:  # the stock processor pads binary masks with ignore_index (255): make it 0
            batch["mask_labels"] = [m.masked_fill(m > 1, 0) for m in batch["mask_labels"]]
        if self.return_references:
            batch["references"] = references
            batch["target_sizes"] = sizes
            batch["image_ids"] = names
        return batch


def make_collate_fn(**kwargs: Any) -> EcoMask2FormerCollator:
    """``EcoMask2FormerCollator(**kwargs)``: the ``collate_fn`` to pass to a ``torch.utils.data.DataLoader``."""
    return EcoMask2FormerCollator(**kwargs)
