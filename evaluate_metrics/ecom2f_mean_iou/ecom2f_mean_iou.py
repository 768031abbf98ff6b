"""`evaluate` wrapper of ``modeling_ecom2f.metrics.mean_iou``.

    metric = evaluate.load("evaluate_metrics/ecom2f_mean_iou")
    metric.compute(predictions=processor.post_process_semantic_segmentation(outputs, target_sizes=sizes),
                   references=[semantic_reference(row) for row in rows], num_labels=C, ignore_index=255)

A thin shim over the package's ``bincount`` confusion matrix; call the package function directly in loops.
"""

import datasets
import evaluate

from modeling_ecom2f.metrics import mean_iou
from modeling_ecom2f.metrics.evaluate_support import maps_for_schema

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

_MAP = datasets.List(datasets.List(datasets.Value("int64")))


class Ecom2fMeanIou(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": _MAP, "references": _MAP}),
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references (evaluate appends the input description here)."""
        # Tensors from post_process_semantic_segmentation become int64 NumPy maps for the Arrow schema.
        return super().add_batch(
            predictions=maps_for_schema(predictions), references=maps_for_schema(references), **kwargs
        )

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction and reference (evaluate appends the input description here)."""
        return self.add_batch(predictions=[prediction], references=[reference], **kwargs)

    def _compute(self, predictions, references, num_labels=None, ignore_index=255, reduction="dataset"):
        if num_labels is None:
            raise ValueError("num_labels: required")
        return mean_iou(
            predictions, references, num_labels=int(num_labels), ignore_index=int(ignore_index), reduction=reduction
        ).to_dict()
