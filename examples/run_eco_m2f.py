"""The main job: the whole ECO-M2F recipe on the embedded synthetic data set (about 20 minutes on 2 CPU cores).

    python examples/run_eco_m2f.py --help
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/run_eco_m2f.py ...   # 2 CPU processes
    accelerate launch examples/run_eco_m2f.py ...                                                     # your accelerate config

The logic lives in `modeling_ecom2f.recipe` (see `run_eco_m2f`); this file runs the same command as the console script.
"""

from modeling_ecom2f.recipe.cli import main_job_command
from modeling_ecom2f.recipe.cli import main_job_main as main  # noqa: F401  (`main(argv)` runs the step in-process)

if __name__ == "__main__":
    main_job_command()
