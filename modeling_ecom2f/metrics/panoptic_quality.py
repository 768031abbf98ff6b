"""Panoptic quality (PQ = SQ x RQ), for a data set and per image, vectorised with NumPy.

Definition: Kirillov et al., "Panoptic Segmentation", CVPR 2019. Per category c,
``PQ_c = sum_{(p, g) in TP_c} IoU(p, g) / (|TP_c| + |FP_c| / 2 + |FN_c| / 2)``, ``SQ_c`` = mean IoU of the TPs,
``RQ_c = |TP_c| / (|TP_c| + |FP_c| / 2 + |FN_c| / 2)``; the data-set figures average over the categories with
``|TP| + |FP| + |FN| > 0`` (all, things only, stuff only).

Protocol ``"coco"`` (default) follows the COCO panopticapi evaluation (``pq_compute.py``), which produced the
published Mask2Former / ECO-M2F / PRO-SCALE numbers:

* a prediction and a ground-truth segment of the same category match when IoU > 0.5 (unique by construction);
* ground-truth void pixels are ignored: ``IoU = |p & g| / (|p| + |g| - |p & g| - |p & void_gt|)``;
* crowd ground truth is never matched; an unmatched prediction is no FP when more than half of it lies on
  ground-truth void plus crowd regions of its category (all crowd segments of that category; panopticapi keeps
  one per category, as the COCO format has);
* every unmatched non-crowd ground-truth segment is an FN.

Protocol ``"torchmetrics"`` reproduces ``torchmetrics.detection.PanopticQuality`` (no crowd notion: crowd ground
truth is treated as void), which also ignores pixels the *prediction* leaves void: they leave the IoU union, and a
ground-truth segment more than half predicted as void is no FN. Both protocols agree when predictions have no void.

Both protocols merge the segments of one stuff category within an image into one (as detectron2's Mask2Former
post-processing and torchmetrics do), so ``label_ids_to_fuse`` need not be passed to the post-processor. Segments
listed with zero pixels are ignored. All figures are fractions in ``[0, 1]``.

Per-image PQ (what ECO-M2F step 2 needs for every training image at every exit depth): the PQ of that image alone,
averaged over the categories present in its ground truth or prediction (``TP + FP + FN > 0``). An image where no
category is present (nothing in the ground truth, nothing that counts in the prediction) scores PQ = SQ = RQ = 1.0
by definition: there was nothing to find and nothing was falsely found, so every depth is equally right.
The data-set figure of a set with no category present at all is NaN.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..data.errors import SegmentationDataError
from .inputs import SegmentTable, resolve_image_ids, to_segment_table

__all__ = [
    "PanopticQualityResult",
    "PerImagePanopticQuality",
    "PanopticQualityAccumulator",
    "panoptic_from_counts",
    "panoptic_quality",
    "per_image_panoptic_quality",
]

Protocol = Literal["coco", "torchmetrics"]
_VOID = (0, -1)


@dataclass(frozen=True)
class PanopticQualityResult:
    """Data-set PQ. Scalars are fractions (NaN when no category of that group is present).

    Attributes:
        pq, sq, rq: Averages over all present categories; ``*_things`` / ``*_stuff`` over those groups.
        num_categories, num_things, num_stuff: Categories counted in each average.
        per_class: ``{category_id: {"pq", "sq", "rq", "tp", "fp", "fn", "iou_sum"}}`` for present categories.
        num_images: Images evaluated.
    """

    pq: float
    sq: float
    rq: float
    pq_things: float
    sq_things: float
    rq_things: float
    pq_stuff: float
    sq_stuff: float
    rq_stuff: float
    num_categories: int
    num_things: int
    num_stuff: int
    num_images: int
    per_class: dict[int, dict[str, float]] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Flat dict of the scalars plus ``per_class`` (keys as strings, JSON-ready)."""
        out = {k: v for k, v in self.__dict__.items() if k != "per_class"}
        out["per_class"] = {str(k): v for k, v in self.per_class.items()}
        return out


