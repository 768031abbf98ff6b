"""`evaluate` wrapper of ``modeling_ecom2f.metrics.panoptic_quality`` (PQ, SQ, RQ; all / things / stuff; per class).

Load it from a local path, with the Hub offline::

    metric = evaluate.load("evaluate_metrics/ecom2f_panoptic_quality")
    metric.compute(predictions=processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes),
                   references=[panoptic_reference(row) for row in rows], thing_ids=[...], stuff_ids=[...])

This is a thin shim: the computation is the package's vectorised NumPy code. Going through ``evaluate`` costs an
Arrow round trip of every map; call the package function directly in training loops.
"""

import datasets
import evaluate

from modeling_ecom2f.metrics import panoptic_quality
from modeling_ecom2f.metrics.evaluate_support import entries_for_schema

_DESCRIPTION = "Panoptic quality (Kirillov et al. 2019), COCO panopticapi protocol by default; fractions in [0, 1]."
_CITATION = """@inproceedings{kirillov2019panoptic,
  title={Panoptic Segmentation}, author={Kirillov, Alexander and He, Kaiming and Girshick, Ross and Rother, Carsten
  and Doll{\\'a}r, Piotr}, booktitle={CVPR}, year={2019}}"""
_INPUTS = """
Args:
    predictions: list of post_process_panoptic_segmentation outputs: {"segmentation": (H, W) ints, 0 or -1 = void,
        "segments_info": [{"id", "label_id", "score"?}]}.
    references: list of ground truths: {"segmentation": (H, W) ints, 0 = void,
        "segments_info": [{"id", "category_id", "iscrowd"}]}.
    thing_ids: thing category ids. stuff_ids: stuff category ids.
    protocol: "coco" (default) or "torchmetrics".
Returns:
    pq, sq, rq, pq_things, sq_things, rq_things, pq_stuff, sq_stuff, rq_stuff, num_categories, num_things,
    num_stuff, num_images, per_class.
"""

_MAP = datasets.List(datasets.List(datasets.Value("int64")))


class Ecom2fPanopticQuality(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {
                        "segmentation": _MAP,
                        "segments_info": datasets.List(
                            {"id": datasets.Value("int64"), "label_id": datasets.Value("int64")}
                        ),
                    },
                    "references": {
                        "segmentation": _MAP,
                        "segments_info": datasets.List(
                            {
                                "id": datasets.Value("int64"),
                                "category_id": datasets.Value("int64"),
                                "iscrowd": datasets.Value("int64"),
                            }
                        ),
                    },
                }
            ),
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references (evaluate appends the input description here)."""
        # Keep exactly the schema's keys: post_process_* outputs carry extras (was_fused, ...) evaluate rejects.
        return super().add_batch(
            predictions=entries_for_schema(predictions, segment_keys={"id": None, "label_id": None}),
            references=entries_for_schema(references, segment_keys={"id": None, "category_id": None, "iscrowd": 0}),
            **kwargs,
        )

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction and reference (evaluate appends the input description here)."""
        return self.add_batch(predictions=[prediction], references=[reference], **kwargs)

    def _compute(self, predictions, references, thing_ids=(), stuff_ids=(), protocol="coco"):
        result = panoptic_quality(
            predictions, references, thing_ids=list(thing_ids), stuff_ids=list(stuff_ids), protocol=protocol
        )
        return result.to_dict()
