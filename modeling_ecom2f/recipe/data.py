"""Data for the recipe: one split as standard rows, the image processor, and resumable data loaders.

Sources (`--dataset`): the embedded procedural generator, a `DatasetDict` saved with `save_to_disk`, the
COCO-panoptic / ADE20K / Cityscapes on-disk adapters, or any Hub/local data set through a column mapping
(`modeling_ecom2f.data.load_mapped_dataset`). Whatever the source, the split must carry the standard columns
(`image`, `annotation`, `segments_info`, `image_id`) and label metadata; category ids outside the label set raise
`SegmentationDataError` naming the image when the row is decoded.

Resumability: training augmentation draws from `numpy.random.default_rng([seed, epoch, index])` and the order of an
epoch from `default_rng([seed, epoch])`, so an epoch is a pure function of (seed, epoch): a resumed run sees the
same crops in the same order as an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import (
    EcoMask2FormerCollator,
    EcoMask2FormerTrainAugmentation,
    SegmentationLabelInfo,
    SyntheticPanopticConfig,
    decode_row,
    load_ade20k,
    load_cityscapes,
    load_coco_panoptic,
    load_mapped_dataset,
    make_synthetic_panoptic_dataset,
)
from .arguments import DEFAULT_SPLITS
from .runtime import RecipeError

REQUIRED_COLUMNS = ("image", "annotation", "segments_info", "image_id")
PROCESSOR_FILE = "preprocessor_config.json"


def split_name(args: argparse.Namespace, which: str) -> str:
    """The split name for `which` ("train" or "validation") of the chosen source."""
    explicit = args.train_split if which == "train" else args.validation_split
    return explicit or DEFAULT_SPLITS[args.dataset][0 if which == "train" else 1]


@functools.lru_cache(maxsize=2)
def _synthetic(config: SyntheticPanopticConfig):
    return make_synthetic_panoptic_dataset(config=config)


def synthetic_config(args: argparse.Namespace) -> SyntheticPanopticConfig:
    """The generator settings of `--dataset synthetic` (square images of `--image_size`)."""
    size = args.image_size or 128
    return SyntheticPanopticConfig(
        height=size, width=size, num_train_images=args.synthetic_train_images,
        num_validation_images=args.synthetic_validation_images, seed=args.synthetic_seed,
        max_objects=args.synthetic_max_objects, min_object_size=args.synthetic_min_object_size,
    )


def _need_path(args: argparse.Namespace) -> Path:
    if not args.dataset_path:
        raise RecipeError(f"--dataset {args.dataset} needs --dataset_path")
    return Path(args.dataset_path)


def _load_source(args: argparse.Namespace, split: str):
    """`(datasets.Dataset, SegmentationLabelInfo)` of one split from the chosen source."""
    import datasets

    if args.dataset == "synthetic":
        splits, label_info = _synthetic(synthetic_config(args))
        if split not in splits:
            raise RecipeError(f"the synthetic data set has the splits {sorted(splits)}, not {split!r}")
        return splits[split], label_info
    if args.dataset == "disk":
        path = _need_path(args)
        if not path.is_dir():
            raise RecipeError(f"--dataset_path {path} is not a folder written by save_to_disk")
        saved = datasets.load_from_disk(str(path))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise RecipeError(f"{path} has the splits {sorted(saved)}, not {split!r} (see --train_split/"
                                  "--validation_split)")
            saved = saved[split]
        try:
            label_info = SegmentationLabelInfo.from_dataset(saved)
        except ValueError as error:
            raise RecipeError(f"{path} carries no label metadata in its info.description; convert it with "
                              "--dataset mapped --label_info ... instead") from error
        return saved, label_info
    if args.dataset == "coco_panoptic":
        root = _need_path(args)
        return load_coco_panoptic(annotation_file=root / "annotations" / f"panoptic_{split}.json", image_dir=root / split)
    if args.dataset == "ade20k":
        return load_ade20k(root=_need_path(args), split=split)
    if args.dataset == "cityscapes":
        return load_cityscapes(root=_need_path(args), split=split)
    if args.dataset == "mapped":
        if not args.annotation_format or not args.label_info:
            raise RecipeError("--dataset mapped needs --annotation_format and --label_info")
        return load_mapped_dataset(
            args.dataset_path or _need_path(args), annotation_format=args.annotation_format,
            label_info=SegmentationLabelInfo.from_dict(args.label_info), split=split,
            image_column=args.image_column, annotation_column=args.annotation_column,
            segments_info_column=args.segments_info_column, image_id_column=args.image_id_column,
            reduce_labels=args.reduce_labels,
        )
    raise RecipeError(f"unknown --dataset {args.dataset!r}")


def check_columns(dataset, *, where: str) -> None:
    """Raise `RecipeError` naming the missing standard columns and how to map a data set onto them."""
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise RecipeError(
            f"{where} lacks the column(s) {missing} (it has {dataset.column_names}); the recipe needs "
            f"{list(REQUIRED_COLUMNS)}. Convert it with --dataset mapped --annotation_format ... --image_column ... "
            "--annotation_column ... (modeling_ecom2f.data.load_mapped_dataset)"
        )
    if len(dataset) == 0:
        raise RecipeError(f"{where} has no rows")


def load_split(args: argparse.Namespace, which: str):
    """One split (`which` is "train" or "validation") as standard rows: `(datasets.Dataset, label_info)`."""
    if which not in ("train", "validation"):
        raise ValueError(f"which: 'train' or 'validation', got {which!r}")
    split = split_name(args, which)
    dataset, label_info = _load_source(args, split)
    check_columns(dataset, where=f"split {split!r} of --dataset {args.dataset}")
    limit = args.max_train_samples if which == "train" else args.max_eval_samples
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(range(limit))
    return dataset, label_info


def build_image_processor(*, image_size: int | None, max_image_size: int | None = None, model_dir: str | None = None):
    """The image processor: the one saved with the model if any (and no size is forced), else a fresh one.

    `EcoMask2FormerImageProcessor` (stock Mask2Former preprocessing with strict input checks and pixel-mask aware
    post-processing) when it imports, else `transformers.Mask2FormerImageProcessor`.
    """
    try:
        from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor as Processor
    except ImportError:  # pragma: no cover - the project ships it
        from transformers import Mask2FormerImageProcessor as Processor
    if model_dir is not None and image_size is None and os.path.isfile(os.path.join(model_dir, PROCESSOR_FILE)):
        return Processor.from_pretrained(model_dir)
    size = image_size or 128
    return Processor(size={"shortest_edge": size, "longest_edge": max_image_size or 2 * size}, size_divisor=32,
                     ignore_index=255, do_reduce_labels=False)


class PanopticRows(torch.utils.data.Dataset):
    """Standard rows of a split, each with its `index`, optionally augmented reproducibly per (seed, epoch, index).

    Args:
        dataset: a `datasets.Dataset` with the standard columns.
        label_info: category ids are checked against it when a row is decoded.
        augmentation: the training augmentation, or None.
        seed: augmentation seed.
    """

    def __init__(self, dataset, *, label_info: SegmentationLabelInfo, augmentation=None, seed: int = 0) -> None:
        self.dataset = dataset
        self.label_info = label_info
        self.augmentation = augmentation
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        row = self.dataset[index]
        if self.augmentation is None:
            return {**{k: row[k] for k in REQUIRED_COLUMNS}, "index": index}
        image, ids, info, image_id = decode_row(row, label_info=self.label_info)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, ids = self.augmentation(image=image, panoptic_ids=ids, rng=rng)
        return {"image": image, "annotation": ids, "segments_info": info, "image_id": image_id, "index": index}


class IndexedCollator:
    """`EcoMask2FormerCollator` that also returns the rows' data-set positions as `indices` `(B,)`."""

    def __init__(self, collator: EcoMask2FormerCollator) -> None:
        self.collator = collator

    def __call__(self, rows):
        batch = self.collator([{k: row[k] for k in REQUIRED_COLUMNS} for row in rows])
        batch["indices"] = torch.tensor([row["index"] for row in rows], dtype=torch.long)
        return batch


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation of `range(num_samples)` that depends only on (seed, epoch)."""

    def __init__(self, num_samples: int, *, seed: int) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples).tolist())


def train_dataloader(args: argparse.Namespace, dataset, label_info, processor, *, num_processes: int = 1,
                     make_collator=None):
    """Shuffled, augmented training batches (`pixel_values`, `pixel_mask`, `mask_labels`, `class_labels`,
    `indices`); pass it through `accelerator.prepare`. `make_collator` builds the collator from the keyword
    arguments of `EcoMask2FormerCollator` (default: that class; the detection recipe passes its own)."""
    augmentation = None
    processor_kwargs = {}
    if not getattr(args, "no_augmentation", True):
        size = args.image_size or 128
        augmentation = EcoMask2FormerTrainAugmentation(crop_size=(size, size), min_scale=args.min_scale,
                                                       max_scale=args.max_scale,
                                                       flip_probability=args.flip_probability)
        processor_kwargs = {"do_resize": False}  # the crop fixed the size
    rows = PanopticRows(dataset, label_info=label_info, augmentation=augmentation, seed=args.seed)
    global_batch = args.per_device_train_batch_size * num_processes
    if len(rows) < global_batch:
        raise RecipeError(f"the training split has {len(rows)} images, fewer than one batch of {global_batch} "
                          f"({args.per_device_train_batch_size} per process x {num_processes} processes)")
    collator = (make_collator or EcoMask2FormerCollator)(image_processor=processor, label_info=label_info,
                                                         processor_kwargs=processor_kwargs)
    return torch.utils.data.DataLoader(
        rows, batch_size=args.per_device_train_batch_size, sampler=EpochShuffleSampler(len(rows), seed=args.seed),
        collate_fn=IndexedCollator(collator), num_workers=args.dataloader_num_workers, drop_last=True,
        # Its own generator: creating an iterator draws a worker base seed, which would otherwise consume the global
        # torch RNG (that the loss's point sampling uses) at a point that differs between a resumed and an
        # uninterrupted run.
        generator=torch.Generator().manual_seed(args.seed),
    )


def shard_indices(num_rows: int, *, process_index: int, num_processes: int) -> list[int]:
    """The rows one process handles in sharded inference: a contiguous block, blocks in process order."""
    per = -(-num_rows // num_processes)
    return list(range(process_index * per, min(num_rows, (process_index + 1) * per)))


def inference_dataloader(dataset, label_info, processor, *, indices: list[int], batch_size: int, num_workers: int = 0,
                         make_collator=None):
    """Unaugmented batches over `indices` in order, with `references` (original-resolution ground truth),
    `target_sizes`, `image_ids` and `indices`; for evaluation and step 2 (no `accelerator.prepare`)."""
    rows = torch.utils.data.Subset(PanopticRows(dataset, label_info=label_info), indices)
    collator = (make_collator or EcoMask2FormerCollator)(image_processor=processor, label_info=label_info,
                                                         return_references=True)
    return torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=IndexedCollator(collator),
                                       num_workers=num_workers)


def model_inputs(batch, device) -> dict[str, Any]:
    """The tensors of a collated batch the model takes, on `device`."""
    out = {"pixel_values": batch["pixel_values"].to(device), "pixel_mask": batch["pixel_mask"].to(device)}
    if "mask_labels" in batch:
        out["mask_labels"] = [m.to(device) for m in batch["mask_labels"]]
        out["class_labels"] = [c.to(device) for c in batch["class_labels"]]
    return out


__all__ = [
    "EpochShuffleSampler",
    "IndexedCollator",
    "PanopticRows",
    "REQUIRED_COLUMNS",
    "build_image_processor",
    "check_columns",
    "inference_dataloader",
    "load_split",
    "model_inputs",
    "shard_indices",
    "split_name",
    "synthetic_config",
    "train_dataloader",
]
