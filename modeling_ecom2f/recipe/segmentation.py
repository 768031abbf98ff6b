"""The universal-segmentation task's own recipe pieces (EcoMask2Former, per-image PQ) that are not shared with
detection: step 2's per-image rows (PQ, SQ, RQ and the Mask2Former loss at every exit, from one pass per batch).

The rest of the segmentation task (model building, processor, collator, per-image evaluation, reports) lives in
`modeling`, `data`, `evaluation` and `reporting`; `tasks.segmentation_task` ties them into a `RecipeTask`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .data import inference_dataloader, shard_indices
from .segmentation_evaluation import BatchEvaluator, exit_outputs, panoptic_from_counts
from .runtime import progress_bar


@contextlib.contextmanager
def local_mask_normalisation(model):
    """Normalise the Mask2Former loss by this process's masks only. The stock loss all-reduces the mask count over
    the processes, which is right in training (every process computes a loss each step) but deadlocks per-image
    losses when the processes hold different numbers of images."""
    criterion = model.criterion

    def get_num_masks(class_labels, device):
        count = sum(len(classes) for classes in class_labels)
        return torch.clamp(torch.as_tensor(count, dtype=torch.float, device=device), min=1)

    criterion.get_num_masks = get_num_masks
    try:
        yield
    finally:
        del criterion.get_num_masks


def per_image_losses(model, outputs, batch, *, device, seed: int) -> list[float]:
    """The (depth-unweighted) Mask2Former loss of each image's final prediction; the loss's random point sampling is
    seeded by `seed` and the image's data-set index, so the value does not depend on the batch or process."""
    losses = []
    with torch.no_grad(), local_mask_normalisation(model):
        for i, index in enumerate(batch["indices"].tolist()):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1_000_003 + int(index))
                loss_dict = model.get_loss_dict(
                    masks_queries_logits=outputs.masks_queries_logits[i:i + 1].float(),
                    class_queries_logits=outputs.class_queries_logits[i:i + 1].float(),
                    mask_labels=[batch["mask_labels"][i].to(device)], class_labels=[batch["class_labels"][i].to(device)],
                    auxiliary_predictions=None,
                )
                losses.append(float(model.get_loss(loss_dict)))
    return losses


def _scalar(value: float) -> float:
    return 1.0 if np.isnan(value) else float(value)  # no category present: every depth is right (metrics docs)


def derive_rows(*, accelerator, model, processor, dataset, label_info, args) -> list[dict]:
    """This process's block of rows: per image the PQ, SQ, RQ and loss at every exit."""
    exits = list(model.config.exit_layers)
    evaluator = BatchEvaluator(model=model, processor=processor, label_info=label_info, args=args, with_ap=False,
                               with_miou=False, with_gflops=False)
    indices = shard_indices(len(dataset), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = inference_dataloader(dataset, label_info, processor, indices=indices,
                                  batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers)
    rows = []
    for batch in progress_bar(accelerator, iterable=loader, total=len(loader), desc="step 2 (derive)"):
        columns = {name: [[] for _ in batch["image_ids"]] for name in ("pq", "sq", "rq", "loss")}
        for _, outputs in exit_outputs(model, batch, accelerator, exits):  # one pass: shared backbone and layers
            records = evaluator.records(outputs, batch, gate=False)
            losses = per_image_losses(model, outputs, batch, device=accelerator.device, seed=args.loss_seed)
            for i, (record, loss) in enumerate(zip(records, losses)):
                scores = panoptic_from_counts(record.counts, sorted(label_info.id2label), label_info.thing_ids)
                columns["pq"][i].append(record.quality)
                columns["sq"][i].append(_scalar(scores["sq"]))
                columns["rq"][i].append(_scalar(scores["rq"]))
                columns["loss"][i].append(loss)
        for i, (index, image_id) in enumerate(zip(batch["indices"].tolist(), batch["image_ids"])):
            rows.append({"index": int(index), "image_id": str(image_id),
                         **{name: values[i] for name, values in columns.items()}})
    return rows


__all__ = ["derive_rows", "local_mask_normalisation", "per_image_losses"]
