"""ECO-M2F step 2: the derived data set. The frozen parent runs on every training image at every allowed exit (one
pass per batch: the backbone, input projections and encoder layers 1..k are shared by all exits, and the FPN and
decoder run once per exit, `EcoMask2FormerForUniversalSegmentation.forward_exits`); per image we store the PQ (and
SQ, RQ, loss) at each depth. Ideal-depth labels for any beta come from it without
rerunning the model (`depth_labels.ideal_depths`).

On disk (`--output_dir`): `derived.parquet` (a `datasets.Dataset`: `index`, `image_id`, `pq`, `sq`, `rq`, `loss`,
each metric a list in `exit_layers` order), `derived_info.json` (exits, split, the parent's weights digest, the
data arguments) and `label_histograms.json` (label counts per beta). The images are split into contiguous blocks
over the processes and the rows are gathered and checked complete before anything is written.

The rows come from the task's `derive_rows` (`segmentation.derive_rows`, `detection_evaluation.derive_detection_rows`).
Detection (`task="detection"`): the columns are `box_ap`, `ap50`, `ap75` (per-image COCO box AP, see
`detection_evaluation`) and `num_ground_truth`; `derived_info.json` names the task and the quality column, and step 3
refuses a derived data set of the other task.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from .artifacts import check_parquet_file, read_json_file
from .depth_labels import DEFAULT_BETA_GRID, histogram_table, ideal_depths, label_histogram
from .runtime import RecipeError, end_run, write_json, write_summary
from .tasks import start_trained_run

logger = logging.getLogger("modeling_ecom2f.recipe")

DERIVED_FILE = "derived.parquet"
INFO_FILE = "derived_info.json"
HISTOGRAM_FILE = "label_histograms.json"
DATA_KEYS = ("dataset", "dataset_path", "train_split", "validation_split", "image_size", "max_train_samples",
             "max_eval_samples", "synthetic_train_images", "synthetic_validation_images", "synthetic_seed",
             "synthetic_max_objects", "synthetic_min_object_size")


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 of a saved model's weight files, to tie a derived data set to the parent that made it."""
    digest = hashlib.sha256()
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    if not files:
        raise RecipeError(f"{model_dir} holds no weight files")
    for path in files:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_derived_dataset(folder: str | Path):
    """`(datasets.Dataset, info dict)` of a step-2 folder; `RecipeError` if it is missing or malformed."""
    import datasets

    folder = Path(folder)
    if not (folder / DERIVED_FILE).is_file() or not (folder / INFO_FILE).is_file():
        raise RecipeError(f"{folder} is not a derived data set (needs {DERIVED_FILE} and {INFO_FILE}); run "
                          "derive_exit_dataset.py first")
    info = read_json_file(folder / INFO_FILE, what="derived data set description")
    quality = info.get("quality", "pq")  # folders written before the key existed are segmentation's, PQ
    table = check_parquet_file(folder / DERIVED_FILE)  # a truncated file: a RecipeError naming it
    if table.num_rows == 0:
        raise RecipeError(f"{folder / DERIVED_FILE} has no rows: there are no depth labels to train on")
    derived = datasets.Dataset(table)
    missing = [c for c in ("index", "image_id", quality) if c not in derived.column_names]
    if missing:
        raise RecipeError(f"{folder / DERIVED_FILE} lacks the column(s) {missing}")
    return derived, info


def quality_matrix(derived, exit_layers, *, column: str = "pq") -> np.ndarray:
    """The `(num_images, num_exits)` per-image quality array (PQ, or the `column` named by the task, e.g. box AP)
    of a derived data set, checked against `exit_layers`."""
    if column not in derived.column_names:
        raise RecipeError(f"the derived data set has no {column!r} column (it has {derived.column_names}): was it "
                          "made for another task?")
    quality = np.asarray(derived[column], dtype=np.float64)
    if quality.ndim != 2 or quality.shape[1] != len(exit_layers):
        raise RecipeError(f"derived {column} rows must have one value per exit {list(exit_layers)}, got shape "
                          f"{quality.shape}")
    return quality


