"""The example scripts run end to end: in this process (steps 1-3, evaluation, the tiny main job) and under
`accelerate launch --num_processes 2` on the CPU (gloo), where every step must really use two processes and give
the single-process results.

Run as a script (what the two-process test launches): `python tests/test_recipe_scripts.py DATA PARENT OUT`.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.recipe import EVAL_BATCH, REPO, TINY_MODEL, load_example, read_json


def _finite_fraction(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_single_process_chain_writes_every_output(tiny_chain):
    chain = tiny_chain
    paths, summaries = chain["paths"], chain["summaries"]
    for name, summary in summaries.items():
        assert summary["num_processes"] == 1, name
    step1 = summaries["step1"]
    assert step1["finished"] and step1["completed_steps"] == 2
    assert sum(step1["depths_sampled_this_run"].values()) == 2
    assert set(step1["validation"]) == {"depth_2", "depth_3"}
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "train_early_exit_summary.json"):
        assert (paths["step1"] / name).is_file(), name
    assert [p.name for p in sorted((paths["step1"] / "checkpoints").iterdir())] == ["step_000001", "step_000002"]

    derived = summaries["step2"]
    for name in ("derived.parquet", "derived_info.json", "label_histograms.json", "label_histograms.txt"):
        assert (paths["step2"] / name).is_file(), name
    histograms = read_json(paths["step2"] / "label_histograms.json")["betas"]
    assert "0.01" in histograms and sum(histograms["0.01"]["counts"].values()) == derived["num_images"] == 12

    gate = summaries["step3"]
    assert gate["finished"] and read_json(paths["gate"] / "config.json")["gate_trained"] is True
    assert gate["train"]["num_images"] + gate["holdout"]["num_images"] == 12
    assert 2.0 <= gate["train"]["expected_depth"] <= 3.0 and 0.0 <= gate["train"]["accuracy"] <= 1.0
    assert _finite_fraction(gate["validation"]["pq"]) and gate["validation"]["gflops"]["encoder_mean"] > 0

    report = read_json(paths["eval"] / "evaluation.json")
    assert set(report["modes"]) == {"depth_2", "depth_3", "gate_beta0.01", "random_gate_beta0.01", "oracle_beta_0.01"}
    for name, mode in report["modes"].items():
        assert mode["num_images"] == 6 and sum(mode["depth_histogram"].values()) == 6, name
        for key in ("pq", "sq", "rq", "miou"):
            assert _finite_fraction(mode[key]), (name, key)
        assert "AP" in mode["mask_ap"]
    d2, d3 = report["modes"]["depth_2"]["gflops"], report["modes"]["depth_3"]["gflops"]
    assert d3["encoder_mean"] == pytest.approx(1.5 * d2["encoder_mean"])  # identical layers: cost linear in depth
    assert d2["encoder_std"] == 0.0 and d3["total_mean"] > d2["total_mean"]
    for name in ("evaluation.md", "tradeoff.png", "per_image.json", "evaluate_model_summary.json"):
        assert (paths["eval"] / name).is_file(), name


def test_random_routing_shuffles_the_gate_decisions(tiny_chain):
    paths = tiny_chain["paths"]
    report = read_json(paths["eval"] / "evaluation.json")
    per_image = read_json(paths["eval"] / "per_image.json")
    gate, control = report["modes"]["gate_beta0.01"], report["modes"]["random_gate_beta0.01"]
    assert control["kind"] == "random_routing" and control["controls"] == "gate_beta0.01"
    assert gate["kind"] == "gate" and gate["gate_objective"] == "classification" and gate["beta"] == 0.01
    assert control["depth_histogram"] == gate["depth_histogram"]
    by_depth = {k: {row["index"]: row["pq"] for row in per_image[f"depth_{k}"]} for k in (2, 3)}
    for row in per_image["random_gate_beta0.01"]:  # each image gets its own result at the depth it was dealt
        assert row["pq"] == by_depth[row["depth"]][row["index"]]


def test_evaluation_of_a_subset_of_depths(tiny_chain, tmp_path):
    chain = tiny_chain
    summary = load_example("evaluate_model").main(chain["disk"] + [
        "--model_name_or_path", str(chain["paths"]["step1"]), "--depths", "3", "--output_dir", str(tmp_path)])
    assert set(summary["modes"]) == {"depth_3"}


def test_oracle_picks_the_best_depth_per_image(tiny_chain):
    paths = tiny_chain["paths"]
    per_image = read_json(paths["eval"] / "per_image.json")
    for row2, row3, oracle in zip(per_image["depth_2"], per_image["depth_3"], per_image["oracle_beta_0.01"]):
        best = 2 if row2["pq"] - 0.02 >= row3["pq"] - 0.03 else 3
        assert oracle["depth"] == best and oracle["pq"] == (row2 if best == 2 else row3)["pq"]


def test_tiny_main_job_single_process(tmp_path):
    summary = load_example("run_eco_m2f").main(["--preset", "tiny", "--output_dir", str(tmp_path / "job"),
                                                "--docs_dir", str(tmp_path / "docs")])
    assert set(summary["timings_s"]) >= {"data", "step1", "step2", "step3_classification", "step3_utility", "eval"}
    for name in ("results_main_job.md", "results_main_job.json", "tradeoff.png"):
        assert (tmp_path / "docs" / name).is_file(), name
    result = read_json(tmp_path / "docs" / "results_main_job.json")
    assert {"wall_seconds", "validation_images", "modes", "checks"} <= set(result)
    assert result["utility_gate_form"] == {"pooling": "mean_std", "hidden_size": 32, "input_level": 0}  # generic
    assert "Utility gate: `mean_std` pooling of input-projected level 0" in (tmp_path / "docs" /
                                                                           "results_main_job.md").read_text()
    modes = {row["name"]: row for row in result["modes"]}
    assert {"depth_2", "depth_3", "gate_beta0.003", "random_gate_beta0.003", "oracle_beta_0.003",
            "gate_utility_beta0", "random_gate_utility_beta0.01"} <= set(modes)
    for row in result["modes"]:
        assert {"kind", "pq", "pq_things", "encoder_gflops_fraction", "mean_depth", "depth_histogram", "beta",
                "gate_objective", "controls"} <= set(row), row["name"]
        assert row["kind"] in ("fixed", "gate", "oracle", "random_routing")
    assert modes["depth_3"]["encoder_gflops_fraction"] == pytest.approx(1.0)
    assert modes["random_gate_utility_beta0.01"]["controls"] == "gate_utility_beta0.01"
    assert modes["gate_utility_beta0.01"]["gain_over_random"] == pytest.approx(
        modes["gate_utility_beta0.01"]["pq"] - modes["random_gate_utility_beta0.01"]["pq"])
    assert set(result["checks"]) == {"validation_images", "full_depth_pq_things", "depth_spread",
                                     "utility_gate_beats_frontier_and_random", "gate_near_full_depth_at_70pct"}
    assert result["benchmark"] == "synthetic" and result["bootstrap"]["resamples"] >= 1000
    for row in result["modes"]:  # bootstrap standard errors of every routed mode's gains
        if row["kind"] in ("gate", "random_routing", "oracle"):
            assert row["gain_over_frontier_se"] >= 0, row["name"]
        if row["kind"] == "gate":
            assert row["gain_over_random_se"] >= 0, row["name"]
    per_image = result["per_image"]
    assert {"difficulty", "spearman_gain_vs_difficulty", "spearman_gate_depth_vs_difficulty"} <= set(per_image)
    assert set(per_image["spearman_gate_depth_vs_difficulty"]) == {r["name"] for r in result["modes"]
                                                                   if r["kind"] == "gate"}
    assert (tmp_path / "docs" / "per_image_difficulty.png").is_file()
    if "skipped" not in summary["hub_folder"]:
        files = set(summary["hub_folder"]["files"])
        assert {"config.json", "model.safetensors", "README.md", "preprocessor_config.json"} <= files


@pytest.mark.slow
def test_two_processes_give_the_single_process_results(tiny_chain, tmp_path):
    chain = tiny_chain
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", __file__,
               str(chain["paths"]["data"]), str(chain["paths"]["step1"]), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    summaries = {name: read_json(tmp_path / folder / f"{name}_summary.json") for name, folder in (
        ("train_early_exit", "step1"), ("derive_exit_dataset", "step2"), ("train_gate", "gate"),
        ("evaluate_model", "eval"))}
    for name, summary in summaries.items():
        assert summary["num_processes"] == 2, name
    assert read_json(tmp_path / "job" / "run_eco_m2f_summary.json")["num_processes"] == 2
    assert summaries["train_early_exit"]["finished"]

    # Step 2 with the single-process parent: the gathered rows equal the single-process ones.
    import datasets

    one = datasets.Dataset.from_parquet(str(chain["paths"]["step2"] / "derived.parquet"))
    two = datasets.Dataset.from_parquet(str(tmp_path / "step2" / "derived.parquet"))
    assert one["image_id"] == two["image_id"] and one["index"] == two["index"]
    np.testing.assert_allclose(np.array(two["pq"]), np.array(one["pq"]), atol=1e-6)
    np.testing.assert_allclose(np.array(two["loss"]), np.array(one["loss"]), rtol=1e-4)
    # The evaluation of the same models: every mode's data-set figures match.
    single = read_json(chain["paths"]["eval"] / "evaluation.json")["modes"]
    double = read_json(tmp_path / "eval" / "evaluation.json")["modes"]
    assert set(single) == set(double)
    for name in single:
        for key in ("pq", "sq", "rq", "miou", "mean_depth"):
            assert double[name][key] == pytest.approx(single[name][key], abs=1e-6), (name, key)
        assert double[name]["depth_histogram"] == single[name]["depth_histogram"]


def _two_process_driver(data: str, parent: str, out: str) -> None:
    """Each example script's `main`, in the two processes `accelerate launch` started."""
    out = Path(out)
    disk = ["--dataset", "disk", "--dataset_path", data, "--image_size", "64"] + EVAL_BATCH
    load_example("train_early_exit").main(disk + TINY_MODEL + [
        "--output_dir", str(out / "step1"), "--max_train_steps", "2", "--per_device_train_batch_size", "2",
        "--eval_depths"])
    load_example("derive_exit_dataset").main(disk + ["--model_name_or_path", parent, "--output_dir", str(out / "step2")])
    load_example("train_gate").main(disk + [
        "--model_name_or_path", parent, "--derived_dataset", str(out / "step2"), "--beta", "0.01",
        "--output_dir", str(out / "gate"), "--num_train_epochs", "3", "--per_device_train_batch_size", "2",
        "--skip_validation"])
    # The evaluation of the single-process chain's gate (a copy, so its summary is not overwritten).
    from accelerate import PartialState

    gate = out / "gate_single"
    if PartialState().is_main_process:
        shutil.copytree(Path(parent).parent / "gate", gate, ignore=shutil.ignore_patterns("checkpoints"))
    PartialState().wait_for_everyone()
    load_example("evaluate_model").main(disk + ["--model_name_or_path", parent, "--gate_models", str(gate),
                                                "--oracle_betas", "0.01", "--output_dir", str(out / "eval")])
    load_example("run_eco_m2f").main(["--preset", "tiny", "--output_dir", str(out / "job"), "--docs_dir", "",
                                      "--steps", "data,step1,step2,step3,eval"])


