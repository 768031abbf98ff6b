r"""ECO-M2F step 1 for detection: train an EcoDeformableDetr to exit at every allowed encoder depth.

    python examples/detection/train_early_exit_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/train_early_exit_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/train_early_exit_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.train_early_exit`) run with
the detection task (`task="detection"`, see `modeling_ecom2f.recipe.tasks`); this file only parses the command line.
"""

from modeling_ecom2f.recipe.cli import train_early_exit_detr_command
from modeling_ecom2f.recipe.cli import train_early_exit_detr_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    train_early_exit_detr_command()
