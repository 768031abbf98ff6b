"""Bad inputs give a clear error (exit status 2 and the reason), never a silent wrong result."""

from __future__ import annotations

import shutil

import pytest

from helpers.recipe import TINY_MODEL, load_example, save_tiny_dataset

from modeling_ecom2f.data import SegmentationLabelInfo  # noqa: E402


def _fails(script: str, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        load_example(script).main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_dataset_without_the_needed_columns(tmp_path, capsys):
    import datasets

    folder = save_tiny_dataset(tmp_path / "data", train=4, validation=2)
    splits = datasets.load_from_disk(str(folder))
    label_info = SegmentationLabelInfo.from_dataset(splits["train"])
    broken = datasets.DatasetDict({name: label_info.attach_to(split.remove_columns(["segments_info"]))
                                   for name, split in splits.items()})
    broken.save_to_disk(str(tmp_path / "broken"))
    err = _fails("train_early_exit", ["--dataset", "disk", "--dataset_path", str(tmp_path / "broken"),
                                      "--output_dir", str(tmp_path / "out"), "--max_train_steps", "1"] + TINY_MODEL,
                 capsys)
    assert "lacks the column(s) ['segments_info']" in err and "--dataset mapped" in err


def test_labels_outside_the_label_set(tmp_path, capsys):
    import datasets

    folder = save_tiny_dataset(tmp_path / "data", train=4, validation=2)
    splits = datasets.load_from_disk(str(folder))
    full = SegmentationLabelInfo.from_dataset(splits["train"])
    fewer = SegmentationLabelInfo(id2label={k: v for k, v in full.id2label.items() if k < 7},
                                  thing_ids=full.thing_ids)  # stuff classes 7..9 are unknown now
    datasets.DatasetDict({n: fewer.attach_to(s) for n, s in splits.items()}).save_to_disk(str(tmp_path / "fewer"))
    err = _fails("train_early_exit", ["--dataset", "disk", "--dataset_path", str(tmp_path / "fewer"), "--image_size",
                                      "64", "--output_dir", str(tmp_path / "out"), "--max_train_steps", "1",
                                      "--per_device_train_batch_size", "4"] + TINY_MODEL, capsys)
    assert "synthetic-train-" in err and "missing from the label metadata" in err


def test_checkpoint_folder_of_another_model_type(tiny_chain, tmp_path, capsys):
    from transformers import SwinConfig, SwinModel

    SwinModel(SwinConfig(embed_dim=8, depths=[1, 1], num_heads=[1, 1], image_size=32)).save_pretrained(tmp_path / "swin")
    disk = tiny_chain["disk"]
    err = _fails("derive_exit_dataset", disk + ["--model_name_or_path", str(tmp_path / "swin"),
                                                "--output_dir", str(tmp_path / "out")], capsys)
    assert "holds a 'swin' model" in err
    err = _fails("train_early_exit", disk + ["--model_name_or_path", str(tmp_path / "nowhere"),
                                             "--output_dir", str(tmp_path / "out")], capsys)
    assert "does not exist" in err


def test_beta_without_depth_labels(tiny_chain, tmp_path, capsys):
    chain = tiny_chain
    paths, disk = chain["paths"], chain["disk"]
    base = disk + ["--model_name_or_path", str(paths["step1"]), "--output_dir", str(tmp_path / "gate")]
    assert "must be a finite number >= 0" in _fails("train_gate", base + ["--derived_dataset", str(paths["step2"]),
                                                                          "--beta", "-0.01"], capsys)
    assert "must be a finite number >= 0" in _fails("train_gate", base + ["--derived_dataset", str(paths["step2"]),
                                                                          "--beta", "nan"], capsys)
    assert "is not a derived data set" in _fails("train_gate", base + ["--derived_dataset", str(tmp_path),
                                                                       "--beta", "0.01"], capsys)
    # a derived data set with no rows has no labels for any beta
    empty = tmp_path / "empty"
    shutil.copytree(paths["step2"], empty)
    import datasets

    datasets.Dataset.from_parquet(str(empty / "derived.parquet")).select([]).to_parquet(str(empty / "derived.parquet"))
    assert "no rows" in _fails("train_gate", base + ["--derived_dataset", str(empty), "--beta", "0.01"], capsys)


def test_gate_options_the_config_rejects(tiny_chain, tmp_path, capsys):
    """Step 3 changes the parent's gate fields; the config's `validate_architecture` judges them."""
    paths, disk = tiny_chain["paths"], tiny_chain["disk"]
    base = disk + ["--model_name_or_path", str(paths["step1"]), "--derived_dataset", str(paths["step2"]),
                   "--beta", "0.01", "--output_dir", str(tmp_path / "gate")]
    assert "gate_input_level must index an encoder level" in _fails("train_gate", base + ["--gate_input_level", "7"],
                                                                    capsys)
    assert "gate_hidden_size must be None or >= 1" in _fails("train_gate", base + ["--gate_hidden_size", "0"], capsys)


def test_derived_data_of_another_parent_or_split(tiny_chain, tmp_path, capsys):
    chain = tiny_chain
    paths, disk = chain["paths"], chain["disk"]
    err = _fails("train_gate", disk + ["--model_name_or_path", str(paths["gate"]), "--derived_dataset",
                                       str(paths["step2"]), "--beta", "0.01", "--output_dir", str(tmp_path / "g")],
                 capsys)
    assert "whose weights differ" in err
    err = _fails("train_gate", disk + ["--max_train_samples", "5", "--model_name_or_path", str(paths["step1"]),
                                       "--derived_dataset", str(paths["step2"]), "--beta", "0.01",
                                       "--output_dir", str(tmp_path / "g")], capsys)
    assert "pass the data arguments used in step 2" in err


def test_gate_of_another_parent(tiny_chain, tmp_path, capsys):
    chain = tiny_chain
    paths, disk = chain["paths"], chain["disk"]
    other = tmp_path / "other_gate"
    shutil.copytree(paths["gate"], other, ignore=shutil.ignore_patterns("checkpoints"))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(other / "model.safetensors"))
    key = next(k for k in weights if "class_predictor" in k)
    weights[key] = weights[key] + 1.0
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    err = _fails("evaluate_model", disk + ["--model_name_or_path", str(paths["step1"]), "--gate_models", str(other),
                                           "--output_dir", str(tmp_path / "eval"), "--depths", "2"], capsys)
    assert "is not a gate trained on this parent" in err and key in err
    err = _fails("evaluate_model", disk + ["--model_name_or_path", str(paths["step1"]), "--gate_models",
                                           str(paths["step1"]), "--output_dir", str(tmp_path / "eval")], capsys)
    assert "has no trained gate" in err


def test_unknown_main_job_step(tmp_path, capsys):
    err = _fails("run_eco_m2f", ["--preset", "tiny", "--output_dir", str(tmp_path), "--steps", "step1,stepX"], capsys)
    assert "unknown step(s) ['stepX']" in err
