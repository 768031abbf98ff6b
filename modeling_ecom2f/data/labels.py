"""Label metadata that travels with every data set: class names, which classes are things, original ids.

Where it lives: every loader returns ``(dataset, label_info)``; the same JSON is also written into
``dataset.info.description`` of each split (``SegmentationLabelInfo.attach_to``), so a split saved with
``save_to_disk`` still carries it (``SegmentationLabelInfo.from_dataset``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SegmentationLabelInfo"]

_DESCRIPTION_KEY = "ecom2f_label_info"


@dataclass(frozen=True, kw_only=True)
class SegmentationLabelInfo:
    """Category metadata of a panoptic data set.

    Args:
        id2label: Category id -> name. These are the ids stored in ``segments_info[*]["category_id"]`` and the
            class ids the model predicts (the adapters make them contiguous ``0..C-1``).
        thing_ids: Ids of the countable "thing" categories; every other id is "stuff".
        source_category_ids: Optional category id -> id in the original data set (e.g. COCO's 1..200), for
            writing results back in the original numbering.
        name: Free-form name of the data set.
    """

    id2label: Mapping[int, str]
    thing_ids: tuple[int, ...]
    source_category_ids: Mapping[int, int] | None = None
    name: str = ""
    _label2id: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        id2label = {int(k): str(v) for k, v in dict(self.id2label).items()}
        if not id2label:
            raise ValueError("id2label: must name at least one category")
        if any(k < 0 for k in id2label):
            raise ValueError(f"id2label: category ids must be >= 0, got {sorted(k for k in id2label if k < 0)}")
        if len(set(id2label.values())) != len(id2label):
            raise ValueError("id2label: category names must be unique")
        thing_ids = tuple(sorted({int(t) for t in self.thing_ids}))
        unknown = [t for t in thing_ids if t not in id2label]
        if unknown:
            raise ValueError(f"thing_ids: {unknown} are not keys of id2label")
        object.__setattr__(self, "id2label", dict(sorted(id2label.items())))
        object.__setattr__(self, "thing_ids", thing_ids)
        if self.source_category_ids is not None:
            src = {int(k): int(v) for k, v in dict(self.source_category_ids).items()}
            if set(src) != set(id2label):
                raise ValueError("source_category_ids: must have exactly the keys of id2label")
            object.__setattr__(self, "source_category_ids", src)
        object.__setattr__(self, "_label2id", {v: k for k, v in id2label.items()})

    @property
    def label2id(self) -> dict[str, int]:
        """Name -> category id."""
        return dict(self._label2id)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        """Ids of the stuff categories (every id that is not a thing)."""
        things = set(self.thing_ids)
        return tuple(k for k in self.id2label if k not in things)

    @property
    def num_labels(self) -> int:
        """Number of categories."""
        return len(self.id2label)

    def is_thing(self, category_id: int) -> bool:
        """Whether ``category_id`` is a thing category."""
        return int(category_id) in set(self.thing_ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (integer keys become strings, as JSON requires)."""
        out: dict[str, Any] = {
            "name": self.name,
            "id2label": {str(k): v for k, v in self.id2label.items()},
            "label2id": self.label2id,
            "thing_ids": list(self.thing_ids),
            "stuff_ids": list(self.stuff_ids),
        }
        if self.source_category_ids is not None:
            out["source_category_ids"] = {str(k): v for k, v in self.source_category_ids.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmentationLabelInfo":
        """Inverse of :meth:`to_dict` (``label2id``/``stuff_ids`` are derived, so ignored)."""
        src = data.get("source_category_ids")
        return cls(
            id2label={int(k): v for k, v in data["id2label"].items()},
            thing_ids=tuple(int(t) for t in data.get("thing_ids", ())),
            source_category_ids=None if src is None else {int(k): int(v) for k, v in src.items()},
            name=str(data.get("name", "")),
        )

    def attach_to(self, dataset: Any) -> Any:
        """Write this metadata into ``dataset.info.description`` (as ``{"ecom2f_label_info": ...}``); returns it."""
        dataset.info.description = json.dumps({_DESCRIPTION_KEY: self.to_dict()}, sort_keys=True)
        return dataset

    @classmethod
    def from_dataset(cls, dataset: Any) -> "SegmentationLabelInfo":
        """Read the metadata written by :meth:`attach_to`; raises ``ValueError`` if the dataset has none."""
        text = getattr(dataset.info, "description", None) or ""
        try:
            payload = json.loads(text)[_DESCRIPTION_KEY]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError("dataset.info.description carries no ecom2f label metadata") from err
        return cls.from_dict(payload)
