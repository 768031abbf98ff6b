"""Train a shipped parent from scratch (ECO-M2F step 1 on a synthetic depth benchmark).

    python examples/train_benchmark_parent.py --output_dir runs/benchmark_parent      # about 75 min on 2 CPU cores
    python examples/train_benchmark_parent.py --benchmark maze --output_dir runs/maze_parent

The settings of each shipped parent and what the command does: `modeling_ecom2f.experiments.benchmark_parent`.
Extra arguments go to `train_early_exit.py` (e.g. `--max_train_steps 500` for a short run).
"""

from modeling_ecom2f.experiments.benchmark_parent import main
from modeling_ecom2f.recipe import run_script_process

if __name__ == "__main__":
    run_script_process(main)