if __name__ == "__main__":
    try:
        _two_process_driver(*sys.argv[1:4])
    finally:
        from modeling_ecom2f.recipe import finish_process

        finish_process()


def test_utility_gate_serves_every_beta_and_meets_a_calibrated_budget(tiny_chain, tmp_path):
    chain = tiny_chain
    paths, disk = chain["paths"], chain["disk"]
    summary = load_example("train_gate").main(
        disk + ["--model_name_or_path", str(paths["step1"]), "--derived_dataset", str(paths["step2"]),
                "--gate_objective", "utility", "--target_encoder_fraction", "0.8", "--gate_hidden_size", "8",
                "--gate_pooling", "mean_std", "--gate_input_level", "2",
                "--output_dir", str(tmp_path / "utility"), "--num_train_epochs", "3",
                "--per_device_train_batch_size", "4", "--skip_validation"])
    config = read_json(tmp_path / "utility" / "config.json")
    assert config["gate_objective"] == "utility" and config["gate_hidden_size"] == 8 and config["gate_trained"]
    assert config["gate_pooling"] == "mean_std" and config["gate_input_level"] == 2
    assert summary["gate_objective"] == "utility" and config["gate_beta"] == pytest.approx(summary["beta"])
    assert summary["calibration"]["achieved_encoder_fraction"] <= 0.8 + 1e-9
    assert summary["holdout"]["mse"] >= 0.0 and set(summary["holdout"]["betas"]) >= {"0", "0.01"}

    report = load_example("evaluate_model").main(
        disk + ["--model_name_or_path", str(paths["step1"]), "--gate_models", str(tmp_path / "utility"),
                "--gate_betas", "0", "1", "--output_dir", str(tmp_path / "eval")])["modes"]
    assert {"gate_utility_beta0", "gate_utility_beta1", "random_gate_utility_beta0"} <= set(report)
    full = read_json(tmp_path / "eval" / "evaluation.json")["modes"]
    assert full["gate_utility_beta1"]["depth_histogram"] == {"2": 6, "3": 0}  # a huge beta: always the shallowest
    assert full["gate_utility_beta0"]["kind"] == "gate" and full["gate_utility_beta0"]["beta"] == 0.0
    assert full["gate_utility_beta0"]["gate_objective"] == "utility"


