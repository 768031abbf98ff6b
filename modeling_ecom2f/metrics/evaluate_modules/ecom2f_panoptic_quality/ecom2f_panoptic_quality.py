"""`evaluate` wrapper of ``modeling_ecom2f.metrics.panoptic_quality`` (PQ, SQ, RQ; all / things / stuff; per class).

Load it from the installed package's folder, with the Hub offline::

    metric = evaluate.load(evaluate_module_path("ecom2f_panoptic_quality"))  # from modeling_ecom2f.metrics
    metric.compute(predictions=processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes),
                   references=[panoptic_reference(row) for row in rows], thing_ids=[...], stuff_ids=[...])

This is a thin shim: the computation is the package's vectorised NumPy code. Going through ``evaluate`` costs an
Arrow round trip of every map; call the package function directly in training loops.
"""

import evaluate

from modeling_ecom2f.metrics import panoptic_quality
from modeling_ecom2f.metrics.evaluate_support import (
    REFERENCE_SEGMENT_KEYS,
    SchemaInputs,
    entries_for_schema,
    entry_feature,
    metric_info,
)

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

class Ecom2fPanopticQuality(SchemaInputs, evaluate.Metric):
    def _info(self):
        predictions = entry_feature(id="int64", label_id="int64")
        references = entry_feature(id="int64", category_id="int64", iscrowd="int64")
        return metric_info(_DESCRIPTION, _CITATION, _INPUTS, predictions=predictions, references=references)

    # Keep exactly the schema's keys: post_process_* outputs carry extras (was_fused, ...) evaluate rejects.
    def shape_predictions(self, predictions):
        return entries_for_schema(predictions, segment_keys={"id": None, "label_id": None})

    def shape_references(self, references):
        return entries_for_schema(references, segment_keys=REFERENCE_SEGMENT_KEYS)

    def _compute(self, predictions, references, thing_ids=(), stuff_ids=(), protocol="coco"):
        result = panoptic_quality(
            predictions, references, thing_ids=list(thing_ids), stuff_ids=list(stuff_ids), protocol=protocol
        )
        return result.to_dict()
