r"""Detection, step 3: the gate of an EcoDeformableDetr, trained on its derived data set (classification or utility).

    python examples/detection/train_gate_detr.py --model_name_or_path runs/detr \
        --derived_dataset runs/detr_derived --output_dir runs/detr_gate
"""

from modeling_ecom2f.experiments.cli import train_gate_detr_command, train_gate_detr_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    train_gate_detr_command()
