"""Hub folder: layout, card, bad inputs, and loading the folder in a fresh process without the project."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import Mask2FormerForUniversalSegmentation

from helpers.hub_fixtures import (
    PROCESSOR_KWARGS,
    eval_results_for,
    gate_choice,
    reference_outputs,
    save_model_folder,
    tiny_png,
    tiny_processor,
    trained_gate_model,
    write_test_images,
)
from helpers.hub_outputs import assert_same_outputs
from helpers.models import tiny_stock_config
from helpers.fake_hub import REPO_ROOT, client_env, run_python
from hub.card import EvalResultsError
from hub.ecom2f_folder import main, write_model_hub_folder
from hub.folder import NotAnEcoModelError, UntrainedGateWarning
from hub.sources import PROJECT_PACKAGES, HubSourceError, collect_code_files

REPO_ID = "tester/eco-tiny"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained-gate tiny model exported with `python -m hub.ecom2f_folder` from the repository root."""
    tmp = tmp_path_factory.mktemp("export")
    model, processor = trained_gate_model(), tiny_processor()
    saved = save_model_folder(tmp / "saved", model=model, processor=processor)
    results = eval_results_for(model.config)
    (tmp / "results.json").write_text(json.dumps(results))
    plot = tiny_png(tmp / "plot.png")
    export = tmp / "export"
    run_python(
        ["-m", "hub.ecom2f_folder", str(saved), str(export), "--eval-results", str(tmp / "results.json"),
         "--plot", str(plot), "--repo-id", REPO_ID, "--license", "apache-2.0"],
        env=client_env(hub=None, home=tmp / "hf_home"), cwd=REPO_ROOT, project_importable=True,
    )
    return SimpleNamespace(tmp=tmp, model=model, processor=processor, saved=saved, export=export, results=results,
                           plot=plot)


