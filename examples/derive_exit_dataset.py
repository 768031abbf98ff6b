"""ECO-M2F step 2: per-image PQ of the frozen parent at every exit, stored as a Parquet data set.

    python examples/derive_exit_dataset.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/derive_exit_dataset.py ...   # 2 CPU processes
    accelerate launch examples/derive_exit_dataset.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `derive_exit_dataset`); this file runs the same command as the console script.
"""

from modeling_ecom2f.recipe.cli import derive_exit_dataset_command
from modeling_ecom2f.recipe.cli import derive_exit_dataset_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    derive_exit_dataset_command()
