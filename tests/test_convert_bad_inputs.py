"""Bad input to the converter: one clear `ConversionError` each, and never a half-written output folder."""

from __future__ import annotations

import datetime
import pickle
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from helpers.detectron2 import SWIN_T_COCO, random_checkpoint, save_checkpoint, tiny
from modeling_ecom2f.convert import ConversionError, convert_checkpoint
from modeling_ecom2f.convert.cli import main as cli_main


@pytest.fixture(scope="module")
def eco_state() -> dict[str, torch.Tensor]:
    return random_checkpoint(tiny(SWIN_T_COCO["eco_m2f_swint_coco"]))


def _fails(path: Path, out: Path, match: str, **kwargs) -> None:
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(path, out, **{"preset": "coco-panoptic", **kwargs})
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
def test_truncated_file(tmp_path, eco_state, fmt):
    path = save_checkpoint(eco_state, tmp_path / f"eco.{fmt}", fmt=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _fails(path, tmp_path / "out", "truncated or corrupt")


def test_missing_file(tmp_path):
    _fails(tmp_path / "nowhere.pth", tmp_path / "out", "no such checkpoint file")


@pytest.mark.parametrize("content", ["text", "list", "transformers"])
def test_not_a_detectron2_file(tmp_path, content):
    path = tmp_path / "file.bin"
    if content == "text":
        path.write_text("model: not a checkpoint\n")
        match = "truncated or corrupt|not a weights-only"
    elif content == "list":
        torch.save([torch.zeros(2)], path)
        match = "not a detectron2 checkpoint"
    else:  # a transformers state dict: right weights, wrong names
        torch.save({"model.pixel_level_module.decoder.level_embed": torch.zeros(3, 32)}, path)
        match = "not a detectron2 Mask2Former-family checkpoint"
    _fails(path, tmp_path / "out", match)


@pytest.mark.parametrize("kind", ["mask_rcnn", "maskformer_v1", "no_deformable_encoder", "unknown_backbone"])
def test_another_architecture(tmp_path, eco_state, kind):
    if kind == "mask_rcnn":
        state = {"backbone.bottom_up.stem.conv1.weight": torch.zeros(64, 3, 7, 7),
                 "roi_heads.box_predictor.cls_score.weight": torch.zeros(81, 1024)}
        match = "not a detectron2 Mask2Former-family checkpoint"
    elif kind == "maskformer_v1":
        state = dict(eco_state) | {"sem_seg_head.predictor.transformer.decoder.norm.weight": torch.ones(32)}
        match = "MaskFormer"
    elif kind == "no_deformable_encoder":
        state = {k: v for k, v in eco_state.items() if ".transformer.encoder." not in k}
        match = "no deformable encoder"
    else:
        state = {k.replace("backbone.patch_embed", "backbone.stem_x"): v for k, v in eco_state.items()}
        match = "unknown backbone"
    _fails(save_checkpoint(state, tmp_path / "other.pth", fmt="pth"), tmp_path / "out", match)


def test_wrong_preset_names_the_class_counts(tmp_path):
    state = random_checkpoint(tiny(SWIN_T_COCO["eco_m2f_swint_cityscapes"]))
    path = save_checkpoint(state, tmp_path / "city.pth", fmt="pth")
    _fails(path, tmp_path / "out", r"19 classes but preset 'coco-panoptic' \(133 classes\).*cityscapes-panoptic")
    _fails(path, tmp_path / "out", r"19 classes but preset 'coco-panoptic'",  # the release's data set
           preset=None, release="eco-m2f-swin-tiny-coco-beta0.02")
    _fails(path, tmp_path / "out", "release 'proscale-swin-tiny-333-coco' is a proscale swin checkpoint",
           preset="cityscapes-panoptic", release="proscale-swin-tiny-333-coco")
    _fails(path, tmp_path / "out", "name the data set", preset=None)


def test_unknown_missing_and_misshapen_keys_are_named(tmp_path, eco_state):
    extra = dict(eco_state) | {"sem_seg_head.predictor.extra_head.weight": torch.zeros(2, 2)}
    _fails(save_checkpoint(extra, tmp_path / "a.pth", fmt="pth"), tmp_path / "out",
           "unknown source key 'sem_seg_head.predictor.extra_head.weight'")
    missing = {k: v for k, v in eco_state.items() if k != "sem_seg_head.predictor.transformer_ffn_layers.1.norm.bias"}
    _fails(save_checkpoint(missing, tmp_path / "b.pth", fmt="pth"), tmp_path / "out",
           "target key 'model.transformer_module.decoder.layers.1.final_layer_norm.bias'.*no source")
    misshapen = dict(eco_state) | {"sem_seg_head.predictor.class_embed.bias": torch.zeros(7)}
    _fails(save_checkpoint(misshapen, tmp_path / "c.pth", fmt="pth"), tmp_path / "out",
           "shape mismatch: source 'sem_seg_head.predictor.class_embed.bias'")
    index = "backbone.layers.0.blocks.1.attn.relative_position_index"
    wrong_index = dict(eco_state) | {index: eco_state[index].flip(0)}
    _fails(save_checkpoint(wrong_index, tmp_path / "d.pth", fmt="pth"), tmp_path / "out", f"source '{index}' differs")


def test_pickled_objects_need_trust(tmp_path, eco_state):
    pth = tmp_path / "with_cfg.pth"
    torch.save({"model": eco_state, "cfg": Namespace(lr=1.0)}, pth)
    _fails(pth, tmp_path / "out", "--trust-pickle")
    pkl = tmp_path / "with_date.pkl"
    with open(pkl, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in eco_state.items()}, "date": datetime.date(2024, 4, 1)}, handle)
    _fails(pkl, tmp_path / "out", "not a weights-only pickle.*--trust-pickle")
    for path in (pth, pkl):
        result = convert_checkpoint(path, tmp_path / f"trusted-{path.suffix[1:]}", preset="coco-panoptic",
                                    trust_pickle=True, verify=False)
        assert result.source.dropped_entries in (("cfg",), ("date",))


def test_existing_output_is_kept_unless_overwrite(tmp_path, eco_state):
    path = save_checkpoint(eco_state, tmp_path / "eco.pth", fmt="pth")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="exists and is not empty"):
        convert_checkpoint(path, out, preset="coco-panoptic")
    assert (out / "keep.txt").read_text() == "mine"
    convert_checkpoint(path, out, preset="coco-panoptic", overwrite=True, verify=False)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_command_line_errors_exit_2_with_the_message(tmp_path, eco_state, capsys):
    path = save_checkpoint(eco_state, tmp_path / "eco.pth", fmt="pth")
    labels = tmp_path / "labels.json"
    labels.write_text('{"0": "a", "2": "c"}')
    assert cli_main([str(path), str(tmp_path / "out"), "--id2label", str(labels)]) == 2
    assert "class indices must be 0..1" in capsys.readouterr().err
    assert cli_main([str(path), str(tmp_path / "out"), "--preset", "ade20k-panoptic"]) == 2
    assert "133 classes but preset 'ade20k-panoptic'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