def test_hub_folder_layout(exported):
    export = exported.export
    code = {f.name for f in collect_code_files()}
    assert {"configuration_ecom2f.py", "modeling_ecom2f.py", "image_processing_ecom2f.py", "ecom2f_gate.py"} <= code
    expected = code | {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                       "pq_gflops_tradeoff.png", "ecom2f_eval_results.json"}
    assert {p.name for p in export.iterdir()} == expected

    config = json.loads((export / "config.json").read_text())
    model_ref = "modeling_ecom2f.EcoMask2FormerForUniversalSegmentation"
    assert config["auto_map"] == {"AutoConfig": "configuration_ecom2f.EcoMask2FormerConfig",
                                  "AutoModel": "modeling_ecom2f.EcoMask2FormerModel",
                                  "AutoModelForUniversalSegmentation": model_ref,
                                  "AutoModelForImageSegmentation": model_ref}
    assert config["model_type"] == "eco_mask2former" and config["gate_trained"] is True
    processor = json.loads((export / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_ecom2f.EcoMask2FormerImageProcessor"}
    assert processor["size"] == PROCESSOR_KWARGS["size"]

    for name in code:  # flat files: relative sibling imports only, each sibling present
        tree = ast.parse((export / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (export / f"{node.module}.py").is_file(), (name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not {m.split(".")[0] for m in modules} & PROJECT_PACKAGES, (name, modules)
    assert "from .configuration_ecom2f import EcoMask2FormerConfig" in (export / "modeling_ecom2f.py").read_text()
    for name in code:  # the custom code stands alone: it names no project notes or docs the repository lacks
        assert not re.findall(r"[\w-]+\.md\b|\bdocs/", (export / name).read_text()), name

    weights, saved = load_file(export / "model.safetensors"), load_file(exported.saved / "model.safetensors")
    assert weights.keys() == saved.keys() and all(torch.equal(weights[k], saved[k]) for k in saved)
    assert (export / "pq_gflops_tradeoff.png").read_bytes() == exported.plot.read_bytes()


def test_model_card(exported):
    card = (exported.export / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-segmentation"
    assert meta["license"] == "apache-2.0" and {"eco-m2f", "mask2former"} <= set(meta["tags"])
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    results = exported.results
    expected = [v for e in results["exits"] for v in (e["pq"], e["gflops"])] + [results["gate"]["pq"],
                                                                                results["gate"]["gflops"]]
    assert [m["value"] for m in metrics] == expected
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "Synthetic shapes"
    for entry in results["exits"]:
        assert f"| exit at {entry['depth']} layers | {entry['pq']:g} | {entry['gflops']:g} |" in body
    assert f"| gate (mean {results['gate']['mean_depth']:g} layers) | {results['gate']['pq']:g} |" in body
    assert "](pq_gflops_tradeoff.png)" in body and "The gate is trained" in body
    assert f'from_pretrained("{REPO_ID}", trust_remote_code=True)' in body
    assert f'pipeline("image-segmentation", model="{REPO_ID}", trust_remote_code=True)' in body


@pytest.mark.slow
def test_hub_folder_loads_in_a_fresh_process_without_the_project(exported):
    images = write_test_images(exported.tmp / "images")
    out, cwd = exported.tmp / "fresh.pt", exported.tmp / "cwd"
    cwd.mkdir()
    run_python(
        [str(REPO_ROOT / "tests" / "_hub_load_client.py"), str(exported.export), str(out), *map(str, images),
         "--threads", str(torch.get_num_threads()), "--prove-block", str(REPO_ROOT)],
        env=client_env(hub=None, home=exported.tmp / "hf_home_fresh"), cwd=cwd, project_importable=False,
    )
    report = torch.load(out, weights_only=False)
    assert all(report["visible_before_block"].values())  # the project was importable, and the block hid it
    assert not any(report["visible_after_block"].values()) and not any(report["visible_at_end"].values())
    assert report["project_modules_loaded"] == []
    assert not [m for m in report["pipeline_load_messages"] if "is not supported" in m]  # the exported code lists it
    assert all(name.startswith("transformers_modules.") for name in report["classes"].values()), report["classes"]
    base = report["base_model"]  # AutoModel resolves to the base model through auto_map, with every weight used
    assert base["class"].startswith("transformers_modules.") and base["class"].endswith(".EcoMask2FormerModel")
    assert not base["loading_info"]["missing_keys"] and not base["loading_info"]["mismatched_keys"]

    expected = reference_outputs(model=exported.model, processor=exported.processor, image_paths=images)
    depth = gate_choice(exported.model.config)
    assert report["outputs"]["encoder_layers_used"].tolist() == [depth] * len(images)
    assert all(len(found) > 0 for found in expected["panoptic"])  # the comparison is not vacuous
    assert_same_outputs(report["outputs"], expected)


@pytest.fixture(scope="module")
def untrained_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrained")
    return save_model_folder(folder, model=trained_gate_model(gate_trained=False), processor=tiny_processor())


def test_untrained_gate_and_no_results(untrained_folder, tmp_path):
    with pytest.warns(UntrainedGateWarning, match="never trained"):
        out = write_model_hub_folder(model_dir=untrained_folder, output_dir=tmp_path / "export")
    card = (out / "README.md").read_text()
    assert "Metrics were not measured" in card and "model-index" not in card and "| Encoder depth |" not in card
    assert "**The gate of this model was never trained**" in card
    assert not (out / "pq_gflops_tradeoff.png").exists() and not (out / "ecom2f_eval_results.json").exists()


def _stock_folder(folder: Path) -> Path:
    Mask2FormerForUniversalSegmentation(tiny_stock_config()).save_pretrained(folder)
    return folder


NOT_ECO = {
    "missing": (lambda tmp: tmp / "nowhere", "does not exist"),
    "empty": (lambda tmp: tmp, "has no config.json"),
    "stock_mask2former": (_stock_folder, "model_type='mask2former', not 'eco_mask2former'"),
    "not_json": (lambda tmp: (tmp / "config.json").write_text("{oops") and tmp, "is not a JSON object"),
    "no_weights": (lambda tmp: (tmp / "config.json").write_text('{"model_type": "eco_mask2former"}') and tmp,
                   "has no safetensors weights"),
}


@pytest.mark.parametrize("case", sorted(NOT_ECO))
def test_not_an_ecom2f_folder(tmp_path, case):
    make, message = NOT_ECO[case]
    source = tmp_path / "model"
    source.mkdir()
    with pytest.raises(NotAnEcoModelError, match=message):
        write_model_hub_folder(model_dir=make(source), output_dir=tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_mismatched_weights_and_the_command_line(untrained_folder, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((untrained_folder / "config.json").read_text())
    config.update(num_labels=7, id2label={str(i): f"c{i}" for i in range(7)}, label2id={f"c{i}": i for i in range(7)})
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes((untrained_folder / "model.safetensors").read_bytes())
    assert main([str(broken), str(tmp_path / "export")]) == 2
    assert "do not load into EcoMask2Former" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


BAD_RESULTS = {
    "unknown_key": (lambda r: r | {"extra": 1}, r"unknown keys \['extra'\]"),
    "no_dataset": (lambda r: {k: v for k, v in r.items() if k != "dataset"}, r"missing \['dataset'\]"),
    "nothing_measured": (lambda r: {"dataset": "x"}, "need 'exits', 'gate' or both"),
    "depth_not_an_exit": (lambda r: r | {"exits": [{"depth": 9, "pq": 1.0, "gflops": 1.0}]}, r"exits\[0\].depth=9"),
    "pq_above_100": (lambda r: r | {"exits": [{"depth": 2, "pq": 140, "gflops": 1.0}]}, r"exits\[0\].pq=140"),
    "zero_gflops": (lambda r: r | {"gate": r["gate"] | {"gflops": 0}}, r"gate.gflops=0 is outside \(0"),
    "mean_depth_too_deep": (lambda r: r | {"gate": r["gate"] | {"mean_depth": 9.5}}, r"gate.mean_depth=9.5"),
    "duplicate_exit": (lambda r: r | {"exits": r["exits"][:1] * 2}, "appears twice"),
    "pq_not_a_number": (lambda r: r | {"gate": r["gate"] | {"pq": "high"}}, "gate.pq must be a finite number"),
}


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_bad_eval_results(untrained_folder, tmp_path, case):
    mutate, message = BAD_RESULTS[case]
    results = mutate(eval_results_for(trained_gate_model().config))
    with pytest.raises(EvalResultsError, match=message):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=tmp_path / "export", eval_results=results)
    assert not (tmp_path / "export").exists()


def test_bad_files_and_existing_output(untrained_folder, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EvalResultsError, match="is not valid JSON"):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=tmp_path / "a", eval_results=tmp_path / "bad.json")
    (tmp_path / "plot.png").write_text("not a png")
    with pytest.raises(ValueError, match="is not a PNG file"):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=tmp_path / "a", plot=tmp_path / "plot.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=tmp_path / "a", plot=tmp_path / "missing.png")
    with pytest.raises(ValueError, match="must be outside the model folder"):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=untrained_folder / "export")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):  # checked before anything is loaded
        write_model_hub_folder(model_dir=untrained_folder, output_dir=occupied)
    assert (occupied / "keep.txt").read_text() == "mine"
    with pytest.warns(UntrainedGateWarning):
        write_model_hub_folder(model_dir=untrained_folder, output_dir=occupied, overwrite=True)
    assert not (occupied / "keep.txt").exists() and (occupied / "config.json").is_file()


SOURCE_CASES = {
    "sibling_is_followed": ("from .helper_mod import x\n", None),
    "absolute_project_import": ("from modeling_ecom2f.ecom2f_gate import EcoExitGate\n",
                                "absolute import of a project module"),
    "plain_project_import": ("import hub.card\n", "imports a project package"),
    "sub_package": ("from .data.labels import x\n", "imports a sub-package"),
    "from_dot_import": ("from . import helper_mod\n", "is not followed by transformers"),
    "missing_sibling": ("from .not_there import x\n", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(SOURCE_CASES))
def test_source_import_rules(tmp_path, monkeypatch, case):
    line, message = SOURCE_CASES[case]
    package = tmp_path / f"ecom2f_probe_{case}"  # one package per case: the import system caches packages
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper_mod.py").write_text("x = 1\n")
    (package / "modeling_probe.py").write_text(
        "import torch\nfrom configuration.configuration_ecom2f import (\n    EcoMask2FormerConfig,\n)\n" + line
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    if message is not None:
        with pytest.raises(HubSourceError, match=message):
            collect_code_files(entry_modules=(f"{package.name}.modeling_probe",))
        return
    files = {f.name: f.text for f in collect_code_files(entry_modules=(f"{package.name}.modeling_probe",))}
    assert set(files) == {"modeling_probe.py", "helper_mod.py", "configuration_ecom2f.py"}
    assert "from .configuration_ecom2f import (\n    EcoMask2FormerConfig,\n)" in files["modeling_probe.py"]
