"""Image processor of EcoDeformableDetr: the stock (PIL backend) Deformable DETR processor whose
`post_process_object_detection` also reports the encoder depth each image used.

Everything else (resize, rescale, normalise, pad with a `pixel_mask`, COCO detection / panoptic annotations) is the
stock behaviour, so a stock `preprocessor_config.json` loads into it unchanged.
"""

from __future__ import annotations

from transformers.models.deformable_detr.image_processing_pil_deformable_detr import DeformableDetrImageProcessorPil


class EcoDeformableDetrImageProcessor(DeformableDetrImageProcessorPil):
    """[`DeformableDetrImageProcessorPil`] plus the per-image encoder depth in the post-processed detections."""

    def post_process_object_detection(self, outputs, threshold: float = 0.5, target_sizes=None, top_k: int = 100):
        """The stock post-processing (per image `scores` `(k,)`, `labels` `(k,)`, `boxes` `(k, 4)` as absolute
        `(x0, y0, x1, y1)`), plus `encoder_layers_used` (an `int`) when the outputs carry the depth of each image."""
        results = super().post_process_object_detection(
            outputs, threshold=threshold, target_sizes=target_sizes, top_k=top_k
        )
        used = getattr(outputs, "encoder_layers_used", None)
        if used is None and isinstance(outputs, dict):  # the pipeline rebuilds outputs from a dict
            used = outputs.get("encoder_layers_used")
        if used is not None:
            for result, depth in zip(results, used.tolist()):  # one host copy after the model has run
                result["encoder_layers_used"] = int(depth)
        return results


__all__ = ["EcoDeformableDetrImageProcessor"]
