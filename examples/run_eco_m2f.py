"""The main job: data, ECO-M2F steps 1-3, the evaluation with its controls, the plot and a Hub folder, all on
the embedded maze-rooms benchmark, starting from the parent shipped in the package
(`modeling_ecom2f/experiments/parents/maze_rooms/`; with `--benchmark shapes`: the shapes benchmark and
`examples/parents/depth_benchmark/`). The same command is installed as `ecom2f-main-job`.

    python examples/run_eco_m2f.py                      # the committed result (docs/results_main_job.*), ~5 min
    python examples/run_eco_m2f.py --benchmark shapes   # on shapes (docs/results_main_job_shapes.*), ~7 min
    python examples/run_eco_m2f.py --preset tiny --output_dir /tmp/job --docs_dir ''   # seconds: a smoke run
"""

from modeling_ecom2f.experiments.cli import main_job_command, main_job_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    main_job_command()
