"""Evaluate every fixed exit, each gate at several betas, its random-routing control and the oracle on the
validation split: PQ, mIoU, mask AP, GFLOPs and depth histograms, with a trade-off table and plot.

    python examples/evaluate_model.py --model_name_or_path runs/parent --gate_models runs/utility \
        --gate_betas 0 0.003 0.01 --output_dir runs/eval
"""

from modeling_ecom2f.experiments.cli import evaluate_command, evaluate_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    evaluate_command()
