"""ECO-M2F step 3: train only the gate on the derived data set, as the paper's classifier for one beta or as a
utility gate that serves every beta (here calibrated to 70% of the encoder's GFLOPs).

    python examples/train_gate.py --model_name_or_path runs/parent --derived_dataset runs/derived \
        --gate_objective utility --target_encoder_fraction 0.7 --output_dir runs/utility
"""

from modeling_ecom2f.experiments.cli import train_gate_command, train_gate_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    train_gate_command()
