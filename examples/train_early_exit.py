"""ECO-M2F step 1: train the parent model to exit at every allowed encoder depth.

    python examples/train_early_exit.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/train_early_exit.py ...   # 2 CPU processes
    accelerate launch examples/train_early_exit.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `train_early_exit`); this file runs the same command as the console script.
"""

from modeling_ecom2f.recipe.cli import train_early_exit_command
from modeling_ecom2f.recipe.cli import train_early_exit_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    train_early_exit_command()
