r"""Evaluate an EcoDeformableDetr: COCO box AP, GFLOPs and depth histogram for every fixed depth, the gate(s) and
the oracle.

    python examples/detection/evaluate_detr.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \
        examples/detection/evaluate_detr.py ...                 # two CPU processes
    accelerate launch examples/detection/evaluate_detr.py ...

The logic is the Mask2Former recipe's step function (`modeling_ecom2f.recipe.evaluate_model`) run with
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
from modeling_ecom2f.recipe import build_detection_evaluate_parser, evaluate_model


def main(argv: list[str] | None = None) -> dict:
    return run_script(build_detection_evaluate_parser, evaluate_model, argv)


if __name__ == "__main__":
    run_script_process(main)
