"""Corrupt artifacts give one `RecipeError` naming the file: a truncated derived Parquet file, a model
folder with a missing or truncated safetensors shard, a corrupt or foreign `config.json`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers.models import tiny_eco_config  # noqa: E402
from helpers.recipe import load_example

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.recipe import RecipeError, load_derived_dataset, load_model, load_trained_model  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model saved whole and in 7 shards."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    model = EcoMask2FormerForUniversalSegmentation(tiny_eco_config())
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="300KB")
    return root


def _copy(saved: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved / name, tmp_path / name))


def _truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


@pytest.mark.parametrize("loader", [load_model, load_trained_model])
def test_intact_folders_load(saved, loader):
    loader(saved / "single")
    shards = sorted((saved / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 2
    loader(saved / "sharded")


@pytest.mark.parametrize("loader", [load_model, load_trained_model])
@pytest.mark.parametrize("keep", [None, 5, 20])
def test_truncated_single_file(saved, tmp_path, loader, keep):
    folder = _copy(saved, "single", tmp_path)
    _truncate(folder / "model.safetensors", keep)
    with pytest.raises(RecipeError, match=rf"weight file {folder / 'model.safetensors'} is truncated"):
        loader(folder)


def test_missing_and_truncated_shard(saved, tmp_path):
    folder = _copy(saved, "sharded", tmp_path)
    shards = sorted(folder.glob("model-*.safetensors"))
    _truncate(shards[0])
    with pytest.raises(RecipeError, match=rf"weight file {shards[0]} is truncated"):
        load_trained_model(folder)
    shards[0].unlink()
    with pytest.raises(RecipeError, match=rf"weight file {shards[0]} is missing"):
        load_trained_model(folder)


def test_no_weights_at_all(saved, tmp_path):
    folder = _copy(saved, "single", tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(RecipeError, match=rf"{folder} holds no weights"):
        load_trained_model(folder)


def test_corrupt_and_foreign_config(saved, tmp_path):
    folder = _copy(saved, "single", tmp_path)
    config = folder / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(RecipeError, match=rf"{config} is not valid JSON"):
        load_trained_model(folder)
    config.write_text(json.dumps({**json.loads(text), "model_type": "detr"}))
    with pytest.raises(RecipeError, match=rf"holds a 'detr' model \(model_type in {config}\)"):
        load_model(folder)


def _derived_folder(folder: Path) -> Path:
    folder.mkdir()
    table = pa.table({"index": list(range(20)), "image_id": [f"img-{i}" for i in range(20)],
                      "pq": [[0.5, 0.6]] * 20})
    pq.write_table(table, folder / "derived.parquet")
    (folder / "derived_info.json").write_text(json.dumps({"exit_layers": [2, 3]}))
    return folder


def test_truncated_parquet_of_the_derived_data_set(tmp_path):
    folder = _derived_folder(tmp_path / "derived")
    assert len(load_derived_dataset(folder)[0]) == 20
    _truncate(folder / "derived.parquet")
    with pytest.raises(RecipeError, match=rf"{folder / 'derived.parquet'} cannot be read as Parquet"):
        load_derived_dataset(folder)
    _truncate(folder / "derived_info.json")
    with pytest.raises(RecipeError, match=rf"{folder / 'derived_info.json'} is not valid JSON"):
        load_derived_dataset(folder)


def test_gate_training_on_a_truncated_derived_file_exits_with_the_file_name(tiny_chain, tmp_path, capsys):
    chain = tiny_chain
    derived = Path(shutil.copytree(chain["paths"]["step2"], tmp_path / "step2"))
    _truncate(derived / "derived.parquet")
    with pytest.raises(SystemExit) as info:
        load_example("train_gate").main(chain["disk"] + [
            "--model_name_or_path", str(chain["paths"]["step1"]), "--derived_dataset", str(derived),
            "--beta", "0.01", "--output_dir", str(tmp_path / "gate")])
    assert info.value.code == 2
    assert f"{derived / 'derived.parquet'} cannot be read as Parquet" in capsys.readouterr().err
