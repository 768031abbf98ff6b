"""Train a shipped parent from scratch (ECO-M2F step 1 on a synthetic depth benchmark): the command behind
`examples/train_benchmark_parent.py`, which the benchmarks also call (`PARENT_ARGS`, `main`).

    python examples/train_benchmark_parent.py --output_dir runs/benchmark_parent      # about 75 min on 2 CPU cores
    python examples/train_benchmark_parent.py --benchmark maze --output_dir runs/maze_parent

It renders the benchmark's parent-training split (seed 1: 3000 training and 600 validation images, disjoint from
the main job's seed-0 images) and runs `train_early_exit.py` with the settings of the shipped parent:

- `shapes` (default, `examples/parents/depth_benchmark/`): `depth_benchmark_config(seed=1)`, the shapes generator;
- `maze` (`modeling_ecom2f/experiments/parents/maze_rooms/`): `maze_benchmark_config(seed=1)`, maze rooms (docs/depth_benchmark_pilot.md,
  route 2b). The same model and optimiser, plus the pilot probe's two choices: one deformable sampling point per head
  and level (`--encoder_n_points 1`, so one encoder layer reaches about one cell) and no augmentation (a scale jitter
  moves the cells off the 16-px token grid and a crop can cut a room's marker out, leaving its label unknowable).

Extra arguments go to `train_early_exit.py` (e.g. `--max_train_steps 500` for a short run). To ship a new parent,
copy the model files and the log into its folder and update its `SHA256SUMS`
(`sha256sum config.json model.safetensors preprocessor_config.json > SHA256SUMS`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import (depth_benchmark_config, make_maze_rooms_panoptic_dataset, make_synthetic_panoptic_dataset,
                    maze_benchmark_config)
from ..recipe.arguments import build_train_early_exit_parser
from ..recipe.early_exit import train_early_exit
from ..recipe.runtime import run_script

#: The step-1 settings of the shipped parents (everything else is `train_early_exit.py`'s default).
PARENT_ARGS = ["--image_size", "128", "--backbone", "swin-mini", "--feature_size", "64", "--encoder_layers", "6",
               "--decoder_layers", "4", "--num_queries", "20", "--per_device_train_batch_size", "8",
               "--learning_rate", "5e-4", "--max_train_steps", "5000", "--checkpointing_steps", "1000",
               "--logging_steps", "50", "--num_threads", "1", "--seed", "0", "--eval_depths", "2", "6",
               "--max_eval_samples", "200"]

#: What each benchmark adds to `PARENT_ARGS`.
BENCHMARK_ARGS = {"shapes": [], "maze": ["--encoder_n_points", "1", "--no_augmentation"]}


def render_parent_data(benchmark: str):
    """The parent-training splits of `benchmark` (seed 1; 3000 training, 600 validation images)."""
    sizes = dict(num_train_images=3000, num_validation_images=600, seed=1)
    if benchmark == "maze":
        return make_maze_rooms_panoptic_dataset(config=maze_benchmark_config(**sizes))[0]
    if benchmark == "shapes":
        return make_synthetic_panoptic_dataset(config=depth_benchmark_config(**sizes))[0]
    raise ValueError(f"benchmark: 'shapes' or 'maze', got {benchmark!r}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Train a shipped parent from scratch (ECO-M2F step 1 on a synthetic "
                                                 "depth benchmark).")
    parser.add_argument("--benchmark", choices=sorted(BENCHMARK_ARGS), default="shapes",
                        help="the data the parent learns (default: shapes)")
    parser.add_argument("--output_dir", default=None, help="default: runs/benchmark_parent (shapes), "
                                                            "runs/maze_parent (maze)")
    parser.add_argument("--data_dir", default=None, help="where to render the data (default: OUTPUT_DIR/data)")
    known, rest = parser.parse_known_args(argv)
    output_dir = known.output_dir or ("runs/maze_parent" if known.benchmark == "maze" else "runs/benchmark_parent")
    data_dir = Path(known.data_dir or Path(output_dir) / "data")
    if not (data_dir / "dataset_dict.json").is_file():
        render_parent_data(known.benchmark).save_to_disk(str(data_dir))
    step1 = ["--dataset", "disk", "--dataset_path", str(data_dir), "--output_dir", output_dir,
             *PARENT_ARGS, *BENCHMARK_ARGS[known.benchmark], *rest]  # later flags win: extra arguments override
    return run_script(build_train_early_exit_parser, train_early_exit, step1)



__all__ = ["BENCHMARK_ARGS", "PARENT_ARGS", "main", "render_parent_data"]