@dataclass(frozen=True)
class PerImagePanopticQuality:
    """Per-image PQ; arrays have shape ``(B,)``.

    Attributes:
        image_ids: The images, in input order.
        pq, sq, rq: Per-image figures (1.0 where ``num_categories == 0``, see the module docstring).
        num_categories: Categories present in each image.
        true_positives, false_positives, false_negatives, iou_sum: ``(B, C)`` per-image, per-category counts
            (columns in ``category_ids`` order); summing them over images gives the data-set counts.
        category_ids: ``(C,)``, sorted.
    """

    image_ids: list[str]
    pq: np.ndarray
    sq: np.ndarray
    rq: np.ndarray
    num_categories: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray
    iou_sum: np.ndarray
    category_ids: np.ndarray


def _category_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_sum: np.ndarray):
    """Per-category ``(pq, sq, rq, present)`` from counts of any leading shape."""
    denom = tp + 0.5 * fp + 0.5 * fn
    present = denom > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.where(tp > 0, iou_sum / np.maximum(tp, 1), 0.0)
        rq = np.where(present, tp / np.where(present, denom, 1.0), 0.0)
    return sq * rq, sq, rq, present


def _group_means(pq: np.ndarray, sq: np.ndarray, rq: np.ndarray, present: np.ndarray, is_thing: np.ndarray) -> dict:
    """`pq`, `sq`, `rq` and their `_things` / `_stuff` variants: means over the present categories (NaN if none)."""

    def mean(values: np.ndarray, mask: np.ndarray) -> float:
        return float(values[mask].mean()) if mask.any() else float("nan")

    groups = {"": present, "_things": present & is_thing, "_stuff": present & ~is_thing}
    return {f"{name}{suffix}": mean(v, m) for suffix, m in groups.items() for name, v in (("pq", pq), ("sq", sq), ("rq", rq))}


def panoptic_from_counts(counts: np.ndarray, category_ids: Sequence[int], thing_ids: Sequence[int]) -> dict:
    """Data-set PQ/SQ/RQ (all, things, stuff) from summed per-category counts `(4, C)`: true positives, false
    positives, false negatives and the IoU sum of the matches, per category in `category_ids` order (what
    `PerImagePanopticQuality` gives per image; sums of them over any subset of images give that subset's PQ)."""
    tp, fp, fn, iou = np.asarray(counts, dtype=np.float64)
    pq, sq, rq, present = _category_scores(tp, fp, fn, iou)
    is_thing = np.isin(np.asarray(category_ids), np.asarray(list(thing_ids), dtype=np.int64))
    return _group_means(pq, sq, rq, present, is_thing)


