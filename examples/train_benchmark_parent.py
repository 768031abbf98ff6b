"""Train the parent shipped in `examples/parents/depth_benchmark/` from scratch (ECO-M2F step 1 on the benchmark).

    python examples/train_benchmark_parent.py --output_dir runs/benchmark_parent      # about 75 min on 2 CPU cores

It renders the benchmark's parent-training split (`depth_benchmark_config(seed=1)`: 3000 training and 600
validation images, disjoint from the main job's seed-0 images) and runs `train_early_exit.py` with the settings of
the shipped parent. Extra arguments go to `train_early_exit.py` (e.g. `--max_train_steps 500` for a short run).
To ship a new parent, copy the model files and the log into `examples/parents/depth_benchmark/` and update its
`SHA256SUMS` (`sha256sum config.json model.safetensors preprocessor_config.json > SHA256SUMS`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modeling_ecom2f.data import depth_benchmark_config, make_synthetic_panoptic_dataset
from modeling_ecom2f.recipe import build_train_early_exit_parser, run_script, run_script_process, train_early_exit

#: The step-1 settings of the shipped parent (everything else is `train_early_exit.py`'s default).
PARENT_ARGS = ["--image_size", "128", "--backbone", "swin-mini", "--feature_size", "64", "--encoder_layers", "6",
               "--decoder_layers", "4", "--num_queries", "20", "--per_device_train_batch_size", "8",
               "--learning_rate", "5e-4", "--max_train_steps", "5000", "--checkpointing_steps", "1000",
               "--logging_steps", "50", "--num_threads", "1", "--seed", "0", "--eval_depths", "2", "6",
               "--max_eval_samples", "200"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=True)
    parser.add_argument("--output_dir", default="runs/benchmark_parent")
    parser.add_argument("--data_dir", default=None, help="where to render the data (default: OUTPUT_DIR/data)")
    known, rest = parser.parse_known_args(argv)
    data_dir = Path(known.data_dir or Path(known.output_dir) / "data")
    if not (data_dir / "dataset_dict.json").is_file():
        splits, _ = make_synthetic_panoptic_dataset(
            config=depth_benchmark_config(num_train_images=3000, num_validation_images=600, seed=1))
        splits.save_to_disk(str(data_dir))
    step1 = ["--dataset", "disk", "--dataset_path", str(data_dir), "--output_dir", known.output_dir,
             *PARENT_ARGS, *rest]  # later flags win: extra arguments override the defaults
    return run_script(build_train_early_exit_parser, train_early_exit, step1)


if __name__ == "__main__":
    run_script_process(main)
