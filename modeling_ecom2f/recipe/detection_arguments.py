"""Command-line arguments of the detection recipe (EcoDeformableDetr): the model and evaluation groups that differ
from segmentation. `arguments` (the one argument builder) adds them to the step parsers it builds for
`task="detection"`, including these four (importable from `modeling_ecom2f.recipe`):

    build_detection_train_early_exit_parser()   # examples/detection/train_early_exit_detr.py
    build_detection_derive_exit_dataset_parser()  # examples/detection/derive_exit_dataset_detr.py
    build_detection_train_gate_parser()          # examples/detection/train_gate_detr.py
    build_detection_evaluate_parser()            # examples/detection/evaluate_detr.py

Each returns a namespace with `task="detection"`, so the shared step functions (`train_early_exit`,
`derive_exit_dataset`, `train_gate`, `evaluate_model`) run the detection task.
"""

from __future__ import annotations

import argparse

from .argument_types import add_eco_field_arguments, add_fresh_config_arguments, positive_int

DETECTION_DESCRIPTIONS = {
    "step1": "ECO-M2F step 1 for detection: train a Deformable DETR (EcoDeformableDetr) to exit at every allowed "
             "encoder depth (one depth sampled per step, one shared decoder, loss weighted by depth).",
    "step2": "ECO-M2F step 2 for detection: per-image box AP (COCO AP@[.5:.95] on that image) of the frozen parent at "
             "every exit, stored as Parquet; ideal-depth labels argmax_k(AP_k - beta * k) for any beta come from it "
             "without rerunning the model.",
    "step3": "ECO-M2F step 3 for detection: freeze everything but the gate and train it with cross-entropy on the "
             "ideal-depth labels argmax_k(AP_k - beta * k) of the derived data set.",
    "evaluate": "Evaluate an EcoDeformableDetr detector: COCO box AP (pycocotools), GFLOPs and depth histogram for "
                "every fixed depth, the gate(s) and the oracle.",
}


def add_detection_model_arguments(parser: argparse.ArgumentParser, *, fresh: bool = True) -> None:
    """Which detector to start from, and the ECO-M2F / PRO-SCALE fields that may override its config."""
    group = parser.add_argument_group("model")
    group.add_argument("--model_name_or_path",
                       help="a saved model folder: stock Deformable DETR (model_type 'deformable_detr', single stage) "
                            "or EcoDeformableDetr ('eco_deformable_detr')")
    if fresh:
        add_fresh_config_arguments(
            group, config_class="EcoDeformableDetrConfig", backbone_default="resnet-mini",
            backbone_help="fresh config backbone (random init, nothing downloaded): a preset (resnet-mini, "
                          "swin-mini) or any transformers backbone model_type (see --backbone_kwargs); its stages "
                          "2-4 feed the encoder, plus one extra stride-2 level")
        group.add_argument("--d_model", type=positive_int, default=64, help="transformer width")
        group.add_argument("--encoder_layers", type=positive_int, default=6)
        group.add_argument("--decoder_layers", type=positive_int, default=3)
        group.add_argument("--num_queries", type=positive_int, default=30)
        group.add_argument("--num_attention_heads", type=positive_int, default=4)
        group.add_argument("--with_box_refine", action="store_true", help="iterative box refinement in the decoder")
    add_eco_field_arguments(parser,
                            token_scaling_help="PRO-SCALE stages, one per feature level coarse to fine, e.g. 1 1 2 2")


def add_detection_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Post-processing of the detections that box AP is computed on."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--detection_threshold", type=float, default=0.0,
                       help="keep detections scoring above this (of the top 100 per image); 0 keeps all 100, as "
                            "COCO evaluation expects")
    group.add_argument("--empty_image_score_threshold", type=float, default=0.5,
                       help="per-image AP of an image without ground-truth boxes: 1 if no detection scores at least "
                            "this, else 0 (metrics.per_image_box_ap)")


__all__ = [
    "DETECTION_DESCRIPTIONS",
    "add_detection_eval_arguments",
    "add_detection_model_arguments",
]
