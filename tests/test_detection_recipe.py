"""The detection entry points (examples/detection/*_detr.py) run the shared recipe steps with the detection task:
a two-step run of each script in this process on tiny synthetic data, step 2's stored per-image box AP equals a
direct `per_image_box_ap` evaluation, the short trade-off driver writes its table, and bad inputs fail clearly."""

from __future__ import annotations

import importlib.util
import math
import shlex

import numpy as np
import pytest
import torch

from helpers.recipe import DETECTION_DATA as DATA
from helpers.recipe import REPO, TINY_DETR, load_detection_example, read_json

from modeling_ecom2f import EcoDeformableDetrForObjectDetection, EcoDeformableDetrImageProcessor  # noqa: E402
from modeling_ecom2f.data import decode_row, detection_reference  # noqa: E402
from modeling_ecom2f.metrics import per_image_box_ap  # noqa: E402
from modeling_ecom2f.recipe import (  # noqa: E402
    build_detection_derive_exit_dataset_parser,
    build_train_early_exit_parser,
    get_task,
    load_derived_dataset,
    quality_matrix,
)
from modeling_ecom2f.recipe.data import load_split  # noqa: E402

def _fraction(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_each_detection_script_runs_and_writes_its_outputs(detection_chain):
    paths, summaries = detection_chain["paths"], detection_chain["summaries"]
    step1 = summaries["step1"]
    assert step1["finished"] and step1["completed_steps"] == 2 and sum(step1["depths_sampled_this_run"].values()) == 2
    assert set(step1["validation"]) == {"depth_2", "depth_3"}
    assert all(_fraction(v["box_ap"]) for v in step1["validation"].values())
    assert read_json(paths["step1"] / "config.json")["model_type"] == "eco_deformable_detr"
    assert read_json(paths["step1"] / "preprocessor_config.json")["image_processor_type"].startswith("EcoDeformable")

    info = read_json(paths["step2"] / "derived_info.json")
    assert info["task"] == "detection" and info["quality"] == "box_ap" and info["exit_layers"] == [2, 3]
    histograms = read_json(paths["step2"] / "label_histograms.json")["betas"]
    assert sum(histograms["0.01"]["counts"].values()) == summaries["step2"]["num_images"] == 8

    gate = summaries["step3"]
    assert gate["finished"] and read_json(paths["gate"] / "config.json")["gate_trained"] is True
    assert gate["train"]["num_images"] + gate["holdout"]["num_images"] == 8
    assert "mean_box_ap_of_gate_choice" in gate["train"] and _fraction(gate["validation"]["box_ap"])

    report = read_json(paths["eval"] / "evaluation.json")
    assert set(report["modes"]) == {"depth_2", "depth_3", "gate_beta0.01", "random_gate_beta0.01", "oracle_beta_0.01"}
    for name, mode in report["modes"].items():
        assert mode["num_images"] == 4 and sum(mode["depth_histogram"].values()) == 4, name
        assert _fraction(mode["box_ap"]) and _fraction(mode["mean_per_image_ap"]), name
    d2, d3 = report["modes"]["depth_2"]["gflops"], report["modes"]["depth_3"]["gflops"]
    assert d3["encoder_mean"] == pytest.approx(1.5 * d2["encoder_mean"])  # identical layers: linear in depth
    assert d3["total_mean"] > d2["total_mean"] > d2["encoder_mean"] > 0
    table = (paths["eval"] / "evaluation.md").read_text()
    assert "| mode | box AP |" in table and "oracle_beta_0.01" in table
    assert (paths["eval"] / "tradeoff.png").is_file()


def test_oracle_picks_the_best_depth_per_image_by_box_ap(detection_chain):
    per_image = read_json(detection_chain["paths"]["eval"] / "per_image.json")
    for row2, row3, oracle in zip(per_image["depth_2"], per_image["depth_3"], per_image["oracle_beta_0.01"]):
        best = 2 if row2["box_ap"] - 0.02 >= row3["box_ap"] - 0.03 else 3
        assert oracle["depth"] == best and oracle["box_ap"] == (row2 if best == 2 else row3)["box_ap"]


def test_stored_box_ap_equals_a_direct_per_image_evaluation(detection_chain):
    paths = detection_chain["paths"]
    derived, info = load_derived_dataset(paths["step2"])
    exits = info["exit_layers"]
    stored = quality_matrix(derived, exits, column="box_ap")
    args = build_detection_derive_exit_dataset_parser().parse_args(DATA + ["--model_name_or_path", "unused"])
    train, label_info = load_split(args, "train")
    model = EcoDeformableDetrForObjectDetection.from_pretrained(paths["step1"]).eval()
    processor = EcoDeformableDetrImageProcessor.from_pretrained(paths["step1"])
    direct = np.zeros_like(stored)
    direct50 = np.zeros_like(stored)
    for i, row in enumerate(train):
        image, _, _, image_id = decode_row(row)
        reference = detection_reference(row, label_info=label_info)
        inputs = processor(images=[image], return_tensors="pt")
        for j, depth in enumerate(exits):  # one image alone at one depth
            with torch.no_grad():
                outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"],
                                num_encoder_layers=depth)
            prediction = processor.post_process_object_detection(outputs, threshold=0.0,
                                                                 target_sizes=[reference["size"]])[0]
            score = per_image_box_ap(prediction, reference, score_threshold=0.5)
            direct[i, j], direct50[i, j] = score.ap, score.ap50
        assert derived[i]["image_id"] == image_id and derived[i]["index"] == i
        assert derived[i]["num_ground_truth"] == len([a for a in reference["annotations"] if not a["iscrowd"]])
    np.testing.assert_allclose(stored, direct, atol=1e-6)
    np.testing.assert_allclose(quality_matrix(derived, exits, column="ap50"), direct50, atol=1e-6)


