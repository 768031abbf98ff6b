"""Evaluate a model at every fixed depth, with its gate(s) and as the oracle: PQ, mIoU, mask AP, GFLOPs, depths.

    python examples/evaluate_model.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/evaluate_model.py ...   # 2 CPU processes
    accelerate launch examples/evaluate_model.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `evaluate_model`); this file runs the same command as the console script.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import modeling_ecom2f  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_ecom2f.recipe.cli import evaluate_main as main  # noqa: E402
from modeling_ecom2f.recipe.runtime import run_script_process  # noqa: E402

if __name__ == "__main__":
    run_script_process(main)
