"""Data-set presets (classes, test-time sizes) and the released checkpoints the converter knows by name.

Test-time sizes are the authors' detectron2 configs' `INPUT.MIN_SIZE_TEST` / `MAX_SIZE_TEST` (Mask2Former
`configs/coco/*`, `configs/cityscapes/*`, `configs/ade20k/*`, which ECO-M2F and PRO-SCALE inherit). The figures of a
release are the ones its authors report in their README; the converter quotes them, it does not measure them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .label_sets import ADE20K, CITYSCAPES, COCO_INSTANCE, COCO_PANOPTIC, LabelSet


@dataclass(frozen=True)
class DatasetPreset:
    """What a checkpoint's data set fixes: its classes, the task the checkpoint was trained for, the test size."""

    name: str
    description: str
    labels: LabelSet
    task: str
    shortest_edge: int
    longest_edge: int


PRESETS: dict[str, DatasetPreset] = {
    preset.name: preset
    for preset in (
        DatasetPreset("coco-panoptic", "COCO panoptic (133 classes: 80 things, 53 stuff)", COCO_PANOPTIC, "panoptic",
                      800, 1333),
        DatasetPreset("coco-instance", "COCO instance (80 classes)", COCO_INSTANCE, "instance", 800, 1333),
        DatasetPreset("cityscapes-panoptic", "Cityscapes panoptic (19 classes: 8 things, 11 stuff)", CITYSCAPES,
                      "panoptic", 1024, 2048),
        DatasetPreset("cityscapes-semantic", "Cityscapes semantic (19 classes)", CITYSCAPES, "semantic", 1024, 2048),
        DatasetPreset("ade20k-panoptic", "ADE20K panoptic (150 classes: 100 things, 50 stuff)", ADE20K, "panoptic",
                      640, 2560),
        DatasetPreset("ade20k-semantic", "ADE20K semantic (150 classes)", ADE20K, "semantic", 640, 2560),
    )
}


@dataclass(frozen=True)
class Release:
    """A checkpoint its authors released: where it is described, what it is, and the figures they report."""

    name: str
    family: str  # "eco_m2f", "proscale" or "mask2former" (see `Detectron2Architecture.family`)
    backbone: str  # "swin" or "resnet"
    preset: str
    page: str
    config: str
    reported: dict[str, float] = field(default_factory=dict)
    note: str = ""


_ECO = "https://github.com/GYeow/ECO-M2F"
_PROSCALE = "https://github.com/abhishekaich27/proscale-pytorch"
_M2F = "https://github.com/facebookresearch/Mask2Former/blob/main/MODEL_ZOO.md"

RELEASES: dict[str, Release] = {
    release.name: release
    for release in (
        Release("eco-m2f-swin-tiny-coco-beta0.0005", "eco_m2f", "swin", "coco-panoptic", _ECO, "configs/00302.yaml",
                {"PQ": 52.06, "mIoU": 62.76, "AP": 41.51, "total GFLOPs": 202.39}),
        Release("eco-m2f-swin-tiny-coco-beta0.02", "eco_m2f", "swin", "coco-panoptic", _ECO, "configs/00297.yaml",
                {"PQ": 50.79, "mIoU": 62.25, "AP": 39.71, "total GFLOPs": 181.64},
                note="the README prints beta=0.0005 on both COCO rows; its config 00297.yaml and the later "
                     "configs/ecom2f_swin_tiny_beta_0.02_coco.yaml name beta=0.02"),
        Release("eco-m2f-swin-tiny-cityscapes-beta0.003", "eco_m2f", "swin", "cityscapes-panoptic", _ECO,
                "configs/00308.yaml", {"PQ": 64.18, "mIoU": 80.49, "AP": 39.64, "total GFLOPs": 507.51}),
        Release("eco-m2f-swin-tiny-cityscapes-beta0.01", "eco_m2f", "swin", "cityscapes-panoptic", _ECO,
                "configs/00284.yaml", {"PQ": 62.09, "mIoU": 79.58, "AP": 36.04, "total GFLOPs": 439.67}),
        Release("proscale-swin-tiny-333-coco", "proscale", "swin", "coco-panoptic", _PROSCALE,
                "configs/swint_proscale_3_3_3_coco.yaml", {"PQ": 52.88}),
        Release("proscale-r50-333-coco", "proscale", "resnet", "coco-panoptic", _PROSCALE,
                "configs/res50_proscale_3_3_3_coco.yaml", {"PQ": 51.44}),
        Release("mask2former-swin-tiny-coco-panoptic", "mask2former", "swin", "coco-panoptic", _M2F,
                "configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml", {"PQ": 53.2}),
        Release("mask2former-r50-coco-panoptic", "mask2former", "resnet", "coco-panoptic", _M2F,
                "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml", {"PQ": 51.9}),
    )
}

__all__ = ["PRESETS", "RELEASES", "DatasetPreset", "Release"]
