"""Read a detectron2 checkpoint file into a flat state dict, safely by default.

detectron2 writes two kinds of files (`detectron2.checkpoint.DetectionCheckpointer`): a `.pth` from `torch.save` of
`{"model": state_dict, "optimizer": ..., "scheduler": ..., "iteration": ...}` (or a bare state dict), and a `.pkl`,
a plain pickle of `{"model": {name: numpy array}, ...}` written under Python 2 conventions (read with
`encoding="latin1"`). Both are pickles, which can run code when loaded. By default nothing but tensors, arrays and
containers is accepted: `torch.load(weights_only=True)` for `torch.save` files, and an unpickler that only knows
NumPy's array reconstruction for plain pickles. `trust_pickle=True` lifts the restriction for a file you trust.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class ConversionError(ValueError):
    """A checkpoint that cannot be converted: the message names the file or key and the reason."""


#: Globals a plain NumPy pickle needs (NumPy 1.x and 2.x module paths) and nothing that can run other code.
_NUMPY_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode"),
}


#: The first pickled object of a legacy (pre-zip) `torch.save` file.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names a global outside `_NUMPY_PICKLE_GLOBALS`."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_PICKLE_GLOBALS:
            raise _ForbiddenGlobal(f"global '{module}.{name}' is not allowed in a weights-only pickle")
        return super().find_class(module, name)


@dataclass(frozen=True)
class SourceCheckpoint:
    """A read checkpoint.

    Attributes:
        path: the file.
        sha256: hex digest of the file's bytes.
        file_format: `"torch.save"` or `"pickle"`.
        state_dict: parameter and buffer name -> tensor (`module.` prefixes stripped).
        dropped_entries: top-level entries beside `"model"` (optimizer, scheduler, iteration, ...), not converted.
        stripped_prefix: `"module."` when the keys carried it (a DistributedDataParallel save), else `None`.
    """

    path: Path
    sha256: str
    file_format: str
    state_dict: dict[str, torch.Tensor]
    dropped_entries: tuple[str, ...]
    stripped_prefix: str | None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_object(path: Path, *, trust_pickle: bool) -> tuple[object, str]:
    hint = "pass --trust-pickle (trust_pickle=True) only if you trust where the file comes from"
    with open(path, "rb") as handle:
        starts_like_zip = handle.read(4) == b"PK\x03\x04"
    if starts_like_zip and not zipfile.is_zipfile(path):
        raise ConversionError(f"{path}: truncated or corrupt torch.save archive (no zip directory at its end)")
    if starts_like_zip:
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle), "torch.save"
        except pickle.UnpicklingError as error:
            raise ConversionError(f"{path}: holds objects other than tensors and containers ({error}); {hint}") from error
        except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
            raise ConversionError(f"{path}: truncated or corrupt torch.save archive ({error})") from error
    with open(path, "rb") as handle:
        try:
            unpickler = pickle.Unpickler(handle, encoding="latin1") if trust_pickle else _NumpyOnlyUnpickler(
                handle, encoding="latin1")
            obj = unpickler.load()
        except _ForbiddenGlobal as error:
            raise ConversionError(f"{path}: not a weights-only pickle ({error}); {hint}") from error
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as error:
            raise ConversionError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {error})") from error
    if obj != _LEGACY_TORCH_MAGIC:
        return obj, "pickle"
    try:  # a legacy (pre-zip) torch.save file starts with this pickled magic number
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle), "torch.save"
    except pickle.UnpicklingError as error:
        raise ConversionError(f"{path}: holds objects other than tensors and containers ({error}); {hint}") from error
    except (RuntimeError, EOFError) as error:
        raise ConversionError(f"{path}: truncated or corrupt legacy torch.save file ({error})") from error


def _as_tensor(name: str, value: object, path: Path) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    raise ConversionError(f"{path}: entry {name!r} of the state dict is a {type(value).__name__}, not an array")


def read_detectron2_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> SourceCheckpoint:
    """Read a detectron2 `.pth` / `.pkl` (or a bare state dict) into a `SourceCheckpoint`.

    Raises:
        ConversionError: a missing, truncated or corrupt file, a pickle with code objects (unless `trust_pickle`), or
            an object that is not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    obj, file_format = _load_object(path, trust_pickle=trust_pickle)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: not a detectron2 checkpoint (a {type(obj).__name__}, not a dict)")
    if isinstance(obj.get("model"), dict):
        state, dropped = obj["model"], tuple(sorted(str(k) for k in obj if k != "model"))
    elif obj and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values()):
        state, dropped = obj, ()
    else:
        raise ConversionError(
            f"{path}: not a detectron2 checkpoint: no 'model' state dict, top-level entries {sorted(map(str, obj))[:8]}"
        )
    tensors = collections.OrderedDict((str(k), _as_tensor(str(k), v, path)) for k, v in state.items())
    prefix = "module." if tensors and all(k.startswith("module.") for k in tensors) else None
    if prefix:
        tensors = collections.OrderedDict((k[len(prefix):], v) for k, v in tensors.items())
    return SourceCheckpoint(path=path, sha256=file_sha256(path), file_format=file_format, state_dict=dict(tensors),
                            dropped_entries=dropped, stripped_prefix=prefix)


__all__ = ["ConversionError", "SourceCheckpoint", "file_sha256", "read_detectron2_checkpoint"]
