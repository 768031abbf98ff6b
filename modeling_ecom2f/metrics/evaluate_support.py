"""What the ``evaluate`` wrappers in ``evaluate_modules/`` (package data) share: where they are
(``evaluate_module_path``), their Arrow schemas and input shaping.

``evaluate.load(<folder>)`` runs each wrapper as a standalone module, so the shared code lives here, in the package
they import anyway. ``evaluate`` stores inputs in Arrow with a fixed schema and rejects dicts whose keys differ from
it, while the processor's ``post_process_*`` outputs carry extra keys (``was_fused``, ``score``) and torch tensors.
These helpers keep exactly the schema's keys (with defaults) and turn maps into NumPy, so the wrappers accept those
outputs as is. ``datasets`` and ``evaluate`` are imported only when a wrapper asks (the package does not need them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EVALUATE_MODULES",
    "REFERENCE_SEGMENT_KEYS",
    "evaluate_module_path",
    "SchemaInputs",
    "entries_for_schema",
    "entry_feature",
    "map_feature",
    "maps_for_schema",
    "metric_info",
]

#: The ``evaluate`` modules shipped in ``modeling_ecom2f/metrics/evaluate_modules/``.
EVALUATE_MODULES = ("ecom2f_mask_ap", "ecom2f_mean_iou", "ecom2f_panoptic_quality")


def evaluate_module_path(name: str) -> str:
    """The folder of the shipped ``evaluate`` module ``name`` (one of ``EVALUATE_MODULES``), for
    ``evaluate.load(evaluate_module_path("ecom2f_panoptic_quality"))``; it works offline, installed or in a checkout."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"name: one of {EVALUATE_MODULES}, got {name!r}")
    return str(Path(str(files(__package__) / "evaluate_modules" / name)))


#: Keys (and defaults) of a panoptic ground truth's segments in the wrappers' schemas.
REFERENCE_SEGMENT_KEYS = {"id": None, "category_id": None, "iscrowd": 0}


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


def map_feature():
    """The Arrow feature of an ``(H, W)`` int64 map."""
    import datasets

    return datasets.List(datasets.List(datasets.Value("int64")))


def entry_feature(**segment_dtypes: str) -> dict:
    """The Arrow feature of a ``{"segmentation", "segments_info"}`` entry whose segments hold ``segment_dtypes``
    (key -> ``datasets.Value`` dtype, e.g. ``id="int64"``)."""
    import datasets

    segment = {key: datasets.Value(dtype) for key, dtype in segment_dtypes.items()}
    return {"segmentation": map_feature(), "segments_info": datasets.List(segment)}


def metric_info(description: str, citation: str, inputs_description: str, *, predictions, references):
    """``evaluate.MetricInfo`` of a wrapper whose inputs are ``predictions`` and ``references`` of these features."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": predictions, "references": references}),
    )


class SchemaInputs:
    """Mixin before ``evaluate.Metric``: ``add_batch``/``add`` pass the inputs through :meth:`shape_predictions` and
    :meth:`shape_references` (identity here) so they fit the Arrow schema."""

    def shape_predictions(self, predictions):
        return predictions

    def shape_references(self, references):
        return references

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references (evaluate appends the input description here)."""
        return super().add_batch(
            predictions=self.shape_predictions(predictions), references=self.shape_references(references), **kwargs
        )

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction and reference (evaluate appends the input description here)."""
        return self.add_batch(predictions=[prediction], references=[reference], **kwargs)
