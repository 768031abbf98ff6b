"""Convert a detectron2 Mask2Former / ECO-M2F / PRO-SCALE checkpoint into a complete `from_pretrained` folder.

`convert_checkpoint` reads the file (`reading`), recognises the architecture (`architecture`), builds the matching
`EcoMask2FormerConfig`, maps every weight (`mapping`), and writes weights (safetensors), `config.json`, the image
processor's config with the authors' test size, a model card and `conversion.json` into a temporary folder beside the
output. The folder is reloaded and run once before it is moved into place, so a failure at any step leaves no
output folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from configuration.configuration_ecom2f import EcoMask2FormerConfig
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor

from ..modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from .architecture import Detectron2Architecture, detect_architecture
from .card import model_card
from .label_sets import LabelSet
from .mapping import MappingReport, map_state_dict
from .presets import PRESETS, RELEASES, DatasetPreset, Release
from .reading import ConversionError, SourceCheckpoint, read_detectron2_checkpoint


@dataclass(frozen=True)
class ConversionResult:
    """What `convert_checkpoint` wrote and why: the folder, the source, the architecture and the accounting."""

    output_dir: Path
    source: SourceCheckpoint
    architecture: Detectron2Architecture
    report: MappingReport


def build_config(arch: Detectron2Architecture, *, labels: LabelSet) -> EcoMask2FormerConfig:
    """The `EcoMask2FormerConfig` of a detected architecture. A PRO-SCALE TRC gets the released code's layout
    (`token_recalibration_layout="official"`), which its weights were trained against; an ECO-M2F gate is marked
    trained with the paper's classification objective over its exits."""
    exits = list(arch.gate_exits) if arch.gate_exits else None
    config = EcoMask2FormerConfig(
        backbone_config=arch.backbone.to_config(), num_labels=len(labels.names),
        id2label=labels.id2label, label2id={name: i for i, name in labels.id2label.items()},
        feature_size=arch.feature_size, mask_feature_size=arch.mask_feature_size, hidden_dim=arch.hidden_dim,
        encoder_feedforward_dim=arch.encoder_feedforward_dim, encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers, num_attention_heads=arch.num_attention_heads,
        dim_feedforward=arch.dim_feedforward, num_queries=arch.num_queries,
        enforce_input_projection=arch.decoder_input_projection, encoder_n_points=arch.encoder_n_points,
        no_object_weight=0.1 if arch.no_object_weight is None else arch.no_object_weight,
        exit_layers=exits, gate_trained=exits is not None, gate_objective="classification",
        token_scaling_layers=arch.token_scaling_layers, token_recalibration=arch.token_recalibration,
        token_recalibration_layout="official" if arch.token_recalibration else "standard",
        light_pixel_embedding=arch.light_pixel_embedding,
    )
    config.num_labels = len(labels.names)
    return config


def _labels_for(arch: Detectron2Architecture, preset: DatasetPreset | None, id2label: dict[int, str] | None) -> LabelSet:
    if id2label is not None:
        names = tuple(id2label[i] for i in range(len(id2label)))
        labels = LabelSet(names, frozenset())
        what = f"the given id2label ({len(names)} classes)"
    elif preset is not None:
        labels, what = preset.labels, f"preset {preset.name!r} ({len(preset.labels.names)} classes)"
    else:
        raise ConversionError("name the data set: a preset (one of " + ", ".join(PRESETS) + ") or an id2label file")
    if len(labels.names) != arch.num_classes:
        fitting = [p.name for p in PRESETS.values() if len(p.labels.names) == arch.num_classes]
        raise ConversionError(f"the checkpoint has {arch.num_classes} classes but {what} does not match"
                              + (f"; presets with {arch.num_classes} classes: {fitting}" if fitting else ""))
    return labels


def _check_release(release: Release, arch: Detectron2Architecture, preset: DatasetPreset | None) -> None:
    if release.family != arch.family or release.backbone != arch.backbone.kind:
        raise ConversionError(f"release {release.name!r} is a {release.family} {release.backbone} checkpoint, the file "
                              f"is a {arch.family} {arch.backbone.kind} one")
    if preset is not None and preset.name != release.preset:
        raise ConversionError(f"release {release.name!r} was trained on {release.preset!r}, not {preset.name!r}")


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise ConversionError(f"{output_dir} exists and is not empty (pass --overwrite to replace it)")


