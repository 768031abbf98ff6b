"""Command-line arguments of the ECO-M2F recipe, as reusable `argparse` groups and one parser per step.

Every step function of this package takes the `argparse.Namespace` its parser returns, so the example scripts stay
thin (`args = build_..._parser().parse_args(argv)`) and Python callers can build the same namespace with
`build_..._parser().parse_args([...])`.
"""

from __future__ import annotations

import argparse

from ..ecom2f_gate import GATE_POOLINGS
from . import detection_arguments as detection
from .argument_types import (
    add_eco_field_arguments,
    add_fresh_config_arguments,
    json_object,
    non_negative_float,
    positive_int,
)

DATASET_SOURCES = ("synthetic", "disk", "coco_panoptic", "ade20k", "cityscapes", "mapped")
#: Default split names of each source (train, validation).
DEFAULT_SPLITS = {
    "synthetic": ("train", "validation"),
    "disk": ("train", "validation"),
    "coco_panoptic": ("train2017", "val2017"),
    "ade20k": ("training", "validation"),
    "cityscapes": ("train", "val"),
    "mapped": ("train", "validation"),
}
SCHEDULER_TYPES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


def add_data_arguments(parser: argparse.ArgumentParser, *, augmentation: bool = False) -> None:
    """Where the images come from: the embedded generator, a saved data set, a real-data adapter or a mapping."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASET_SOURCES, default="synthetic",
                       help="synthetic: the embedded procedural generator; disk: a DatasetDict saved with "
                            "save_to_disk (standard columns); coco_panoptic/ade20k/cityscapes: on-disk layouts under "
                            "--dataset_path; mapped: any Hub or local data set through a column mapping")
    group.add_argument("--dataset_path", help="folder of the data set (disk, adapters), or a Hub name / local "
                                              "path / data file (mapped)")
    group.add_argument("--train_split", help="split name of the training images (default depends on --dataset)")
    group.add_argument("--validation_split", help="split name of the evaluation images (default depends on --dataset)")
    group.add_argument("--image_size", type=positive_int, default=128,
                       help="training crop size and shortest edge of evaluation images, in pixels")
    group.add_argument("--max_image_size", type=positive_int, default=None,
                       help="longest edge of evaluation images (default: 2 x --image_size)")
    group.add_argument("--max_train_samples", type=positive_int, help="use only the first N training images")
    group.add_argument("--max_eval_samples", type=positive_int, help="use only the first N evaluation images")
    group.add_argument("--dataloader_num_workers", type=int, default=0)
    synth = parser.add_argument_group("synthetic data (--dataset synthetic)")
    synth.add_argument("--synthetic_train_images", type=int, default=320)
    synth.add_argument("--synthetic_validation_images", type=int, default=96)
    synth.add_argument("--synthetic_seed", type=int, default=0)
    synth.add_argument("--synthetic_max_objects", type=positive_int, default=12,
                       help="most thing instances in the hardest images")
    synth.add_argument("--synthetic_min_object_size", type=positive_int, default=6,
                       help="smallest object diameter in pixels (hardest images)")
    mapped = parser.add_argument_group("mapped data (--dataset mapped)")
    mapped.add_argument("--annotation_format", help="one of modeling_ecom2f.data.ANNOTATION_FORMATS")
    mapped.add_argument("--label_info", type=json_object,
                        help="label metadata as JSON (inline or a file): {'id2label': {...}, 'thing_ids': [...]}")
    mapped.add_argument("--image_column", default="image")
    mapped.add_argument("--annotation_column", default="annotation")
    mapped.add_argument("--segments_info_column")
    mapped.add_argument("--image_id_column")
    mapped.add_argument("--reduce_labels", action="store_true", help="ADE20K convention: 0 is void, k -> k-1")
    if augmentation:
        aug = parser.add_argument_group("augmentation (training only)")
        aug.add_argument("--min_scale", type=float, default=0.5, help="smallest random scale of the crop jitter")
        aug.add_argument("--max_scale", type=float, default=1.5, help="largest random scale of the crop jitter")
        aug.add_argument("--flip_probability", type=float, default=0.5)
        aug.add_argument("--no_augmentation", action="store_true", help="train on resized, unaugmented images")


def add_model_arguments(parser: argparse.ArgumentParser, *, fresh: bool = True) -> None:
    """Which model to start from, and the ECO-M2F / PRO-SCALE fields that may override its config."""
    group = parser.add_argument_group("model")
    group.add_argument("--model_name_or_path",
                       help="a saved model folder: stock Mask2Former (model_type 'mask2former') or EcoMask2Former")
    if fresh:
        add_fresh_config_arguments(
            group, config_class="EcoMask2FormerConfig", backbone_default="swin-mini",
            backbone_help="fresh config backbone: a preset (swin-mini, swin-tiny, resnet-mini), any transformers "
                          "backbone model_type (e.g. swin, resnet, convnext; see --backbone_kwargs), or timm:<name> "
                          "for a timm model (e.g. timm:resnet18)")
        group.add_argument("--feature_size", type=positive_int, default=64, help="pixel-decoder width")
        group.add_argument("--hidden_dim", type=positive_int, default=None, help="decoder width (default feature size)")
        group.add_argument("--encoder_layers", type=positive_int, default=6)
        group.add_argument("--decoder_layers", type=positive_int, default=4)
        group.add_argument("--num_queries", type=positive_int, default=20)
        group.add_argument("--num_attention_heads", type=positive_int, default=4)
        group.add_argument("--train_num_points", type=positive_int, default=1024,
                           help="points sampled per mask by the Mask2Former loss")
    eco = add_eco_field_arguments(parser, token_scaling_help="PRO-SCALE stages, e.g. 2 2 2")
    eco.add_argument("--light_pixel_embedding", action="store_true", default=None, help="PRO-SCALE LPE")
    eco.add_argument("--encoder_n_points", type=int,
                     help="deformable sampling points per head and level in the encoder (stock: 4)")


def add_runtime_arguments(parser: argparse.ArgumentParser, *, output_dir: str) -> None:
    """Output, seed, device, precision, trackers and Hub push: the conventions every step shares."""
    group = parser.add_argument_group("run")
    group.add_argument("--output_dir", default=output_dir)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--cpu", action="store_true", help="run on the CPU even if an accelerator is present")
    group.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                       help="default: what `accelerate launch` / the accelerate config says, else no")
    group.add_argument("--per_device_eval_batch_size", type=positive_int, default=8)
    group.add_argument("--num_threads", type=positive_int, default=None,
                       help="torch CPU threads per process (default: torch's choice); 1 is often fastest for small "
                            "models and on a shared machine")
    group.add_argument("--with_tracking", action="store_true", help="log metrics to the trackers of --report_to")
    group.add_argument("--report_to", default="tensorboard", help="tracker(s) for --with_tracking, comma separated")
    group.add_argument("--push_to_hub", action="store_true", help="export and upload the result (hub/ code)")
    group.add_argument("--hub_model_id", help="namespace/name of the Hub repository")
    group.add_argument("--hub_token", help="Hub token (default: the logged-in one)")
    group.add_argument("--hub_private", action="store_true")


def add_training_arguments(parser: argparse.ArgumentParser, *, learning_rate: float, batch_size: int) -> None:
    """Optimizer, schedule, accumulation, checkpointing and resume."""
    group = parser.add_argument_group("training")
    group.add_argument("--per_device_train_batch_size", type=positive_int, default=batch_size)
    group.add_argument("--learning_rate", type=float, default=learning_rate)
    group.add_argument("--weight_decay", type=float, default=0.05)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=0.01 if learning_rate < 1e-3 else 1.0,
                       help="gradient clipping (0 disables)")
    group.add_argument("--num_train_epochs", type=positive_int, default=10)
    group.add_argument("--max_train_steps", type=positive_int, help="optimizer steps; overrides --num_train_epochs")
    group.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    group.add_argument("--lr_scheduler_type", choices=SCHEDULER_TYPES, default="cosine")
    group.add_argument("--num_warmup_steps", type=int, default=None, help="default: --warmup_ratio of the steps")
    group.add_argument("--warmup_ratio", type=float, default=0.05)
    group.add_argument("--checkpointing_steps", type=positive_int, default=None,
                       help="save a resumable checkpoint every N optimizer steps (and always at the end)")
    group.add_argument("--checkpoints_total_limit", type=positive_int, default=2, help="keep the newest N")
    group.add_argument("--resume_from_checkpoint",
                       help="'latest' (newest complete checkpoint in OUTPUT_DIR/checkpoints; starts fresh if none) "
                            "or a checkpoint folder")
    group.add_argument("--stop_after_steps", type=positive_int, default=None,
                       help="stop (as if killed) after N optimizer steps of this run, without the final save; "
                            "for testing resume")
    group.add_argument("--logging_steps", type=positive_int, default=10)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Post-processing thresholds of the evaluation."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--panoptic_threshold", type=float, default=0.5, help="query score threshold (panoptic)")
    group.add_argument("--instance_threshold", type=float, default=0.5, help="query score threshold (mask AP)")
    group.add_argument("--overlap_mask_area_threshold", type=float, default=0.8)


#: Parser descriptions of the segmentation steps (the detection ones are in `detection_arguments`).
DESCRIPTIONS = {
    "step1": "ECO-M2F step 1: train the parent model to exit at every allowed encoder depth (one depth sampled per "
             "step, one shared decoder, loss weighted by depth).",
    "step2": "ECO-M2F step 2: per-image PQ of the frozen parent at every exit, stored as Parquet; ideal-depth labels "
             "for any beta are derived from it without rerunning the model.",
    "step3": "ECO-M2F step 3: freeze everything but the gate and train it with cross-entropy on the ideal-depth "
             "labels argmax_k(PQ_k - beta * k) of the derived data set.",
    "evaluate": "Evaluate an EcoMask2Former model: PQ/SQ/RQ, mIoU, mask AP, GFLOPs and depth histogram for every "
                "fixed depth, the gate(s) and the oracle.",
}


def _step_parser(task: str, step: str, *, fresh: bool, output_dir: str, augmentation: bool = False,
                 training: dict | None = None) -> argparse.ArgumentParser:
    """The shared groups of one step's parser for `task` ("segmentation" or "detection"): model, data, training
    (if `training` gives its defaults), run and evaluation arguments. Detection parsers set `task="detection"`
    (which `tasks.get_task` reads) and write under `outputs/detection/` by default."""
    if task == "segmentation":
        descriptions, add_model, add_eval = DESCRIPTIONS, add_model_arguments, add_eval_arguments
    elif task == "detection":
        descriptions = detection.DETECTION_DESCRIPTIONS
        add_model, add_eval = detection.add_detection_model_arguments, detection.add_detection_eval_arguments
        output_dir = output_dir.replace("outputs/", "outputs/detection/", 1)
    else:
        raise ValueError(f"task: 'segmentation' or 'detection', got {task!r}")
    parser = argparse.ArgumentParser(description=descriptions[step])
    add_model(parser, fresh=fresh)
    add_data_arguments(parser, augmentation=augmentation)
    if training is not None:
        add_training_arguments(parser, **training)
    add_runtime_arguments(parser, output_dir=output_dir)
    add_eval(parser)
    if task != "segmentation":
        parser.set_defaults(task=task)
    return parser


def build_train_early_exit_parser(*, task: str = "segmentation") -> argparse.ArgumentParser:
    parser = _step_parser(task, "step1", fresh=True, output_dir="outputs/step1_early_exit", augmentation=True,
                          training={"learning_rate": 3e-4 if task == "segmentation" else 2e-4, "batch_size": 8})
    if task == "detection":  # Deformable DETR's optimiser settings
        parser.set_defaults(weight_decay=1e-4, max_grad_norm=0.1)
    parser.add_argument("--eval_depths", type=int, nargs="*", default=None,
                        help="after training, evaluate validation PQ (box AP for detection) at these depths (default: "
                             "first and last exit; pass nothing after the flag to skip)")
    return parser


def build_derive_exit_dataset_parser(*, task: str = "segmentation") -> argparse.ArgumentParser:
    parser = _step_parser(task, "step2", fresh=False, output_dir="outputs/step2_derived")
    parser.add_argument("--split", choices=("train", "validation"), default="train",
                        help="which split to derive (the gate is trained on the train split)")
    parser.add_argument("--betas", type=non_negative_float, nargs="+", default=None,
                        help="betas whose label histograms are printed and saved (default: a grid 0..0.1)")
    if task == "segmentation":
        parser.add_argument("--loss_seed", type=int, default=0, help="seed of the per-image loss's point sampling")
    return parser


def build_train_gate_parser(*, task: str = "segmentation") -> argparse.ArgumentParser:
    parser = _step_parser(task, "step3", fresh=False, output_dir="outputs/step3_gate",
                          training={"learning_rate": 1e-2, "batch_size": 32})
    parser.set_defaults(num_train_epochs=60, lr_scheduler_type="cosine", weight_decay=0.01, max_grad_norm=1.0)
    parser.add_argument("--derived_dataset", required=True, help="folder written by derive_exit_dataset.py")
    parser.add_argument("--gate_objective", choices=("classification", "utility"), default="classification",
                        help="classification: cross-entropy on the ideal depths argmax_k(q_k - beta k) of one beta (the "
                             "paper); utility: regress each exit's per-image quality gain over the shallowest exit, "
                             "so that one gate serves every beta (model(..., gate_beta=b))")
    parser.add_argument("--beta", type=non_negative_float, default=None,
                        help="trade-off in quality-fraction units (PQ, or box AP for detection) per encoder layer "
                             "(0.01 = 1 point per layer); required for classification, the default gate_beta of a "
                             "utility gate")
    parser.add_argument("--gate_pooling", choices=GATE_POOLINGS, default=None,
                        help="gate input pooling: mean (the paper, default) or mean_std (also each channel's spatial "
                             "standard deviation)")
    parser.add_argument("--gate_input_level", type=int, default=None,
                        help="input-projected encoder level the gate pools, 0 = coarsest (1/32, the paper; default: "
                             "the parent's)")
    parser.add_argument("--target_encoder_fraction", type=float, default=None,
                        help="utility gate: choose gate_beta so that the mean encoder GFLOPs on the held-out "
                             "training images is at most this fraction of full depth (e.g. 0.7)")
    parser.add_argument("--holdout_fraction", type=float, default=0.2,
                        help="share of the training images held out to measure gate accuracy (0 disables)")
    parser.add_argument("--skip_validation", action="store_true",
                        help="do not evaluate PQ (box AP) and GFLOPs on validation")
    return parser


def build_evaluate_parser(*, task: str = "segmentation") -> argparse.ArgumentParser:
    parser = _step_parser(task, "evaluate", fresh=False, output_dir="outputs/evaluation")
    parser.add_argument("--split", choices=("train", "validation"), default="validation")
    parser.add_argument("--depths", type=int, nargs="*", default=None, help="fixed depths (default: every exit)")
    parser.add_argument("--gate_models", nargs="*", default=[],
                        help="more gated models sharing the parent's weights (step-3 outputs); their gates are "
                             "evaluated too")
    parser.add_argument("--oracle_betas", type=non_negative_float, nargs="*", default=[],
                        help="evaluate the oracle (per image the derived label argmax_k(q_k - beta k) of its per-image "
                             "PQ, or box AP for detection) for these betas")
    parser.add_argument("--no_gate", action="store_true", help="skip the model's own gate")
    parser.add_argument("--gate_betas", type=non_negative_float, nargs="*", default=[],
                        help="evaluate every utility gate at each of these betas (default: its config.gate_beta)")
    parser.add_argument("--no_random_routing", action="store_true",
                        help="skip the random-routing control of each gate (its decisions shuffled across images)")
    parser.add_argument("--routing_seed", type=int, default=0, help="seed of the random-routing permutation")
    parser.add_argument("--no_mask_ap", action="store_true",
                        help="skip mask AP (instance post-processing and COCOeval per mode): faster")
    parser.add_argument("--gate_evaluation", choices=("forward", "select"), default="select",
                        help="kept for compatibility: every gate is now evaluated by taking each image's result at "
                             "the depth the gate picks from the one pass over all exits, checked against a real "
                             "gated forward on the first batch")
    return parser


def build_detection_train_early_exit_parser() -> argparse.ArgumentParser:
    """Step 1 for detection: `build_train_early_exit_parser(task="detection")`."""
    return build_train_early_exit_parser(task="detection")


def build_detection_derive_exit_dataset_parser() -> argparse.ArgumentParser:
    """Step 2 for detection: `build_derive_exit_dataset_parser(task="detection")`."""
    return build_derive_exit_dataset_parser(task="detection")


def build_detection_train_gate_parser() -> argparse.ArgumentParser:
    """Step 3 for detection: `build_train_gate_parser(task="detection")`."""
    return build_train_gate_parser(task="detection")


def build_detection_evaluate_parser() -> argparse.ArgumentParser:
    """Evaluation for detection: `build_evaluate_parser(task="detection")`."""
    return build_evaluate_parser(task="detection")


__all__ = [
    "DATASET_SOURCES",
    "DESCRIPTIONS",
    "DEFAULT_SPLITS",
    "add_data_arguments",
    "add_eval_arguments",
    "add_model_arguments",
    "add_runtime_arguments",
    "add_training_arguments",
    "build_derive_exit_dataset_parser",
    "build_detection_derive_exit_dataset_parser",
    "build_detection_evaluate_parser",
    "build_detection_train_early_exit_parser",
    "build_detection_train_gate_parser",
    "build_evaluate_parser",
    "build_train_early_exit_parser",
    "build_train_gate_parser",
]
