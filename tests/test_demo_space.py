"""The demo folder as a Hugging Face Space: its card header, its requirements (equal to the project's), and a built
Space folder that runs from its own copy of the packages in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
import yaml

from helpers.demo import DEMO

ROOT = DEMO.parent


def _requirements() -> list[str]:
    lines = (DEMO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_space_card_header_runs_the_app_with_the_tested_gradio():
    text = (DEMO / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and (DEMO / header["app_file"]).is_file()
    pinned = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("gradio==")]
    assert pinned == [f"gradio=={header['sdk_version']}"]


def test_space_requirements_are_the_project_dependencies_and_the_demo_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _requirements() == project["optional-dependencies"]["demo"] + project["dependencies"]


@pytest.mark.slow
def test_built_space_runs_from_its_own_packages(tmp_path):
    sys.path.insert(0, str(DEMO))
    try:
        from build_space import build_space
    finally:
        sys.path.remove(str(DEMO))
    space = tmp_path / "space"
    names = build_space(space)
    assert {"app.py", "demo_engine.py", "model", "examples", "modeling_ecom2f", "configuration"} <= set(names)
    script = (
        "import demo_engine as e, modeling_ecom2f, processing.image_processing_ecom2f as p\n"
        "assert modeling_ecom2f.__file__.startswith(r'%s') and p.__file__.startswith(r'%s')\n"
        "images = [e.load_image(x, max_side=1024)[0] for x in e.example_images('examples')]\n"
        "s = e.DemoSegmenter.from_pretrained('model', calibration_images=images)\n"
        "r = s.segment(images[0], budget=e.Budget('fixed', depth=2))\n"
        "print('depth', r.depth, r.segments)\n" % (space, space)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=space, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "depth 2" in done.stdout


@pytest.mark.slow
def test_app_command_says_what_is_wrong_with_a_missing_model_folder(tmp_path):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[demo]')")
    missing = tmp_path / "no_model"
    done = subprocess.run([sys.executable, str(DEMO / "app.py"), "--model", str(missing), "--port", "0"], cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert f"model folder '{missing}' does not exist" in done.stderr and "Traceback" not in done.stderr
