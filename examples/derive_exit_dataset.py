"""ECO-M2F step 2: the per-image quality of every exit of the step-1 model on its training images (one pass per
image), and the ideal depth argmax_k(PQ_k - beta * k) for each beta.

    python examples/derive_exit_dataset.py --model_name_or_path runs/parent --output_dir runs/derived --betas 0.003
"""

from modeling_ecom2f.experiments.cli import derive_exit_dataset_command, derive_exit_dataset_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    derive_exit_dataset_command()
