r"""ECO-M2F step 1 for detection: train an EcoDeformableDetr to exit at every allowed encoder depth.

    python examples/detection/train_early_exit_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/train_early_exit_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/train_early_exit_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.train_early_exit`) run with
the detection task (`task="detection"`, see `modeling_ecom2f.recipe.tasks`); this file only parses the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import modeling_ecom2f  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modeling_ecom2f.recipe import run_script, run_script_process
from modeling_ecom2f.recipe import build_detection_train_early_exit_parser, train_early_exit


def main(argv: list[str] | None = None) -> dict:
    return run_script(build_detection_train_early_exit_parser, train_early_exit, argv)


if __name__ == "__main__":
    run_script_process(main)
