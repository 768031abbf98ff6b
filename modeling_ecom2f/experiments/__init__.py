"""The experiments built on the library: the main job (`ecom2f-main-job`, `examples/run_eco_m2f.py`: data, the three
recipe steps, the evaluation with its controls, the report and a Hub folder), its presets and shipped parent
(`parents/maze_rooms/`, package data), the report's statistics, the wall-clock deadline, the benchmark parents'
training command, and the console scripts (`cli`), which wire `hub` into the recipe.

This package may import the library (`modeling_ecom2f`, its recipe, `configuration`, `processing`, `hub`); nothing in
the library imports it (`tests/test_architecture.py`). See `docs/architecture.md`.
"""
