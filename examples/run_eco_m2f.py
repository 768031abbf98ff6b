"""The main job: data, ECO-M2F steps 1-3, the evaluation with its controls, the plot and a Hub-ready export, all on
the embedded synthetic benchmark, starting from the parent shipped in `examples/parents/depth_benchmark/` (with
`--benchmark maze`: the maze-rooms benchmark and `examples/parents/maze_rooms/`).

    python examples/run_eco_m2f.py                      # the committed result (docs/results_main_job.*), ~7 min
    python examples/run_eco_m2f.py --benchmark maze     # on maze rooms (docs/results_main_job_maze.*), ~5 min
    python examples/run_eco_m2f.py --preset tiny --output_dir /tmp/job --docs_dir ''   # seconds: a smoke run
"""

from modeling_ecom2f.recipe.cli import main_job_command, main_job_main as main  # noqa: F401  (`main(argv)`: in-process

if __name__ == "__main__":
    main_job_command()
