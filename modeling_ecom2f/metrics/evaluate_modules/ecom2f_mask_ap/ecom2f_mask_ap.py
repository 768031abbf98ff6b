"""`evaluate` wrapper of ``modeling_ecom2f.metrics.mask_average_precision`` (COCO mask AP via pycocotools).

    metric = evaluate.load(evaluate_module_path("ecom2f_mask_ap"))  # from modeling_ecom2f.metrics
    metric.compute(predictions=processor.post_process_instance_segmentation(outputs, target_sizes=sizes),
                   references=[panoptic_reference(row) for row in rows], thing_ids=[...], stuff_ids=[...])

Predictions must be the default map form (``(H, W)``, -1 = none); for ``return_binary_maps=True`` outputs call the
package function directly.
"""

import evaluate

from modeling_ecom2f.metrics import mask_average_precision
from modeling_ecom2f.metrics.evaluate_support import (
    REFERENCE_SEGMENT_KEYS,
    SchemaInputs,
    entries_for_schema,
    entry_feature,
    metric_info,
)

_DESCRIPTION = "COCO mask average precision (AP, AP50, AP75, APs/m/l, AR) computed by pycocotools' COCOeval."
_CITATION = """@inproceedings{lin2014microsoft, title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and others}, booktitle={ECCV}, year={2014}}"""
_INPUTS = """
Args:
    predictions: list of post_process_instance_segmentation outputs: {"segmentation": (H, W), -1 = none,
        "segments_info": [{"id", "label_id", "score"}]}.
    references: list of panoptic ground truths {"segmentation", "segments_info": [{"id", "category_id", "iscrowd"}]}.
    thing_ids: evaluated categories. stuff_ids: other known categories (their predictions are dropped).
Returns:
    AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (NaN where undefined) and per_class_AP.
"""


class Ecom2fMaskAp(SchemaInputs, evaluate.Metric):
    def _info(self):
        predictions = entry_feature(id="int64", label_id="int64", score="float64")
        references = entry_feature(id="int64", category_id="int64", iscrowd="int64")
        return metric_info(_DESCRIPTION, _CITATION, _INPUTS, predictions=predictions, references=references)

    # Keep exactly the schema's keys: post_process_* outputs carry extras (was_fused, ...) evaluate rejects.
    def shape_predictions(self, predictions):
        return entries_for_schema(predictions, segment_keys={"id": None, "label_id": None, "score": 1.0})

    def shape_references(self, references):
        return entries_for_schema(references, segment_keys=REFERENCE_SEGMENT_KEYS)

    def _compute(self, predictions, references, thing_ids=(), stuff_ids=()):
        out = mask_average_precision(predictions, references, thing_ids=list(thing_ids), stuff_ids=list(stuff_ids))
        out["per_class_AP"] = {str(k): v for k, v in out["per_class_AP"].items()}
        return out
