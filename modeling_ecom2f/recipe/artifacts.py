"""Checks of saved artifacts before they are loaded: a corrupt file is one `RecipeError` that names it,
not a `SafetensorError`/`JSONDecodeError`/`ArrowInvalid` from deep inside a loader.

Safetensors files are checked from their header alone (the format: an 8-byte little-endian header length, a JSON
header giving every tensor's byte range, then the data; https://github.com/huggingface/safetensors#format): a file
shorter than its header says is truncated. Nothing else is read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .runtime import RecipeError

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def read_json_file(path: Path, *, what: str) -> dict:
    """The JSON object in `path`; `RecipeError` naming the file if it is not valid JSON (e.g. cut short)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecipeError(f"{path} is not valid JSON ({error}): the {what} is corrupt or truncated") from error
    if not isinstance(data, dict):
        raise RecipeError(f"{path} holds a JSON {type(data).__name__}, not an object: it is not a {what}")
    return data


def check_safetensors_file(path: Path) -> None:
    """`RecipeError` naming `path` if it is missing, or its size disagrees with its header (truncated/corrupt)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"weight file {path} is missing")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        header_length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
        if header_length is None or 8 + header_length > size:
            raise RecipeError(f"weight file {path} is truncated or not a safetensors file ({size} bytes, header "
                              "incomplete)")
        try:
            header = json.loads(handle.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RecipeError(f"weight file {path} has a corrupt safetensors header ({error})") from error
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    expected = 8 + header_length + max(ends, default=0)
    if size != expected:
        raise RecipeError(f"weight file {path} is truncated or corrupt: {size} bytes, its header describes "
                          f"{expected}")


def check_weight_files(folder: str | Path) -> None:
    """Check a `save_pretrained` folder's safetensors weights: the single file, or every shard of the index.

    Raises:
        RecipeError: naming the missing, truncated or corrupt file (or the folder, if it holds no weights at all).
    """
    folder = Path(folder)
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = read_json_file(index, what="safetensors shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise RecipeError(f"{index} has no weight_map: the shard index is corrupt")
        for shard in sorted(set(weight_map.values())):
            check_safetensors_file(folder / shard)
    elif (folder / SAFETENSORS_SINGLE).is_file():
        check_safetensors_file(folder / SAFETENSORS_SINGLE)
    elif not any((folder / name).is_file() for name in TORCH_WEIGHTS):
        raise RecipeError(f"{folder} holds no weights ({SAFETENSORS_SINGLE}, {SAFETENSORS_INDEX} or "
                          f"{TORCH_WEIGHTS[0]}): the save was interrupted or the files were not copied")


def check_parquet_file(path: str | Path):
    """The `pyarrow.Table` in `path`; `RecipeError` naming the file if it is truncated or not Parquet."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(path))
    except (pyarrow.ArrowException, OSError) as error:
        raise RecipeError(f"{path} cannot be read as Parquet ({error}): the file is truncated or corrupt; run "
                          "derive_exit_dataset.py again") from error


__all__ = ["check_parquet_file", "check_safetensors_file", "check_weight_files", "read_json_file"]
