"""ECO-M2F step 1: train a model that can leave the deformable encoder after any allowed layer (a depth is sampled
each step and the loss weighted by depth); PRO-SCALE flags (`--token_scaling_layers 3 3 3 --token_recalibration
--light_pixel_embedding`) train the PRO-SCALE or the combined model with the same script.

    python examples/train_early_exit.py --output_dir runs/parent --max_train_steps 200
"""

from modeling_ecom2f.experiments.cli import train_early_exit_command, train_early_exit_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    train_early_exit_command()
