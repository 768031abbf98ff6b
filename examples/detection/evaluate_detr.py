r"""Evaluate an EcoDeformableDetr: COCO box AP, GFLOPs and depth histogram for every fixed depth, the gate(s) and
the oracle.

    python examples/detection/evaluate_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/evaluate_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/evaluate_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.evaluate_model`) run with
the detection task (`task="detection"`, see `modeling_ecom2f.recipe.tasks`); this file only parses the command line.
"""

from modeling_ecom2f.recipe.cli import evaluate_detr_command
from modeling_ecom2f.recipe.cli import evaluate_detr_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    evaluate_detr_command()
