r"""ECO-M2F step 2 for detection: per-image box AP of the frozen parent at every exit, stored as a Parquet data set.

    python examples/detection/derive_exit_dataset_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/derive_exit_dataset_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/derive_exit_dataset_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.derive_exit_dataset`) run with
the detection task (`task="detection"`, see `modeling_ecom2f.recipe.tasks`); this file only parses the command line.
"""

from modeling_ecom2f.recipe.cli import derive_exit_dataset_detr_command
from modeling_ecom2f.recipe.cli import derive_exit_dataset_detr_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    derive_exit_dataset_detr_command()
