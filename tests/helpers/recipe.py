"""The recipe tests' tiny settings, the example scripts run in this process, and the tiny step 1-3 chains that
`conftest.py` builds once per session (`tiny_chain`, `detection_chain`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from modeling_ecom2f.data import SyntheticPanopticConfig, make_synthetic_panoptic_dataset

REPO = Path(__file__).resolve().parents[2]

TINY_MODEL = ["--backbone", "swin-mini", "--backbone_kwargs", '{"embed_dim": 16}', "--feature_size", "32",
              "--encoder_layers", "3", "--decoder_layers", "2", "--num_queries", "8", "--num_attention_heads", "2",
              "--train_num_points", "256"]
TINY_SYNTHETIC = ["--image_size", "64", "--synthetic_train_images", "12", "--synthetic_validation_images", "6"]
EVAL_BATCH = ["--per_device_eval_batch_size", "4"]

#: The detection scripts' tiny synthetic data and model.
DETECTION_DATA = ["--dataset", "synthetic", "--image_size", "96", "--synthetic_train_images", "8",
                  "--synthetic_validation_images", "4", "--synthetic_max_objects", "4", "--per_device_eval_batch_size",
                  "4"]
TINY_DETR = ["--backbone", "resnet-mini", "--backbone_kwargs",
             '{"embedding_size": 8, "hidden_sizes": [8, 16, 32, 32]}', "--d_model", "32", "--encoder_layers", "3",
             "--decoder_layers", "1", "--num_queries", "8", "--num_attention_heads", "2"]


class Example:
    """An example script whose `main(argv)` runs in this process, with one torch thread (fast for these tiny models,
    and robust on a shared machine); the thread count is restored afterwards."""

    def __init__(self, module) -> None:
        self.module = module

    def main(self, argv: list[str]):
        threads = torch.get_num_threads()
        try:
            return self.module.main(list(argv) + ["--num_threads", "1"])
        finally:
            torch.set_num_threads(threads)


def load_example(name: str) -> Example:
    """Import `examples/<name>.py` (`name` may have a folder: "detection/evaluate_detr") and wrap its `main`."""
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('/', '_')}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Example(module)


def load_detection_example(name: str) -> Example:
    """Import `examples/detection/<name>.py` and wrap its `main` (one torch thread)."""
    return load_example(f"detection/{name}")


def save_tiny_dataset(folder: Path, *, train: int = 12, validation: int = 6, seed: int = 0) -> Path:
    splits, _ = make_synthetic_panoptic_dataset(config=SyntheticPanopticConfig(
        height=64, width=64, num_train_images=train, num_validation_images=validation, seed=seed, max_objects=6,
        min_object_size=6))
    splits.save_to_disk(str(folder))
    return folder


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def build_tiny_chain(root: Path) -> dict:
    """Data on disk under `root`, then steps 1-3 and the evaluation through the example scripts in this process."""
    data = save_tiny_dataset(root / "data")
    disk = ["--dataset", "disk", "--dataset_path", str(data), "--image_size", "64"] + EVAL_BATCH
    paths = {"root": root, "data": data, "step1": root / "step1", "step2": root / "step2", "gate": root / "gate",
             "eval": root / "eval"}
    summaries = {}
    summaries["step1"] = load_example("train_early_exit").main(
        disk + TINY_MODEL + ["--output_dir", str(paths["step1"]), "--max_train_steps", "2", "--checkpointing_steps", "1",
                             "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--eval_depths", "2", "3"])
    summaries["step2"] = load_example("derive_exit_dataset").main(
        disk + ["--model_name_or_path", str(paths["step1"]), "--output_dir", str(paths["step2"]), "--betas", "0.01"])
    summaries["step3"] = load_example("train_gate").main(
        disk + ["--model_name_or_path", str(paths["step1"]), "--derived_dataset", str(paths["step2"]), "--beta", "0.01",
                "--output_dir", str(paths["gate"]), "--num_train_epochs", "3", "--per_device_train_batch_size", "4"])
    summaries["eval"] = load_example("evaluate_model").main(
        disk + ["--model_name_or_path", str(paths["step1"]), "--gate_models", str(paths["gate"]),
                "--oracle_betas", "0.01", "--output_dir", str(paths["eval"])])
    return {"paths": paths, "summaries": summaries, "disk": disk}


def build_detection_chain(root: Path) -> dict:
    """Steps 1-3 and the evaluation through the detection scripts, under `root`."""
    paths = {name: root / name for name in ("step1", "step2", "gate", "eval")}
    summaries = {
        "step1": load_detection_example("train_early_exit_detr").main(DETECTION_DATA + TINY_DETR + [
            "--output_dir", str(paths["step1"]), "--max_train_steps", "2", "--per_device_train_batch_size", "4",
            "--learning_rate", "1e-3", "--eval_depths", "2", "3"]),
        "step2": load_detection_example("derive_exit_dataset_detr").main(DETECTION_DATA + [
            "--model_name_or_path", str(paths["step1"]), "--output_dir", str(paths["step2"]), "--betas", "0.01"]),
        "step3": load_detection_example("train_gate_detr").main(DETECTION_DATA + [
            "--model_name_or_path", str(paths["step1"]), "--derived_dataset", str(paths["step2"]), "--beta", "0.01",
            "--output_dir", str(paths["gate"]), "--num_train_epochs", "2", "--per_device_train_batch_size", "2"]),
        "eval": load_detection_example("evaluate_detr").main(DETECTION_DATA + [
            "--model_name_or_path", str(paths["step1"]), "--gate_models", str(paths["gate"]), "--oracle_betas",
            "0.01", "--output_dir", str(paths["eval"])]),
    }
    return {"paths": paths, "summaries": summaries}