def test_classification_gate_needs_a_beta(tiny_chain, tmp_path):
    from modeling_ecom2f.recipe import RecipeError
    from modeling_ecom2f.recipe.arguments import build_train_gate_parser
    from modeling_ecom2f.recipe.gate_training import train_gate

    paths, disk = tiny_chain["paths"], tiny_chain["disk"]
    args = build_train_gate_parser().parse_args(disk + ["--model_name_or_path", str(paths["step1"]), "--derived_dataset",
                                                        str(paths["step2"]), "--output_dir", str(tmp_path / "g")])
    with pytest.raises(RecipeError, match="--beta is required"):
        train_gate(args)


def test_main_job_enforces_its_wall_clock_deadline(tmp_path):
    from modeling_ecom2f.experiments.main_job import DeadlineExceeded, build_run_parser, run_eco_m2f

    args = build_run_parser().parse_args(["--preset", "tiny", "--output_dir", str(tmp_path / "job"), "--docs_dir", "",
                                          "--deadline_minutes", "0.002", "--steps", "data,step1,step2"])
    with pytest.raises(DeadlineExceeded, match="deadline during (data|step1|step2)"):
        run_eco_m2f(args)


def test_shipped_parent_is_checked_against_its_sums(tmp_path):
    from modeling_ecom2f.recipe import RecipeError
    from modeling_ecom2f.experiments.main_job import verify_parent

    folder = tmp_path / "parent"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    import hashlib

    digest = hashlib.sha256(b"weights").hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  model.safetensors\n", encoding="utf-8")
    assert verify_parent(folder) == {"model.safetensors": digest}
    (folder / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(RecipeError, match="model.safetensors does not match its SHA-256"):
        verify_parent(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(RecipeError, match="model.safetensors is missing"):
        verify_parent(folder)
