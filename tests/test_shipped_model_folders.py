"""Every model folder the repository ships (the demo's model, the parents under `examples/parents/`) loads through
`pipeline("image-segmentation", model=folder)` and the Auto classes after `import modeling_ecom2f`, without asking
to run remote code: a folder that holds no code file must carry no `auto_map` (transformers would prompt
"Do you wish to run the custom code? [y/N]" and, in a terminal, wait for the answer).

Each folder runs in a fresh interpreter with stdin closed, so a prompt shows in its output instead of hanging."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.demo import DEMO, demo_engine

ROOT = Path(__file__).resolve().parents[1]
IMAGE = sorted((ROOT / "demo" / "examples").glob("*.png"))[0]


def shipped_model_folders() -> list[Path]:
    """Folders with a tracked `config.json`, outside `tests/` and the Hub export's custom-code copies."""
    listed = subprocess.run(["git", "ls-files", "--", "*config.json"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return sorted({(ROOT / name).parent for name in listed
                   if Path(name).name == "config.json" and not name.startswith("tests/")})


FOLDERS = shipped_model_folders()

CLIENT = """
import sys
import modeling_ecom2f
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForUniversalSegmentation, pipeline

folder, image = sys.argv[1], sys.argv[2]
config = AutoConfig.from_pretrained(folder)
processor = AutoImageProcessor.from_pretrained(folder)
model = AutoModelForUniversalSegmentation.from_pretrained(folder)
segments = pipeline("image-segmentation", model=folder)(Image.open(image).convert("RGB"))
print("LOADED", type(config).__name__, type(processor).__name__, type(model).__name__, len(segments))
"""


def test_the_shipped_folders_are_found():
    names = {folder.relative_to(ROOT).as_posix() for folder in FOLDERS}
    assert {"demo/model", "modeling_ecom2f/experiments/parents/maze_rooms"} <= names, names


@pytest.mark.slow
@pytest.mark.parametrize("folder", FOLDERS, ids=[folder.relative_to(ROOT).as_posix() for folder in FOLDERS])
def test_shipped_folder_loads_without_the_remote_code_prompt(folder):
    for name in ("config.json", "preprocessor_config.json"):
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        modules = {ref.split(".")[0] for ref in (data.get("auto_map") or {}).values()}
        missing = [m for m in modules if not (folder / f"{m}.py").is_file()]
        assert not missing, f"{folder / name} has an auto_map naming code the folder lacks: {missing}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", CLIENT, str(folder), str(IMAGE)], cwd=ROOT, env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert "custom code" not in output and "trust_remote_code" not in output, output[-3000:]
    assert run.returncode == 0, output[-3000:]
    loaded = run.stdout.split("LOADED", 1)[1].split()
    assert loaded[:3] == ["EcoMask2FormerConfig", "EcoMask2FormerImageProcessor",
                          "EcoMask2FormerForUniversalSegmentation"], loaded
    assert int(loaded[3]) >= 1, loaded


def test_the_demo_exporter_drops_auto_map_from_both_json_files(tmp_path):
    """`demo/export_demo_model.py` copies a Hub export (code files and `auto_map`) into a folder without code."""
    demo_engine()  # the exporter imports it by its module name
    spec = importlib.util.spec_from_file_location("export_demo_model", DEMO / "export_demo_model.py")
    exporter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exporter)
    export = tmp_path / "hub_export"
    export.mkdir()
    config = {"model_type": "eco_mask2former", "exit_layers": [2, 3],
              "auto_map": {"AutoConfig": "configuration_ecom2f.EcoMask2FormerConfig"}}
    processor = {"image_processor_type": "EcoMask2FormerImageProcessor", "size_divisor": 32,
                 "auto_map": {"AutoImageProcessor": "image_processing_ecom2f.EcoMask2FormerImageProcessor"}}
    (export / "config.json").write_text(json.dumps(config))
    (export / "preprocessor_config.json").write_text(json.dumps(processor))
    (export / "model.safetensors").write_bytes(b"weights")
    (export / "image_processing_ecom2f.py").write_text("# custom code the copy leaves behind\n")
    out = tmp_path / "model"
    written = exporter.copy_model(export, out, command="the main job")
    config.pop("auto_map"), processor.pop("auto_map")
    assert written == config == json.loads((out / "config.json").read_text())
    assert json.loads((out / "preprocessor_config.json").read_text()) == processor
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
