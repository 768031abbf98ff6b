r"""Detection, step 2: per-image box AP of every exit on the training images and the ideal depth per beta.

    python examples/detection/derive_exit_dataset_detr.py --model_name_or_path runs/detr --output_dir runs/detr_derived
"""

from modeling_ecom2f.experiments.cli import derive_exit_dataset_detr_command, derive_exit_dataset_detr_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    derive_exit_dataset_detr_command()
