"""The model card (README.md) of a converted checkpoint: where the weights come from, what the authors report, what
the conversion did, and how to use the folder."""

from __future__ import annotations

from .architecture import Detectron2Architecture
from .mapping import MappingReport
from .presets import DatasetPreset, Release
from .reading import SourceCheckpoint

_FAMILY = {
    "mask2former": "Mask2Former",
    "eco_m2f": "ECO-M2F (input-adaptive encoder depth, arXiv 2404.15244)",
    "proscale": "PRO-SCALE (progressive token length, arXiv 2404.14657)",
    "proscale+eco_m2f": "PRO-SCALE with an ECO-M2F gate",
}


def _architecture_lines(arch: Detectron2Architecture, config) -> list[str]:
    backbone = arch.backbone
    if backbone.kind == "swin":
        what = (f"Swin (embed {backbone.embed_dim}, depths {list(backbone.depths)}, heads {list(backbone.num_heads)}, "
                f"window {backbone.window_size})")
    else:
        what = f"ResNet (bottleneck, depths {list(backbone.depths)})"
    lines = [f"- Backbone: {what}.",
             f"- Pixel decoder: {arch.encoder_layers} deformable encoder layers (d={arch.feature_size}, "
             f"{arch.encoder_n_points} points per head and level)."]
    if config.token_scaling_layers:
        lines.append(f"- PRO-SCALE stages {config.token_scaling_layers} (levels per layer "
                     f"{list(arch.encoder_levels_per_layer)}), TRC: {'yes, in the released code layout' if arch.token_recalibration else 'no'}, "
                     f"LPE: {'yes' if arch.light_pixel_embedding else 'no'}.")
    if arch.gate_exits:
        lines.append(f"- ECO-M2F gate over exits {list(arch.gate_exits)} (class k = exit {arch.gate_exits[0]} + k), "
                     "trained by the authors: a forward without `num_encoder_layers` lets it pick each image's depth.")
    lines.append(f"- Masked-attention decoder: {arch.decoder_layers - 1} layers, {arch.num_queries} queries, "
                 f"{arch.num_classes} classes.")
    return lines


def model_card(*, source: SourceCheckpoint, arch: Detectron2Architecture, config, dataset: DatasetPreset | None,
               release: Release | None, report: MappingReport) -> str:
    """Markdown with a Hub metadata header."""
    family = _FAMILY[arch.family]
    title = f"{family.split(' (')[0]} {arch.backbone.kind}" + (f" on {dataset.name}" if dataset else "")
    tags = ["image-segmentation", "mask2former", "ecom2f", arch.family.replace("+", "-").replace("_", "-")]
    lines = ["---", "library_name: transformers", "pipeline_tag: image-segmentation", "tags:",
             *[f"- {tag}" for tag in tags], "---", "", f"# {title} (converted from detectron2)", "",
             f"{family}, converted with `ecom2f-convert` into an `EcoMask2FormerForUniversalSegmentation` folder "
             "(`import modeling_ecom2f`, then `from_pretrained`).", "", "## Source", "",
             f"- File: `{source.path.name}` ({source.file_format}), SHA-256 `{source.sha256}`."]
    if release is not None:
        lines += [f"- Release: `{release.name}`, {release.page} (config `{release.config}`)."]
    if source.dropped_entries:
        lines.append(f"- Not converted (training state): {', '.join(f'`{e}`' for e in source.dropped_entries)}.")
    if release is not None and release.reported:
        lines += ["", "## Figures reported by the authors", "",
                  "Quoted from the authors' README for this release; not measured by this conversion.", "",
                  "| " + " | ".join(release.reported) + " |", "|" + "---|" * len(release.reported),
                  "| " + " | ".join(f"{v:g}" for v in release.reported.values()) + " |"]
        if release.note:
            lines += ["", f"Note: {release.note}."]
    lines += ["", "## What the conversion did", "", *_architecture_lines(arch, config),
              f"- {len(report.renamed)} source weights mapped to {sum(len(v) for v in report.renamed.values())} "
              f"target weights (packed q/k/v split), {len(report.checked)} buffers checked against the model's own, "
              f"{len(report.new)} target weights new:"]
    reasons = sorted(set(report.new.values()))
    lines += [f"  - {sum(1 for v in report.new.values() if v == r)} x {r}" for r in reasons] or ["  - none"]
    if dataset is not None:
        lines.append(f"- Preprocessing: shortest edge {dataset.shortest_edge}, longest {dataset.longest_edge} (the "
                     "authors' test size), ImageNet mean/std; sides are rounded to multiples of 32 by resizing, where "
                     "detectron2 pads.")
    lines += ["", "## Use", "", "```python", "import modeling_ecom2f  # registers the classes",
              "from transformers import pipeline", "",
              "segmenter = pipeline(\"image-segmentation\", model=\"path/to/this/folder\")",
              "segments = segmenter(\"image.jpg\", subtask=\"panoptic\")", "```"]
    if arch.gate_exits:
        lines += ["", "The gate decides per image, also in a batch (the released code takes one argmax over the whole "
                  "batch, which is only right at batch size 1). Its mean-pooling skips padding, where the released "
                  "code averages padded tokens too: the two agree on any unpadded image."]
    return "\n".join(lines) + "\n"


__all__ = ["model_card"]