def test_tradeoff_driver_writes_the_table(tmp_path):
    module_path = REPO / "examples" / "detection" / "run_detection_tradeoff.py"
    spec = importlib.util.spec_from_file_location("detection_tradeoff_driver", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        result = module.main(["--output_dir", str(tmp_path / "run"), "--docs_dir", str(tmp_path / "docs"),
                              "--image_size", "96", "--train_images", "8", "--validation_images", "4",
                              "--step1_steps", "2", "--batch_size", "4", "--betas", "0.01", "--num_threads", "1",
                              f"--model={shlex.join(TINY_DETR)}"])
    finally:
        torch.set_num_threads(threads)
    saved = read_json(tmp_path / "docs" / "detection_tradeoff.json")
    assert {"depth_2", "depth_3", "gate_beta0.01", "random_gate_beta0.01", "oracle_beta_0.01"} == set(saved["modes"]) == set(result["modes"])
    text = (tmp_path / "docs" / "detection_tradeoff.md").read_text()
    assert "run_detection_tradeoff.py --output_dir" in text and "| gate_beta0.01 |" in text


def test_segmentation_parsers_are_unchanged_and_detection_parsers_say_so():
    assert not hasattr(build_train_early_exit_parser().parse_args([]), "task")
    assert get_task(build_train_early_exit_parser().parse_args([])).name == "segmentation"
    args = build_detection_derive_exit_dataset_parser().parse_args(["--model_name_or_path", "x"])
    assert args.task == "detection" and get_task(args).quality == "box_ap"
    assert args.output_dir == "outputs/detection/step2_derived"


def _fails(example, argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        example.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_checkpoints_of_the_other_task_are_clear_errors(detection_chain, tmp_path, capsys):
    from helpers.models import tiny_stock_config
    from transformers import Mask2FormerForUniversalSegmentation

    Mask2FormerForUniversalSegmentation(tiny_stock_config()).save_pretrained(tmp_path / "mask2former")
    err = _fails(load_detection_example("derive_exit_dataset_detr"), DATA + [
        "--model_name_or_path", str(tmp_path / "mask2former"), "--output_dir", str(tmp_path / "out")], capsys)
    assert "holds a 'mask2former' model" in err and "detection recipe needs a Deformable DETR" in err
    from helpers.recipe import load_example

    err = _fails(load_example("derive_exit_dataset"), DATA + [
        "--model_name_or_path", str(detection_chain["paths"]["step1"]), "--output_dir", str(tmp_path / "out")], capsys)
    assert "holds a 'eco_deformable_detr' model" in err
    err = _fails(load_detection_example("evaluate_detr"), DATA + [
        "--model_name_or_path", str(detection_chain["paths"]["step1"]), "--gate_models", str(detection_chain["paths"]["step1"]),
        "--output_dir", str(tmp_path / "eval")], capsys)
    assert "has no trained gate" in err


def test_detection_utility_gate_through_the_task_adapter(detection_chain, tmp_path):
    paths = detection_chain["paths"]
    summary = load_detection_example("train_gate_detr").main(DATA + [
        "--model_name_or_path", str(paths["step1"]), "--derived_dataset", str(paths["step2"]), "--gate_objective",
        "utility", "--target_encoder_fraction", "0.9", "--output_dir", str(tmp_path / "utility"),
        "--num_train_epochs", "2", "--per_device_train_batch_size", "2"])
    config = read_json(tmp_path / "utility" / "config.json")
    assert config["gate_objective"] == "utility" and config["gate_beta"] == pytest.approx(summary["beta"])
    assert "mean_box_ap_per_exit" in summary["train"] and _fraction(summary["validation"]["box_ap"])
    load_detection_example("evaluate_detr").main(DATA + [
        "--model_name_or_path", str(paths["step1"]), "--gate_models", str(tmp_path / "utility"), "--gate_betas", "0",
        "10", "--output_dir", str(tmp_path / "eval")])
    report = read_json(tmp_path / "eval" / "evaluation.json")
    assert {"gate_utility_beta0", "gate_utility_beta10", "random_gate_utility_beta10"} <= set(report["modes"])
    assert report["modes"]["gate_utility_beta10"]["depth_histogram"] == {"2": 4, "3": 0}