def panoptic_per_class_from_counts(counts: np.ndarray, category_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per-category ``{"pq", "sq", "rq", "tp", "fp", "fn", "iou_sum"}`` from summed counts `(4, C)` (the layout of
    `panoptic_from_counts`), for the categories present in prediction or ground truth."""
    tp, fp, fn, iou = np.asarray(counts, dtype=np.float64)
    pq, sq, rq, present = _category_scores(tp, fp, fn, iou)
    return {
        int(c): {"pq": float(pq[i]), "sq": float(sq[i]), "rq": float(rq[i]), "tp": int(tp[i]), "fp": int(fp[i]),
                 "fn": int(fn[i]), "iou_sum": float(iou[i])}
        for i, c in enumerate(category_ids)
        if present[i]
    }


class PanopticQualityAccumulator:
    """Streaming PQ: ``update`` with batches, then ``compute`` (data set) or ``per_image`` (every image so far).

    Args:
        thing_ids: Thing category ids.
        stuff_ids: Stuff category ids. Any other category in an input raises ``SegmentationDataError``.
        protocol: ``"coco"`` (panopticapi) or ``"torchmetrics"``; see the module docstring.
        keep_per_image_counts: Keep the ``(B, C)`` per-image counts for :meth:`per_image` (memory ``32 B C``
            bytes); per-image PQ/SQ/RQ scalars are always kept.
    """

    def __init__(
        self,
        *,
        thing_ids: Collection[int],
        stuff_ids: Collection[int],
        protocol: Protocol = "coco",
        keep_per_image_counts: bool = True,
    ) -> None:
        things = {int(t) for t in thing_ids}
        stuff = {int(s) for s in stuff_ids}
        if things & stuff:
            raise ValueError(f"thing_ids and stuff_ids overlap: {sorted(things & stuff)}")
        if not things | stuff:
            raise ValueError("thing_ids and stuff_ids are both empty")
        if protocol not in ("coco", "torchmetrics"):
            raise ValueError(f"protocol: must be 'coco' or 'torchmetrics', got {protocol!r}")
        self.protocol = protocol
        self.category_ids = np.array(sorted(things | stuff), dtype=np.int64)
        self._is_thing = np.isin(self.category_ids, np.array(sorted(things), dtype=np.int64))
        self.keep_per_image_counts = keep_per_image_counts
        n = self.category_ids.size
        self._tp = np.zeros(n, np.int64)
        self._fp = np.zeros(n, np.int64)
        self._fn = np.zeros(n, np.int64)
        self._iou = np.zeros(n, np.float64)
        self._image_ids: list[str] = []
        self._scalars: list[np.ndarray] = []  # rows (pq, sq, rq, num_categories)
        self._counts: list[np.ndarray] = []  # (4, C) per image

    def update(
        self, predictions: Sequence[Any], references: Sequence[Any], *, image_ids: Sequence[object] | None = None
    ) -> None:
        """Add a batch of images: ``predictions[i]`` is a ``post_process_panoptic_segmentation`` output (or any
        ``{"segmentation", "segments_info"}`` with ``label_id``/``category_id``), ``references[i]`` the ground truth.
        """
        ids = resolve_image_ids(predictions, references, image_ids)
        for pred, ref, image_id in zip(predictions, references, ids):
            counts = self._image_counts(pred, ref, image_id=image_id)
            self._tp += counts[0].astype(np.int64)
            self._fp += counts[1].astype(np.int64)
            self._fn += counts[2].astype(np.int64)
            self._iou += counts[3]
            pq, sq, rq, present = _category_scores(counts[0], counts[1], counts[2], counts[3])
            k = int(present.sum())
            row = (1.0, 1.0, 1.0, 0) if k == 0 else (pq[present].mean(), sq[present].mean(), rq[present].mean(), k)
            self._scalars.append(np.array(row, dtype=np.float64))
            if self.keep_per_image_counts:
                self._counts.append(counts)
            self._image_ids.append(image_id)

    def compute(self) -> PanopticQualityResult:
        """Data-set PQ/SQ/RQ over every image added so far."""
        pq, sq, rq, present = _category_scores(self._tp, self._fp, self._fn, self._iou)
        scalars = _group_means(pq, sq, rq, present, self._is_thing)
        groups = {"_things": present & self._is_thing, "_stuff": present & ~self._is_thing}
        per_class = panoptic_per_class_from_counts(np.stack([self._tp, self._fp, self._fn, self._iou]),
                                                   self.category_ids)
        return PanopticQualityResult(
            **scalars,
            num_categories=int(present.sum()),
            num_things=int(groups["_things"].sum()),
            num_stuff=int(groups["_stuff"].sum()),
            num_images=len(self._image_ids),
            per_class=per_class,
        )

    def per_image(self) -> PerImagePanopticQuality:
        """Per-image PQ/SQ/RQ of every image added so far (counts are empty arrays unless kept)."""
        scalars = np.stack(self._scalars) if self._scalars else np.zeros((0, 4))
        counts = np.stack(self._counts) if self._counts else np.zeros((0, 4, self.category_ids.size))
        return PerImagePanopticQuality(
            image_ids=list(self._image_ids),
            pq=scalars[:, 0],
            sq=scalars[:, 1],
            rq=scalars[:, 2],
            num_categories=scalars[:, 3].astype(np.int64),
            true_positives=counts[:, 0].astype(np.int64),
            false_positives=counts[:, 1].astype(np.int64),
            false_negatives=counts[:, 2].astype(np.int64),
            iou_sum=counts[:, 3],
            category_ids=self.category_ids.copy(),
        )

    # ---- one image -------------------------------------------------------------------------------------------

    def _image_counts(self, pred_entry: Any, ref_entry: Any, *, image_id: str) -> np.ndarray:
        """``(4, C)`` float64 rows ``tp, fp, fn, iou_sum`` of one image."""
        pred = to_segment_table(
            pred_entry, image_id=image_id, what="prediction", void_values=_VOID, known_categories=self.category_ids
        )
        ref = to_segment_table(
            ref_entry, image_id=image_id, what="reference", void_values=_VOID, known_categories=self.category_ids
        )
        if pred.index_map.shape != ref.index_map.shape:
            raise SegmentationDataError(
                image_id=image_id,
                problem=f"prediction size {pred.index_map.shape} differs from reference size {ref.index_map.shape}",
            )
        if self.protocol == "torchmetrics":  # torchmetrics has no crowd: crowd ground truth is void
            ref = _drop_segments(ref, ref.is_crowd)
        pred_group, pred_cat, _ = self._groups(pred.category_ids, np.zeros_like(pred.is_crowd))
        ref_group, ref_cat, ref_crowd = self._groups(ref.category_ids, ref.is_crowd)
        n_pred = pred.num_segments + 1
        # Pixel pass: one bincount over (reference segment, predicted segment) pairs gives every intersection,
        # the void row/column included; then listed segments are summed into their (merged) groups.
        joint = ref.index_map * n_pred + pred.index_map
        raw = np.bincount(joint.ravel(), minlength=(ref.num_segments + 1) * n_pred).reshape(-1, n_pred)
        counts = np.zeros((ref_cat.size + 1, pred_cat.size + 1), dtype=np.int64)
        np.add.at(counts, (ref_group[:, None], pred_group[None, :]), raw)
        return self._match(counts, ref_cat, ref_crowd, pred_cat)

    def _groups(self, cats: np.ndarray, crowd: np.ndarray):
        """Group index per listed segment (position 0 = void), merging non-crowd stuff segments per category."""
        if cats.size == 0:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
        is_stuff = ~np.isin(cats, self.category_ids[self._is_thing])
        merge = is_stuff & ~crowd
        key = np.where(merge, cats, self.category_ids[-1] + 1 + np.arange(cats.size))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        group = np.concatenate([[0], inverse + 1]).astype(np.int64)
        return group, cats[first], crowd[first]

    def _match(
        self, counts: np.ndarray, ref_cat: np.ndarray, ref_crowd: np.ndarray, pred_cat: np.ndarray
    ) -> np.ndarray:
        """TP/FP/FN/IoU-sum per category from the ``(G+1, P+1)`` intersection matrix (row/column 0 = void)."""
        inter = counts[1:, 1:]
        ref_area = counts[1:].sum(axis=1)
        pred_area = counts[:, 1:].sum(axis=0)
        pred_on_void = counts[0, 1:]  # predicted pixels on ground-truth void
        ref_on_void = counts[1:, 0]  # ground-truth pixels the prediction left void
        same = ref_cat[:, None] == pred_cat[None, :]
        if self.protocol == "coco":
            union = pred_area[None, :] + ref_area[:, None] - inter - pred_on_void[None, :]
        else:
            union = (pred_area - pred_on_void)[None, :] + (ref_area - ref_on_void)[:, None] - inter
        # IoU > 0.5 tested exactly in integers (2 * |p & g| > union); such a match is unique per row and column.
        matched = same & ~ref_crowd[:, None] & (inter > 0) & (2 * inter > union)
        g_idx, p_idx = np.nonzero(matched)
        iou = inter[g_idx, p_idx] / union[g_idx, p_idx]
        ref_matched = np.zeros(ref_cat.size, bool)
        ref_matched[g_idx] = True
        pred_matched = np.zeros(pred_cat.size, bool)
        pred_matched[p_idx] = True
        fn = ~ref_matched & ~ref_crowd & (ref_area > 0)
        if self.protocol == "torchmetrics":  # a ground-truth segment mostly predicted as void is no FN
            fn &= ~(2 * ref_on_void > ref_area)
        ignored = pred_on_void + (inter * (ref_crowd[:, None] & same)).sum(axis=0)
        fp = ~pred_matched & (pred_area > 0) & ~(2 * ignored > pred_area)
        n = self.category_ids.size
        col = lambda cats: np.searchsorted(self.category_ids, cats)  # noqa: E731 (categories were validated)
        return np.stack(
            [
                np.bincount(col(ref_cat[g_idx]), minlength=n).astype(np.float64),
                np.bincount(col(pred_cat[fp]), minlength=n).astype(np.float64),
                np.bincount(col(ref_cat[fn]), minlength=n).astype(np.float64),
                np.bincount(col(ref_cat[g_idx]), weights=iou, minlength=n),
            ]
        )


def _drop_segments(table: SegmentTable, drop: np.ndarray) -> SegmentTable:
    """The table with the ``drop`` segments turned into void pixels."""
    if not drop.any():
        return table
    keep = ~drop
    lut = np.zeros(table.num_segments + 1, np.int64)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return SegmentTable(
        index_map=lut[table.index_map],
        segment_ids=table.segment_ids[keep],
        category_ids=table.category_ids[keep],
        is_crowd=table.is_crowd[keep],
        scores=table.scores[keep],
    )


def panoptic_quality(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    thing_ids: Collection[int],
    stuff_ids: Collection[int],
    protocol: Protocol = "coco",
    image_ids: Sequence[object] | None = None,
) -> PanopticQualityResult:
    """Data-set PQ/SQ/RQ (all, things, stuff, per class) of panoptic predictions against references.

    Args:
        predictions: ``B`` outputs of ``post_process_panoptic_segmentation`` (``segmentation`` ``(H, W)``, 0 or -1 =
            void; ``segments_info`` with ``id``, ``label_id``).
        references: ``B`` ground truths, same form (``category_id`` and ``iscrowd`` accepted), e.g. from
            ``modeling_ecom2f.data.panoptic_reference``.
        thing_ids, stuff_ids: The category sets.
        protocol: ``"coco"`` (panopticapi, default) or ``"torchmetrics"``.
        image_ids: Names for error messages (default: ``references[i]["image_id"]`` or the index).
    """
    acc = PanopticQualityAccumulator(
        thing_ids=thing_ids, stuff_ids=stuff_ids, protocol=protocol, keep_per_image_counts=False
    )
    acc.update(predictions, references, image_ids=image_ids)
    return acc.compute()


def per_image_panoptic_quality(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    thing_ids: Collection[int],
    stuff_ids: Collection[int],
    protocol: Protocol = "coco",
    image_ids: Sequence[object] | None = None,
    keep_counts: bool = True,
) -> PerImagePanopticQuality:
    """PQ/SQ/RQ of each image alone (same arguments as :func:`panoptic_quality`); see the module docstring for
    the convention on images with no category present (PQ = 1.0)."""
    acc = PanopticQualityAccumulator(
        thing_ids=thing_ids, stuff_ids=stuff_ids, protocol=protocol, keep_per_image_counts=keep_counts
    )
    acc.update(predictions, references, image_ids=image_ids)
    return acc.per_image()
