r"""Detection: COCO box AP, GFLOPs and depth histograms of every fixed exit, the gates and the oracle.

    python examples/detection/evaluate_detr.py --model_name_or_path runs/detr --gate_models runs/detr_gate
"""

from modeling_ecom2f.experiments.cli import evaluate_detr_command, evaluate_detr_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    evaluate_detr_command()
