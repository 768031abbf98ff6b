"""ECO-M2F step 3: train the gate (everything else frozen) on the derived data set: the paper's classification gate
for one beta, or a utility gate that serves every beta (`--gate_objective utility`).

    python examples/train_gate.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/train_gate.py ...   # 2 CPU processes
    accelerate launch examples/train_gate.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `train_gate`); this file runs the same command as the console script.
"""

from modeling_ecom2f.recipe.cli import train_gate_command
from modeling_ecom2f.recipe.cli import train_gate_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    train_gate_command()
