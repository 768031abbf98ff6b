"""Evaluate a model at every fixed depth, with its gate(s) and as the oracle: PQ, mIoU, mask AP, GFLOPs, depths.

    python examples/evaluate_model.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/evaluate_model.py ...   # 2 CPU processes
    accelerate launch examples/evaluate_model.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `evaluate_model`); this file runs the same command as the console script.
"""

from modeling_ecom2f.recipe.cli import evaluate_command
from modeling_ecom2f.recipe.cli import evaluate_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    evaluate_command()
