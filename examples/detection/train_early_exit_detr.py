r"""Detection, step 1: an EcoDeformableDetr trained to exit at every allowed encoder depth (the segmentation
recipe's step with `task="detection"`).

    python examples/detection/train_early_exit_detr.py --output_dir runs/detr --max_train_steps 200
"""

from modeling_ecom2f.experiments.cli import train_early_exit_detr_command, train_early_exit_detr_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    train_early_exit_detr_command()