def derive_exit_dataset(args: argparse.Namespace) -> dict:
    """Run step 2 from parsed `build_derive_exit_dataset_parser()` arguments; returns the summary dict.

    The task (`args.task`, see `tasks.get_task`) picks the per-image quality: PQ for segmentation, COCO box AP on
    the image for detection (`metrics.per_image_box_ap`).
    """
    start = time.perf_counter()
    task, accelerator, dataset, label_info, model, processor = start_trained_run(
        args, step="step 2", project_name="ecom2f_step2")
    exits = list(model.config.exit_layers)
    quality = task.quality
    logger.info("***** Step 2: derived data set (per-image %s) *****", task.quality_label)
    logger.info("  %d %s images x %d exits %s, %d processes", len(dataset), args.split, len(exits), exits,
                accelerator.num_processes)
    rows = task.derive_rows(accelerator=accelerator, model=model, processor=processor, dataset=dataset,
                            label_info=label_info, args=args)
    from accelerate.utils import gather_object

    rows = gather_object(rows) if accelerator.num_processes > 1 else rows
    summary = {"step": "derive_exit_dataset", "num_images": len(dataset), "exit_layers": exits,
               "num_processes": accelerator.num_processes}
    if accelerator.is_main_process:
        rows = sorted({row["index"]: row for row in rows}.values(), key=lambda r: r["index"])
        if [r["index"] for r in rows] != list(range(len(dataset))):
            raise RecipeError(f"gathered {len(rows)} rows for {len(dataset)} images: some process lost images")
        ids = dataset["image_id"]
        if any(r["image_id"] != str(ids[r["index"]]) for r in rows):
            raise RecipeError("gathered rows do not match the data set's image ids")
        import datasets

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        derived = datasets.Dataset.from_list(rows)
        derived.to_parquet(str(out / DERIVED_FILE))
        scores = quality_matrix(derived, exits, column=quality)
        betas = sorted(set(DEFAULT_BETA_GRID) | set(args.betas or []))
        histograms = {f"{b:g}": {"counts": label_histogram(ideal_depths(scores, exits, b), exits),
                                 "mean_depth": float(ideal_depths(scores, exits, b).mean())} for b in betas}
        info = {"exit_layers": exits, "split": args.split, "num_images": len(rows), "task": task.name,
                "quality": quality, "model_dir": str(args.model_name_or_path),
                "model_digest": weights_digest(args.model_name_or_path),
                f"{quality}_units": "fraction in [0, 1]",
                "label_rule": f"argmax_k({quality}_k - beta * k), ties to the shallowest",
                "data": {k: getattr(args, k, None) for k in DATA_KEYS}, "loss_seed": getattr(args, "loss_seed", None),
                f"mean_{quality}_per_exit": scores.mean(axis=0).tolist()}
        write_json(out / INFO_FILE, info)
        write_json(out / HISTOGRAM_FILE, {"exit_layers": exits, "betas": histograms})
        table = histogram_table(scores, exits, betas)
        (out / "label_histograms.txt").write_text(table + "\n", encoding="utf-8")
        print("Ideal-depth label histogram (images per exit) for each beta:\n" + table, flush=True)
        summary.update({"output_dir": str(out), f"mean_{quality}_per_exit": info[f"mean_{quality}_per_exit"],
                        "label_histograms": histograms})
    summary["seconds"] = round(time.perf_counter() - start, 2)
    write_summary(accelerator, args.output_dir, "derive_exit_dataset", summary)
    end_run(accelerator)
    return summary


__all__ = [
    "DERIVED_FILE",
    "HISTOGRAM_FILE",
    "INFO_FILE",
    "derive_exit_dataset",
    "load_derived_dataset",
    "quality_matrix",
    "weights_digest",
]
