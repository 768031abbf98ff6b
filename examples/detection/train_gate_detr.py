r"""ECO-M2F step 3 for detection: train the gate on the ideal depths argmax_k(AP_k - beta * k) of step 2.

    python examples/detection/train_gate_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/train_gate_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/train_gate_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.train_gate`) run with
the detection task (`task="detection"`, see `modeling_ecom2f.recipe.tasks`); this file only parses the command line.
"""

from modeling_ecom2f.recipe.cli import train_gate_detr_command
from modeling_ecom2f.recipe.cli import train_gate_detr_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    train_gate_detr_command()