def _verify(folder: Path, model: EcoMask2FormerForUniversalSegmentation) -> None:
    """Reload the written folder, compare every tensor, and run one small forward (finite outputs, gate per image)."""
    loaded, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise ConversionError(f"the written folder does not reload cleanly: {problems}")
    written = loaded.state_dict()
    for name, value in model.state_dict().items():
        if not torch.equal(written[name], value):
            raise ConversionError(f"the written weights differ from the converted ones at {name!r}")
    with torch.no_grad():
        out = loaded.eval()(pixel_values=torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    if not (torch.isfinite(out.class_queries_logits).all() and torch.isfinite(out.masks_queries_logits).all()):
        raise ConversionError("the converted model gives non-finite outputs on a test input")
    if not set(out.encoder_layers_used.tolist()) <= set(loaded.config.exit_layers):
        raise ConversionError(f"the converted model exited at {out.encoder_layers_used.tolist()}, outside its exits")


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    preset: str | None = None,
    id2label: dict[int, str] | None = None,
    release: str | None = None,
    num_attention_heads: int = 8,
    trust_pickle: bool = False,
    overwrite: bool = False,
    verify: bool = True,
) -> ConversionResult:
    """Convert one detectron2 checkpoint into an EcoMask2Former `from_pretrained` folder at `output_dir`.

    Args:
        checkpoint: a detectron2 `.pth` (`torch.save`) or `.pkl` (pickled NumPy arrays), or a bare state dict file.
        preset: data set of the checkpoint (`PRESETS`: classes and test-time size); `release` implies it.
        id2label: class names by index, for a data set without a preset (test size then from `preset` if given,
            else COCO's 800/1333).
        release: a name from `RELEASES`: the file is checked against it and the card quotes its reported figures.
        num_attention_heads: `MASK_FORMER.NHEADS` of the checkpoint's config (8 in every released one).
        trust_pickle: allow arbitrary pickled objects (only for files you trust).
        overwrite: replace a non-empty `output_dir`.
        verify: reload the written folder and run one forward before moving it into place.

    Raises:
        ConversionError: anything that stops a faithful conversion; no output folder is left behind.
    """
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite)
    known_release = RELEASES.get(release) if release else None
    if release and known_release is None:
        raise ConversionError(f"unknown release {release!r}; known: {sorted(RELEASES)}")
    preset = preset or (known_release.preset if known_release else None)
    if preset is not None and preset not in PRESETS:
        raise ConversionError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    dataset = PRESETS[preset] if preset else None
    source = read_detectron2_checkpoint(checkpoint, trust_pickle=trust_pickle)
    arch = detect_architecture(source.state_dict, num_attention_heads=num_attention_heads)
    labels = _labels_for(arch, dataset, id2label)
    if known_release is not None:
        _check_release(known_release, arch, dataset)
    config = build_config(arch, labels=labels)
    model = EcoMask2FormerForUniversalSegmentation(config).eval()
    weights, report = map_state_dict(source.state_dict, model.state_dict(), backbone=arch.backbone.kind,
                                     buffers=lambda name: _buffer(model, name))
    model.load_state_dict(weights, strict=True)
    shortest, longest = (dataset.shortest_edge, dataset.longest_edge) if dataset else (800, 1333)
    processor = EcoMask2FormerImageProcessor(size={"shortest_edge": shortest, "longest_edge": longest},
                                             size_divisor=32, ignore_index=255, do_reduce_labels=False)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        record = {"source": {"file": source.path.name, "sha256": source.sha256, "format": source.file_format,
                             "dropped_top_level_entries": list(source.dropped_entries),
                             "stripped_prefix": source.stripped_prefix},
                  "architecture": asdict(arch) | {"backbone_kind": arch.backbone.kind},
                  "preset": preset, "release": release, "mapping": report.summary(),
                  "checked_not_stored": report.checked, "new_target_keys": report.new}
        (staging / "conversion.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        (staging / "README.md").write_text(model_card(source=source, arch=arch, config=config, dataset=dataset,
                                                      release=known_release, report=report))
        if verify:
            _verify(staging, model)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConversionResult(output_dir=output_dir, source=source, architecture=arch, report=report)


def _buffer(model: torch.nn.Module, name: str) -> torch.Tensor | None:
    try:
        return model.get_buffer(name)
    except AttributeError:
        return None


__all__ = ["ConversionResult", "build_config", "convert_checkpoint"]
