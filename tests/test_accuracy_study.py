"""The accuracy study (`benchmarks/accuracy_study.py`): its warm start, the PRO-SCALE load path it relies on, and a
tiny end-to-end smoke run that checks the published JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.models import tiny_eco_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import accuracy_study
import accuracy_study_scratch
import accuracy_study_tables
import accuracy_study_variants

CONTRACT = ("family", "token_scaling_layers", "token_recalibration", "light_pixel_embedding", "depth", "pq",
            "pq_things", "pq_stuff", "miou", "mask_ap", "pixel_decoder_gflops_ratio", "total_gflops_ratio",
            "latency_ratio")


def test_warm_start_copies_mapped_layers_and_slices_coarsest_levels():
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    parent = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=3))
    child = EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=6, token_scaling_layers=[2, 2, 2]))
    copied = accuracy_study.warm_start(child, parent.state_dict(), 3)
    assert copied > 0
    prefix = "model.pixel_level_module.decoder.encoder.layers."
    heads, points = child.config.num_attention_heads, child.config.encoder_n_points
    parent_state, child_state = parent.state_dict(), child.state_dict()
    for layer in range(6):
        source = layer * 3 // 6
        torch.testing.assert_close(child_state[f"{prefix}{layer}.fc1.weight"], parent_state[f"{prefix}{source}.fc1.weight"])
        offsets = child_state[f"{prefix}{layer}.self_attn.sampling_offsets.weight"]
        levels = offsets.shape[0] // (heads * points * 2)
        assert levels == layer // 2 + 1  # stages (2, 2, 2): 1, 1, 2, 2, 3, 3 levels
        expected = parent_state[f"{prefix}{source}.self_attn.sampling_offsets.weight"].reshape(heads, 3, points * 2, -1)
        torch.testing.assert_close(offsets, expected[:, :levels].reshape(offsets.shape))
        weights = child_state[f"{prefix}{layer}.self_attn.attention_weights.bias"]
        expected = parent_state[f"{prefix}{source}.self_attn.attention_weights.bias"].reshape(heads, 3, points)
        torch.testing.assert_close(weights, expected[:, :levels].reshape(weights.shape))


def test_loading_a_parent_with_more_stage_layers_sets_encoder_layers(tmp_path):
    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
    from modeling_ecom2f.recipe.modeling import load_model

    EcoMask2FormerForUniversalSegmentation(tiny_eco_config(encoder_layers=3)).save_pretrained(tmp_path)
    model = load_model(tmp_path, overrides={"token_scaling_layers": [2, 2, 2]})
    assert model.config.encoder_layers == 6
    assert model.config.exit_layers == [2, 3, 4, 5, 6]
    model = load_model(tmp_path, overrides={"token_scaling_layers": [1, 1, 2], "exit_layers": [4]})
    assert (model.config.encoder_layers, model.config.exit_layers) == (4, [4])
    stock_depth = load_model(tmp_path, overrides={"exit_layers": [3]})  # the gate's size changes with the exits
    assert stock_depth.config.num_exits == 1


def test_workers_take_the_variant_of_their_own_preset():
    assert accuracy_study.variant_named("eco", preset="default").exits == (2, 3, 4, 5, 6)
    assert accuracy_study.variant_named("eco", preset="tiny").exits == (2, 3)
    with pytest.raises(SystemExit, match="unknown variant"):
        accuracy_study.variant_named("proscale_114_trc_lpe", preset="tiny")


def test_unknown_variant_is_refused():
    args = accuracy_study.build_parser().parse_args(["--variants", "nope"])
    with pytest.raises(SystemExit, match="unknown"):
        accuracy_study.variants_of(args)


def test_from_scratch_variants_run_the_parent_command_with_only_their_encoder_flags(tmp_path):
    from modeling_ecom2f.experiments import benchmark_parent

    pool = {v.name: v for v in accuracy_study_variants.variant_pool(preset="default", mode="from_scratch")}
    assert set(pool) == {"parent", "proscale_333_trc_lpe", "combined_333_trc_lpe"}
    assert all(v.training == "from_scratch" for v in pool.values())
    preset = accuracy_study.PRESETS["default"]
    argv = accuracy_study_scratch.train_argv(pool["proscale_333_trc_lpe"], preset, train=tmp_path / "p", data=tmp_path / "d")
    assert argv == ["--output_dir", str(tmp_path / "p"), "--data_dir", str(tmp_path / "d"), "--encoder_layers", "9",
                    "--token_scaling_layers", "3", "3", "3", "--token_recalibration", "--light_pixel_embedding",
                    "--exit_layers", "9", "--eval_depths", "9"]
    combined = accuracy_study_scratch.train_argv(pool["combined_333_trc_lpe"], preset, train=tmp_path, data=tmp_path)
    assert combined[-10:] == ["--exit_layers", "3", "4", "5", "6", "7", "8", "9", "--eval_depths", "3", "9"][-10:]
    assert accuracy_study_scratch.train_argv(pool["parent"], preset, train=tmp_path, data=tmp_path)[4:] == []
    # the whole command as train_early_exit.py parses it: the parent's schedule, the variant's encoder
    from modeling_ecom2f.recipe.arguments import build_train_early_exit_parser

    args = build_train_early_exit_parser().parse_args(
        ["--dataset", "disk", "--dataset_path", "d", "--output_dir", "o", *benchmark_parent.PARENT_ARGS,
         *pool["proscale_333_trc_lpe"].encoder_argv()])
    assert (args.max_train_steps, args.per_device_train_batch_size, args.learning_rate, args.seed) == (5000, 8, 5e-4, 0)
    assert (args.encoder_layers, args.token_scaling_layers, args.exit_layers) == (9, [3, 3, 3], [9])
    assert args.token_recalibration and args.light_pixel_embedding
    # the baseline's shipped weights are found and checked; its command is the one its README records
    parent = accuracy_study_scratch.shipped_folder(pool["parent"], preset)
    assert parent == accuracy_study_variants.PARENT
    assert accuracy_study_scratch.shipped_command(parent).startswith("python examples/train_benchmark_parent.py")
    assert accuracy_study_scratch.shipped_folder(pool["parent"], accuracy_study.PRESETS["tiny"]) is None


def test_training_log_is_read_from_the_progress_bar_and_round_trips(tmp_path):
    bar = ("step 1 (early exit):   1%|          | 49/5000 [00:20<1:00, 1.9s/it, loss=300.5, lr=9e-05, depth=9]\r"
           "step 1 (early exit):   1%|          | 50/5000 [00:21<1:00, 1.9s/it, loss=300.5, lr=9e-05, depth=9]\r"
           "step 1 (early exit):   1%|          | 50/5000 [00:21<1:00, 1.9s/it, loss=280.25, lr=0.0001, depth=4]\r"
           "step 1 (early exit):   2%|          | 51/5000 [00:22<1:00, 1.9s/it, loss=280.25, lr=0.0001, depth=4]\r")
    rows = accuracy_study_scratch.training_log_rows(bar)
    assert rows == [{"step": 50, "elapsed": "00:21", "loss": 280.25, "lr": 1e-4, "depth": 4}]  # its own postfix
    accuracy_study_scratch.write_training_log(rows, tmp_path / "log.tsv")
    assert accuracy_study_scratch.read_training_log(tmp_path / "log.tsv") == rows
    shipped = accuracy_study_scratch.read_training_log(accuracy_study_variants.PARENT / "training_log.tsv")
    assert shipped[-1]["step"] == 5000 and len(shipped) == 100


def test_a_finished_run_is_shipped_with_its_curve_and_digests_that_verify(tmp_path):
    from modeling_ecom2f.experiments.main_job import verify_parent
    from modeling_ecom2f.recipe.runtime import RecipeError

    run = tmp_path / "run"
    run.mkdir()
    for name in accuracy_study_scratch.SHIPPED_FILES:
        (run / name).write_text(f"contents of {name}")
    (run / "train_early_exit_summary.json").write_text(json.dumps({"finished": False, "completed_steps": 3}))
    log = tmp_path / "log"
    log.write_text("x |  50/100 [00:10<00:10, 1.0s/it, loss=12.5, lr=0.0005, depth=9]\r")
    with pytest.raises(SystemExit, match="has not finished"):
        accuracy_study_scratch.ship_model(run, log, tmp_path / "shipped")
    (run / "train_early_exit_summary.json").write_text(json.dumps({"finished": True}))
    digests = accuracy_study_scratch.ship_model(run, log, tmp_path / "shipped")
    assert verify_parent(tmp_path / "shipped") == digests
    assert accuracy_study_scratch.read_training_log(tmp_path / "shipped" / "training_log.tsv")[0]["loss"] == 12.5
    (tmp_path / "shipped" / "model.safetensors").write_text("changed")
    with pytest.raises(RecipeError, match="does not match"):
        verify_parent(tmp_path / "shipped")


def test_gap_probes_are_valid_commands_and_curves_are_unweighted(tmp_path):
    import accuracy_study_gap as gap

    assert len({p.name for p in gap.PROBES}) == len(gap.PROBES)
    for probe in gap.PROBES:
        args = gap.step1_args(list(probe.argv), tmp_path, tmp_path)
        assert args.max_train_steps == 5000 and args.learning_rate == 5e-4  # the parent's schedule
        assert args.exit_layers == [probe.depth] and args.eval_depths == [probe.depth]
        assert args.encoder_layers == (sum(args.token_scaling_layers) if args.token_scaling_layers else args.encoder_layers)
    assert gap.mean_exit_weight({"exit_layers": [2, 3, 4, 5, 6]}) == 4.0
    assert gap.mean_exit_weight({"exit_layers": [9], "exit_loss_weighting": "uniform"}) == 1.0
    log = tmp_path / "train.log"
    log.write_text("x |  50/5000 [00:10<00:10, 1.0s/it, loss=90.0, lr=0.0001, depth=9]\r")
    assert gap.curve(log, 9.0) == [(50, 10.0)]
    table = gap.per_class_table({"a": {"per_class": {"0": {"pq": 0.5}}}, "b": {"per_class": {}}},
                                {"0": "circle", "1": "sky"}, {0})
    assert table == {"circle": {"kind": "thing", "pq": {"a": 50.0, "b": None}},
                     "sky": {"kind": "stuff", "pq": {"a": None, "b": None}}}


def _row(name: str, depth, pq: float, training: str | None, family: str = "stock") -> dict:
    row = {"name": name, "family": family, "depth": depth, "mode": f"depth_{depth}", "pq": pq,
           "pixel_decoder_gflops_ratio": 1.0 if family == "stock" else 0.48, "latency_ratio": 0.8}
    return row if training is None else {**row, "training": training}


def test_merging_keeps_the_other_modes_rows_and_replaces_its_own():
    legacy = {"command": "c", "wall_seconds": 1.0, "validation_images": 5, "setup": {"s": 1},
              "variants": [_row("stock", 6, 80.0, None), _row("proscale_333_trc_lpe", 9, 56.0, None, "proscale")]}
    run = {"command": "d", "wall_seconds": 2.0, "validation_images": 5, "setup": {"s": 2}}
    scratch = [_row("parent", 6, 79.0, "from_scratch"), _row("proscale_333_trc_lpe", 9, 78.5, "from_scratch", "proscale")]
    merged = accuracy_study_tables.merge_result(legacy, training="from_scratch", run=run, rows=scratch)
    assert merged["command"] == "c" and merged["setup"] == {"s": 1}  # the fine-tuned run stays the top level
    assert list(merged["runs"]) == ["fine_tuned", "from_scratch"] and merged["runs"]["from_scratch"] == run
    kept = [r for r in merged["variants"] if r["training"] == "fine_tuned"]
    assert [{k: v for k, v in r.items() if k != "training"} for r in kept] == legacy["variants"]
    assert merged["checks"]["proscale_vs_stock"]["pq_difference"] == -24.0
    assert merged["checks"]["proscale_vs_stock_from_scratch"] == {
        "pq_difference": -0.5, "pixel_decoder_gflops_ratio": 0.48, "baseline": "parent",
        "target": "PQ within 1.0 of stock at <= 0.5x its pixel-decoder GFLOPs", "met": True}
    assert merged["recommendations"][0]["training"] == "fine_tuned"
    assert merged["recommendations"][-2]["training"] == "from_scratch"  # <= 0.5x: the from-scratch PRO-SCALE
    again = accuracy_study_tables.merge_result(merged, training="from_scratch", run=run, rows=scratch[:1])
    assert len(again["variants"]) == 3  # this mode's old rows replaced, the other's kept
    with pytest.raises(SystemExit, match="validation images"):
        accuracy_study_tables.merge_result(legacy, training="from_scratch", run={**run, "validation_images": 6}, rows=[])


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, str(REPO / "benchmarks" / "accuracy_study.py"), "--preset", "tiny", "--output_dir",
               str(out), "--docs_dir", str(tmp_path / "docs"), "--jobs", "2"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "docs" / "accuracy_study.json").read_text())
    assert {"command", "wall_seconds", "validation_images", "variants"} <= set(result)
    assert result["validation_images"] == accuracy_study.PRESETS["tiny"].validation_images
    families = {row["family"] for row in result["variants"]}
    assert families == {"stock", "eco", "proscale", "combined"}
    for row in result["variants"]:
        assert set(CONTRACT) <= set(row)
        assert row["pixel_decoder_gflops_ratio"] > 0 and row["total_gflops_ratio"] > 0 and row["latency_ratio"] > 0
        assert (row["token_scaling_layers"] is None) == (row["family"] in ("stock", "eco"))
    stock = next(r for r in result["variants"] if r["family"] == "stock")
    assert stock["total_gflops_ratio"] == pytest.approx(0.5, abs=0.5)  # a 3-layer tiny model vs Swin-T's 6 layers
    gates = [r for r in result["variants"] if r["depth"] is None]
    assert {r["family"] for r in gates} == {"eco", "combined"}
    assert all("gain_over_frontier" in r and "gain_over_random_routing" in r for r in gates)
    proscale = next(r for r in result["variants"] if r["family"] == "proscale")
    assert proscale["pixel_decoder_gflops_ratio"] < stock["pixel_decoder_gflops_ratio"]
    for name in ("accuracy_study.md", "accuracy_study.png"):
        assert (tmp_path / "docs" / name).stat().st_size > 0
    # a rerun finds every stage done and only re-measures
    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0
    assert (out / "stock.log").read_text().count("stock: train done") == 1
    # from scratch: the parent's command (two steps here) per variant, merged into the same published files
    fine_tuned = json.loads((tmp_path / "docs" / "accuracy_study.json").read_text())["variants"]
    scratch_out = tmp_path / "scratch"
    scratch = [sys.executable, str(REPO / "benchmarks" / "accuracy_study.py"), "--preset", "tiny", "--mode",
               "from_scratch", "--output_dir", str(scratch_out), "--docs_dir", str(tmp_path / "docs"), "--jobs", "2"]
    done = subprocess.run(scratch, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    merged = json.loads((tmp_path / "docs" / "accuracy_study.json").read_text())
    assert [r for r in merged["variants"] if r["training"] == "fine_tuned"] == fine_tuned  # kept as written
    rows = [r for r in merged["variants"] if r["training"] == "from_scratch"]
    assert {r["family"] for r in rows} == {"stock", "proscale", "combined"}
    for row in rows:
        assert set(CONTRACT) <= set(row) and row["latency_ratio"] > 0
    assert [r["depth"] for r in rows if r["name"] == "parent"] == [3]  # the baseline at full depth only
    gates = [r for r in rows if r["depth"] is None]
    assert gates and all(r["family"] == "combined" and "gain_over_random_routing" in r for r in gates)
    assert len({r["beta"] for r in gates}) >= len(accuracy_study_variants.GATE_BETAS)
    models = merged["runs"]["from_scratch"]["setup"]["models"]
    assert set(models) == {"parent", "proscale_111_trc_lpe", "combined_111_trc_lpe"}
    assert all(m["train_command"].startswith("python examples/train_benchmark_parent.py") for m in models.values())
    assert "--token_scaling_layers 1 1 1" in models["proscale_111_trc_lpe"]["train_command"]
    trained = json.loads((scratch_out / "parent" / "train" / "train_early_exit_summary.json").read_text())
    assert trained["completed_steps"] == 2
    assert "from scratch" in (tmp_path / "docs" / "accuracy_study.md").read_text()
    again = subprocess.run(scratch, check=False, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert again.returncode == 0
    assert (scratch_out / "parent.log").read_text().count("parent: train done") == 1
