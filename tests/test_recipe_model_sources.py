"""Step 1 starts from every supported source: a stock Mask2Former folder, an EcoMask2Former folder (also turned into
a combined PRO-SCALE + early-exit model), a fresh PRO-SCALE config, a timm backbone, and a data set given through a
column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.recipe import TINY_MODEL, TINY_SYNTHETIC, load_example, read_json

ONE_STEP = ["--max_train_steps", "1", "--per_device_train_batch_size", "2", "--eval_depths"]


def _train(argv, out: Path) -> dict:
    summary = load_example("train_early_exit").main(argv + ONE_STEP + ["--output_dir", str(out)])
    assert summary["finished"] and summary["completed_steps"] == 1
    return read_json(out / "config.json")


def test_from_a_stock_mask2former_folder(tmp_path):
    from helpers.models import tiny_stock_config
    from transformers import Mask2FormerForUniversalSegmentation

    Mask2FormerForUniversalSegmentation(tiny_stock_config(num_labels=5)).save_pretrained(tmp_path / "stock")
    config = _train(TINY_SYNTHETIC + ["--model_name_or_path", str(tmp_path / "stock"), "--exit_layers", "1", "3", "4"],
                    tmp_path / "out")
    assert config["model_type"] == "eco_mask2former" and config["exit_layers"] == [1, 3, 4]
    assert len(config["id2label"]) == 10  # the synthetic classes replaced the checkpoint's 5


def test_from_an_eco_folder_into_a_combined_proscale_model(tiny_chain, tmp_path):
    parent = tiny_chain["paths"]["step1"]
    config = _train(tiny_chain["disk"] + ["--model_name_or_path", str(parent), "--token_scaling_layers", "1", "1", "1",
                                            "--token_recalibration", "--light_pixel_embedding"], tmp_path / "out")
    assert config["token_scaling_layers"] == [1, 1, 1] and config["token_recalibration"]
    assert config["light_pixel_embedding"] and config["exit_layers"] == [2, 3]


def test_fresh_proscale_config(tmp_path):
    config = _train(TINY_SYNTHETIC + TINY_MODEL + ["--token_scaling_layers", "1", "1", "1", "--exit_layers", "1", "2",
                                                   "3"], tmp_path / "out")
    assert config["token_scaling_layers"] == [1, 1, 1] and config["exit_layers"] == [1, 2, 3]


def test_fresh_timm_backbone(tmp_path):
    pytest.importorskip("timm")
    config = _train(TINY_SYNTHETIC + ["--backbone", "timm:resnet10t", "--feature_size", "32", "--encoder_layers", "2",
                                      "--decoder_layers", "1", "--num_queries", "6", "--train_num_points", "128"],
                    tmp_path / "out")
    assert config["backbone_config"]["model_type"] == "timm_backbone"


def test_a_data_set_through_a_column_mapping(tmp_path):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    images, maps = [], []
    for _ in range(4):
        classes = np.zeros((64, 64), np.uint8)
        classes[16:40, 8:30] = 1
        classes[40:, :] = 2
        images.append(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
        maps.append(Image.fromarray(classes))
    source = datasets.Dataset.from_dict({"picture": images, "classes": maps},
                                        features=datasets.Features({"picture": datasets.Image(),
                                                                    "classes": datasets.Image()}))
    datasets.DatasetDict({"train": source, "validation": source}).save_to_disk(str(tmp_path / "source"))
    labels = json.dumps({"id2label": {"0": "sky", "1": "box", "2": "ground"}, "thing_ids": [1]})
    config = _train(["--dataset", "mapped", "--dataset_path", str(tmp_path / "source"), "--annotation_format",
                     "semantic", "--image_column", "picture", "--annotation_column", "classes", "--label_info", labels,
                     "--image_size", "64"] + TINY_MODEL, tmp_path / "out")
    assert config["id2label"] == {"0": "sky", "1": "box", "2": "ground"}
