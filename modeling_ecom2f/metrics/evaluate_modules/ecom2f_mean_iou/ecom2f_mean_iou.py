"""`evaluate` wrapper of ``modeling_ecom2f.metrics.mean_iou``.

    metric = evaluate.load(evaluate_module_path("ecom2f_mean_iou"))  # from modeling_ecom2f.metrics
    metric.compute(predictions=processor.post_process_semantic_segmentation(outputs, target_sizes=sizes),
                   references=[semantic_reference(row) for row in rows], num_labels=C, ignore_index=255)

A thin shim over the package's ``bincount`` confusion matrix; call the package function directly in loops.
"""

import evaluate

from modeling_ecom2f.metrics import mean_iou
from modeling_ecom2f.metrics.evaluate_support import SchemaInputs, map_feature, maps_for_schema, metric_info

_DESCRIPTION = "Mean IoU over classes; data-set confusion matrix (default) or per-image average (torchmetrics)."
_CITATION = """@article{everingham2010pascal, title={The Pascal Visual Object Classes (VOC) Challenge},
  author={Everingham, Mark and Van Gool, Luc and Williams, Christopher K. I. and Winn, John and Zisserman, Andrew},
  journal={IJCV}, year={2010}}"""
_INPUTS = """
Args:
    predictions: list of (H, W) class maps (post_process_semantic_segmentation output).
    references: list of (H, W) class maps with ignore_index on void.
    num_labels: number of classes. ignore_index: void value (default 255). reduction: "dataset" or "image".
Returns:
    mean_iou, per_class_iou (NaN for absent classes), pixel_accuracy, num_images.
"""

class Ecom2fMeanIou(SchemaInputs, evaluate.Metric):
    def _info(self):
        predictions = map_feature()
        references = map_feature()
        return metric_info(_DESCRIPTION, _CITATION, _INPUTS, predictions=predictions, references=references)

    # Tensors from post_process_semantic_segmentation become int64 NumPy maps for the Arrow schema.
    def shape_predictions(self, predictions):
        return maps_for_schema(predictions)

    def shape_references(self, references):
        return maps_for_schema(references)

    def _compute(self, predictions, references, num_labels=None, ignore_index=255, reduction="dataset"):
        if num_labels is None:
            raise ValueError("num_labels: required")
        return mean_iou(
            predictions, references, num_labels=int(num_labels), ignore_index=int(ignore_index), reduction=reduction
        ).to_dict()
