"""`ecom2f-convert` on state dicts with exactly the authors' key layouts: the layouts themselves, every released
family (ECO-M2F COCO and Cityscapes, PRO-SCALE, stock Mask2Former) from `.pth` and `.pkl`, the key accounting, the
written folder (from_pretrained, pipeline, model card), and the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

from helpers.detectron2 import SWIN_T_COCO, D2Params, detectron2_layout, random_checkpoint, save_checkpoint, tiny
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.convert import PRESETS, convert_checkpoint, detect_architecture
from modeling_ecom2f.convert.cli import main as cli_main

MANIFESTS = Path(__file__).parent / "data" / "official_checkpoints"
PRESET_OF = {"eco_m2f_swint_cityscapes": "cityscapes-panoptic"}
R50_PROSCALE = replace(SWIN_T_COCO["proscale_swint_coco"], backbone="resnet", resnet_depths=(1, 1, 1, 1))


@pytest.mark.parametrize("name", sorted(SWIN_T_COCO))
def test_layout_builder_reproduces_the_authors_manifests(name):
    manifest = json.loads((MANIFESTS / f"{name}.json").read_text())
    expected = {k: (v["shape"], v["dtype"]) for k, v in manifest["keys"].items()}
    assert len(expected) == manifest["num_keys"]
    assert detectron2_layout(SWIN_T_COCO[name]) == expected


@pytest.mark.parametrize("name", sorted(SWIN_T_COCO))
def test_full_size_layouts_are_recognised(name):
    """The full Swin-T state dicts (shapes only, on the meta device) give the authors' architectures."""
    state = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
             for k, (shape, dtype) in detectron2_layout(SWIN_T_COCO[name]).items()}
    state["criterion.empty_weight"] = torch.full(state["criterion.empty_weight"].shape, 0.1)
    arch = detect_architecture(state)
    assert (arch.backbone.embed_dim, arch.backbone.depths, arch.backbone.num_heads, arch.backbone.window_size) == (
        96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
    assert (arch.num_queries, arch.decoder_layers, arch.feature_size, arch.encoder_n_points) == (100, 10, 256, 4)
    assert arch.num_classes == (19 if "cityscapes" in name else 133)
    expected = {"mask2former_swint_coco": ("mask2former", None, None, False),
                "eco_m2f_swint_coco": ("eco_m2f", (2, 3, 4, 5, 6), None, False),
                "eco_m2f_swint_cityscapes": ("eco_m2f", (2, 3, 4, 5, 6), None, False),
                "proscale_swint_coco": ("proscale", None, [3, 3, 3], True)}[name]
    assert (arch.family, arch.gate_exits, arch.token_scaling_layers, arch.token_recalibration) == expected
    assert arch.light_pixel_embedding == expected[-1] and arch.no_object_weight == pytest.approx(0.1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """Every tiny layout (the authors' names) in both file formats, converted once."""
    root = tmp_path_factory.mktemp("convert")
    out = {}
    for name, params in {**SWIN_T_COCO, "r50_proscale": R50_PROSCALE}.items():
        state = random_checkpoint(tiny(params), seed=len(name))
        for fmt in ("pth", "pkl"):
            path = save_checkpoint(state, root / f"{name}.{fmt}", fmt=fmt, extra={"iteration": 7, "optimizer": {}})
            result = convert_checkpoint(path, root / f"{name}-{fmt}", preset=PRESET_OF.get(name, "coco-panoptic"))
            out[name, fmt] = (state, result)
    return out


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
@pytest.mark.parametrize("name", [*sorted(SWIN_T_COCO), "r50_proscale"])
def test_every_key_is_accounted_for_and_the_folder_loads_strictly(converted, name, fmt):
    state, result = converted[name, fmt]
    report = result.report
    assert set(report.renamed) | set(report.checked) == set(state)  # every source key used exactly once
    assert not set(report.renamed) & set(report.checked)
    model, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(result.output_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    filled = [t for targets in report.renamed.values() for t in targets]
    assert len(filled) == len(set(filled))
    assert set(filled) | set(report.new) == set(model.state_dict())
    reasons = set(report.new.values())
    assert all(("gate" in r) or ("final norm" in r) or ("BatchNorm" in r) for r in reasons)
    files = {p.name for p in result.output_dir.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "conversion.json"} <= files
    record = json.loads((result.output_dir / "conversion.json").read_text())
    assert record["source"]["dropped_top_level_entries"] == (["iteration", "optimizer"] if fmt == "pth" else ["__author__"])
    assert record["source"]["sha256"] == result.source.sha256


def test_the_same_values_whatever_the_file_format(converted):
    a = EcoMask2FormerForUniversalSegmentation.from_pretrained(converted["eco_m2f_swint_coco", "pth"][1].output_dir)
    b = EcoMask2FormerForUniversalSegmentation.from_pretrained(converted["eco_m2f_swint_coco", "pkl"][1].output_dir)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_eco_m2f_checkpoints_run_their_trained_gate_per_image(converted):
    for name, classes in (("eco_m2f_swint_coco", 133), ("eco_m2f_swint_cityscapes", 19)):
        model = EcoMask2FormerForUniversalSegmentation.from_pretrained(converted[name, "pth"][1].output_dir).eval()
        config = model.config
        assert config.gate_trained and config.gate_objective == "classification"
        assert config.exit_layers == [2, 3, 4, 5, 6] and config.num_labels == classes
        with torch.no_grad():
            out = model(pixel_values=torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
        assert out.gate_logits.shape == (3, 5)
        assert set(out.encoder_layers_used.tolist()) <= {2, 3, 4, 5, 6}
        assert torch.equal(out.encoder_layers_used, out.gate_logits.argmax(-1) + 2)


@pytest.mark.parametrize("name", ["proscale_swint_coco", "r50_proscale"])
def test_proscale_checkpoints_have_nine_staged_layers_official_trc_and_lpe(converted, name):
    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(converted[name, "pth"][1].output_dir)
    config = model.config
    assert config.encoder_layers == 9 and config.token_scaling_layers == [3, 3, 3]
    assert config.encoder_levels_per_layer == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert config.token_recalibration and config.token_recalibration_layout == "official"
    assert config.light_pixel_embedding and not config.gate_trained
    decoder = model.model.pixel_level_module.decoder
    assert decoder.token_recalibration.layout == "official"
    assert isinstance(decoder.layer_1[0], torch.nn.MaxPool2d)


def test_pipeline_and_processor_of_a_converted_folder(converted):
    folder = converted["eco_m2f_swint_cityscapes", "pkl"][1].output_dir
    processor_config = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor_config["size"] == {"shortest_edge": 1024, "longest_edge": 2048}
    segmenter = pipeline("image-segmentation", model=str(folder))
    segmenter.image_processor.size = {"shortest_edge": 64, "longest_edge": 128}  # test speed
    image = Image.fromarray(torch.randint(0, 255, (48, 96, 3), dtype=torch.uint8).numpy())
    segments = segmenter(image, subtask="semantic")
    names = set(PRESETS["cityscapes-panoptic"].labels.names)
    assert segments and all(s["label"] in names for s in segments)
    assert all(s["mask"].size == image.size for s in segments)


def test_model_card_names_the_source_and_quotes_the_release(tmp_path):
    path = save_checkpoint(random_checkpoint(tiny(SWIN_T_COCO["eco_m2f_swint_coco"])), tmp_path / "eco.pth", fmt="pth")
    result = convert_checkpoint(path, tmp_path / "out", release="eco-m2f-swin-tiny-coco-beta0.0005")
    card = (tmp_path / "out" / "README.md").read_text()
    assert result.source.sha256 in card and "eco.pth" in card
    assert "Figures reported by the authors" in card and "52.06" in card and "202.39" in card
    assert "https://github.com/GYeow/ECO-M2F" in card and "exits [2, 3, 4, 5, 6]" in card


def test_module_prefix_is_stripped(tmp_path):
    state = random_checkpoint(tiny(SWIN_T_COCO["mask2former_swint_coco"]))
    path = save_checkpoint({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth", fmt="pth")
    result = convert_checkpoint(path, tmp_path / "out", preset="coco-panoptic")
    assert result.source.stripped_prefix == "module." and set(result.report.renamed) | set(result.report.checked) == set(state)


def test_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in PRESETS) and "eco-m2f-swin-tiny-cityscapes-beta0.003" in usage
    assert "--trust-pickle" in usage and "--overwrite" in usage
    path = save_checkpoint(random_checkpoint(tiny(SWIN_T_COCO["proscale_swint_coco"])), tmp_path / "p.pkl", fmt="pkl")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): f"class {i}" for i in range(133)}))
    assert cli_main([str(path), str(tmp_path / "out"), "--id2label", str(labels), "--no-verify"]) == 0
    assert "wrote" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"]["5"] == "class 5"
    assert cli_main([str(path), str(tmp_path / "out"), "--preset", "coco-panoptic"]) == 2  # exists, no --overwrite
    assert "exists and is not empty" in capsys.readouterr().err


def test_hub_folder_of_a_converted_folder_keeps_its_source(converted, tmp_path):
    from hub.ecom2f_folder import write_model_hub_folder

    result = converted["eco_m2f_swint_coco", "pkl"][1]
    exported = write_model_hub_folder(model_dir=result.output_dir, output_dir=tmp_path / "export")
    card = (exported / "README.md").read_text()
    assert "trust_remote_code=True" in card  # the exporter's own card ...
    assert result.source.sha256 in card and "## What the conversion did" in card  # ... plus the provenance
    assert json.loads((exported / "conversion.json").read_text())["source"]["sha256"] == result.source.sha256


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SWIN_T_COCO))
def test_full_size_checkpoints_convert(tmp_path, name):
    """The authors' exact layouts at full Swin-T size (random values), through the whole conversion and its check."""
    state = random_checkpoint(SWIN_T_COCO[name], scale=0.02)
    fmt = "pkl" if name.startswith("eco") else "pth"
    path = save_checkpoint(state, tmp_path / f"{name}.{fmt}", fmt=fmt)
    result = convert_checkpoint(path, tmp_path / "out", preset=PRESET_OF.get(name, "coco-panoptic"))
    assert set(result.report.renamed) | set(result.report.checked) == set(state)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["backbone_config"]["embed_dim"] == 96 and config["feature_size"] == 256
    assert config["encoder_layers"] == (9 if name.startswith("proscale") else 6)
