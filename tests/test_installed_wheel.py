"""The package works installed, not only in a checkout: the wheel, installed into a fresh virtual environment outside
the checkout, runs every console script's `--help`, a tiny main job, and loads its shipped parent (checked against its
SHA-256 sums, as the default preset does first) and `evaluate` modules from the installed files.

The environment reuses the test environment's packages (torch, transformers, ...) through a `.pth` file that lists
their folders, rather than `--system-site-packages`: the test environment may hold an editable install of this
checkout, whose import hook runs from a `.pth` file of its own site-packages, and a folder added by a `.pth` line is
not scanned for `.pth` files. The test asserts that every import resolves inside the environment anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from (`pyproject.toml`'s packages and the readme it names).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "modeling_ecom2f", "configuration", "processing", "hub")

#: Run by the environment's interpreter: where every project package comes from, the shipped files it reads.
PROBE = """
import json, sys
import configuration, hub, modeling_ecom2f, processing
import configuration.configuration_ecom2f, processing.image_processing_ecom2f
from modeling_ecom2f.experiments.main_job import build_run_parser, parent_folder, verify_parent
from modeling_ecom2f.experiments.presets import PRESETS
from modeling_ecom2f.metrics import EVALUATE_MODULES, evaluate_module_path
import evaluate
parent = parent_folder(PRESETS["default"], build_run_parser().parse_args([]))
loaded = [type(evaluate.load(evaluate_module_path(name))).__name__ for name in EVALUATE_MODULES]
print(json.dumps({"files": [modeling_ecom2f.__file__, configuration.configuration_ecom2f.__file__,
                            processing.image_processing_ecom2f.__file__],
                  "portions": [p for package in (configuration, processing, hub) for p in package.__path__],
                  "parent": parent, "parent_sums": sorted(verify_parent(parent)),
                  "evaluate": [evaluate_module_path(n) for n in EVALUATE_MODULES], "loaded": loaded}))
"""

#: Run by the environment's interpreter: every console script of the installed distribution with `--help`, in one
#: process (each script is `sys.exit(entry_point())`; one interpreter start instead of one per script).
HELP = """
import contextlib, io, json, sys
from importlib.metadata import distribution
out = {}
for entry in distribution("ecom2f").entry_points:
    if entry.group != "console_scripts":
        continue
    sys.argv, text = [entry.name, "--help"], io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            entry.load()()
            code = None
        except SystemExit as exit:
            code = exit.code
    out[entry.name] = {"code": code, "usage": "usage:" in text.getvalue(), "module": sys.modules[entry.module].__file__}
print(json.dumps(out))
"""


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONNOUSERSITE="1")
    return env


def _run(command: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result


def _setuptools_builds_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return tuple(int(part) for part in setuptools.__version__.split(".")[:2]) >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh environment outside the checkout with the wheel installed (`--no-deps`)."""
    root = tmp_path_factory.mktemp("installed-wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:  # a copy, so the build leaves no `build/` or `*.egg-info` in the checkout
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, source / name)
    wheels = root / "wheels"
    # the test environment's setuptools builds the wheel offline when it can (>= 70.1 writes wheels itself);
    # otherwise pip builds it in an isolated environment with the build requirements from the package index
    offline = ["--no-build-isolation", "--no-index"] if _setuptools_builds_wheels() else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-q", "-w", str(wheels), str(source)], cwd=root)
    (wheel,) = wheels.glob("ecom2f-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root).stdout.strip())
    shared = [p for p in dict.fromkeys(site.getsitepackages() + [site.getusersitepackages()]) if Path(p).is_dir()]
    (purelib / "_test_environment_packages.pth").write_text("\n".join(shared) + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--ignore-installed", "-q", str(wheel)], cwd=root)
    work = root / "work"
    work.mkdir()
    return {"venv": venv, "python": python, "bin": venv / "bin", "work": work, "wheel": wheel}


def _inside(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.mark.slow
def test_installed_package_resolves_inside_the_environment(installed):
    probe = json.loads(_run([str(installed["python"]), "-c", PROBE], cwd=installed["work"]).stdout.splitlines()[-1])
    for path in probe["files"] + probe["portions"] + [probe["parent"]] + probe["evaluate"]:
        assert _inside(path, installed["venv"]) and not _inside(path, REPO), path
    assert len(probe["portions"]) == 3  # one portion each: the checkout's namespace portions are not on the path
    assert probe["parent_sums"] == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert probe["loaded"] == ["Ecom2fMaskAp", "Ecom2fMeanIou", "Ecom2fPanopticQuality"]


@pytest.mark.slow
def test_every_console_script_answers_help(installed):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert set(scripts) <= {path.name for path in installed["bin"].iterdir()}  # pip wrote every script
    # the converter's own executable, as a user runs it (the main job's runs in the next test)
    convert = _run([str(installed["bin"] / "ecom2f-convert"), "--help"], cwd=installed["work"])
    assert "usage: ecom2f-convert" in convert.stdout
    answers = json.loads(_run([str(installed["python"]), "-c", HELP], cwd=installed["work"]).stdout.splitlines()[-1])
    assert set(answers) == set(scripts)
    for name, answer in answers.items():
        assert answer["code"] in (0, None) and answer["usage"], (name, answer)
        assert _inside(answer["module"], installed["venv"]), (name, answer)


@pytest.mark.slow
def test_tiny_main_job_runs_from_the_installed_wheel(installed):
    output = installed["work"] / "job"
    _run([str(installed["bin"] / "ecom2f-main-job"), "--preset", "tiny", "--output_dir", str(output),
          "--docs_dir", ""], cwd=installed["work"], timeout=600)
    summary = json.loads((output / "run_eco_m2f_summary.json").read_text(encoding="utf-8"))
    assert {"data", "step1", "step2", "step3_classification", "step3_utility", "eval", "hub_folder"} <= set(
        summary["timings_s"])
    result = json.loads((output / "results_main_job.json").read_text(encoding="utf-8"))
    assert {row["kind"] for row in result["modes"]} == {"fixed", "gate", "random_routing", "oracle"}
    assert (output / "hub_folder" / "config.json").is_file()  # the Hub folder step ran from the installed hub/
    assert not (installed["work"] / "docs").exists()
