"""Input shaping for the ``evaluate`` wrappers in ``evaluate_metrics/``.

``evaluate`` stores inputs in Arrow with a fixed schema and rejects dicts whose keys differ from it, while the
processor's ``post_process_*`` outputs carry extra keys (``was_fused``, ``score``) and torch tensors. These helpers
keep exactly the schema's keys (with defaults) and turn maps into NumPy, so the wrappers accept those outputs as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["entries_for_schema", "maps_for_schema"]


def _map(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)
    return array.astype(np.int64)


def maps_for_schema(maps: Sequence[Any] | None) -> list[np.ndarray] | None:
    """``(H, W)`` int64 NumPy maps from tensors/arrays."""
    return None if maps is None else [_map(m) for m in maps]


def entries_for_schema(
    entries: Sequence[Mapping[str, Any]] | None, *, segment_keys: Mapping[str, Any]
) -> list[dict[str, Any]] | None:
    """``{"segmentation": int64 map, "segments_info": [...]}`` with exactly ``segment_keys`` per segment.

    Args:
        entries: Panoptic / instance entries (``post_process_*`` outputs or ground truth).
        segment_keys: Key -> default for a missing key (``None`` = required). ``label_id`` and ``category_id``
            stand in for each other.
    """
    if entries is None:
        return None
    out = []
    for entry in entries:
        info = []
        for seg in entry.get("segments_info") or []:
            row = {}
            for key, default in segment_keys.items():
                alias = {"label_id": "category_id", "category_id": "label_id"}.get(key)
                value = seg.get(key, seg.get(alias, default) if alias else default)
                if value is None:
                    raise KeyError(f"segment {seg.get('id')!r} has no {key!r}")
                row[key] = value
            info.append(row)
        out.append({"segmentation": _map(entry["segmentation"]), "segments_info": info})
    return out
