"""Rename and reshape detectron2 Mask2Former-family weights into EcoMask2Former's state dict, with strict accounting.

Each rule matches source keys with a regular expression and gives the target key(s): a plain rename, a split of a
packed q/k/v matrix into three (Swin `attn.qkv`, the decoder's self-attention `in_proj_*`; rows are q, k, v in that
order, as `nn.MultiheadAttention` and the original Swin pack them), or a check of a buffer the target model computes
itself (Swin's `relative_position_index`, compared value for value, then not stored). Every source key must match
exactly one rule, every target key must be filled or be one of the known new ones, and every shape must agree;
anything else is a `ConversionError` naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from .reading import ConversionError

BACKBONE = "model.pixel_level_module.encoder."
DECODER = "model.pixel_level_module.decoder."
TRANSFORMER = "model.transformer_module."
_WB = r"(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var)"


@dataclass(frozen=True)
class Rule:
    """`pattern` (on the source key) -> `targets` (templates for `re.Match.expand`); `kind` is `"rename"`, `"split"`
    (one source, three targets: q, k, v) or `"check"` (compared with the target model's own buffer `targets[0]`)."""

    pattern: re.Pattern
    targets: tuple[str, ...]
    kind: str = "rename"


def _rule(pattern: str, *targets: str, kind: str = "rename") -> Rule:
    return Rule(re.compile("^" + pattern + "$"), targets, kind)


def _swin_block(target: str) -> str:
    return BACKBONE + r"swin.encoder.layers.\1.blocks.\2." + target


SWIN_RULES = (
    _rule(r"backbone\.patch_embed\.proj\." + _WB, BACKBONE + r"swin.embeddings.patch_embeddings.projection.\1"),
    _rule(r"backbone\.patch_embed\.norm\." + _WB, BACKBONE + r"swin.embeddings.norm.\1"),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm1\." + _WB, _swin_block(r"layernorm_before.\3")),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm2\." + _WB, _swin_block(r"layernorm_after.\3")),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\." + _WB, _swin_block(r"attention.q_proj.\3"),
          _swin_block(r"attention.k_proj.\3"), _swin_block(r"attention.v_proj.\3"), kind="split"),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\." + _WB, _swin_block(r"attention.o_proj.\3")),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
          _swin_block("attention.relative_position_bias.relative_position_bias_table")),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_index",
          _swin_block("attention.relative_position_bias.relative_position_index"), kind="check"),
    _rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc1|fc2)\." + _WB, _swin_block(r"mlp.\3.\4")),
    _rule(r"backbone\.layers\.(\d+)\.downsample\.reduction\.weight",
          BACKBONE + r"swin.encoder.layers.\1.downsample.reduction.weight"),
    _rule(r"backbone\.layers\.(\d+)\.downsample\.norm\." + _WB, BACKBONE + r"swin.encoder.layers.\1.downsample.norm.\2"),
    _rule(r"backbone\.norm([0-3])\." + _WB, "<swin-norm>"),
)


def _resnet_stage_target(match: re.Match) -> str:
    """`backbone.res{s}.{j}.conv{c}[.norm].X` -> the transformers ResNet name (stage s-2, conv layer c-1)."""
    stage, block, part, rest = match.group(1, 2, 3, 4)
    where = "shortcut" if part == "shortcut" else f"layer.{int(part[-1]) - 1}"
    piece = "convolution.weight" if rest == "weight" else "normalization." + rest.split(".", 1)[1]
    return f"{BACKBONE}encoder.stages.{int(stage) - 2}.layers.{block}.{where}.{piece}"


RESNET_RULES = (
    _rule(r"backbone\.stem\.conv1\.weight", BACKBONE + "embedder.embedder.convolution.weight"),
    _rule(r"backbone\.stem\.conv1\.norm\." + _BN, BACKBONE + r"embedder.embedder.normalization.\1"),
    _rule(r"backbone\.res([2-5])\.(\d+)\.(conv1|conv2|conv3|shortcut)\.(weight|norm\." + _BN + ")", "<resnet>"),
)

_PD = r"sem_seg_head\.pixel_decoder\."
_ENC = _PD + r"transformer\.encoder\.layers\.(\d+)\."
PIXEL_DECODER_RULES = (
    _rule(_PD + r"input_proj\.(\d+)\.([01])\." + _WB, DECODER + r"input_projections.\1.\2.\3"),
    _rule(_PD + r"transformer\.level_embed", DECODER + "level_embed"),
    _rule(_ENC + r"self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\." + _WB,
          DECODER + r"encoder.layers.\1.self_attn.\2.\3"),
    _rule(_ENC + r"norm1\." + _WB, DECODER + r"encoder.layers.\1.self_attn_layer_norm.\2"),
    _rule(_ENC + r"linear1\." + _WB, DECODER + r"encoder.layers.\1.fc1.\2"),
    _rule(_ENC + r"linear2\." + _WB, DECODER + r"encoder.layers.\1.fc2.\2"),
    _rule(_ENC + r"norm2\." + _WB, DECODER + r"encoder.layers.\1.final_layer_norm.\2"),
    _rule(_PD + r"transformer\.encoder\.gt\.head\." + _WB, DECODER + r"gate.classifier.\1"),
    _rule(_PD + r"transformer\.encoder\.token_excite\.ops\." + _WB, DECODER + r"token_recalibration.proj.\1"),
    _rule(_PD + r"mask_features\." + _WB, DECODER + r"mask_projection.\1"),
    _rule(_PD + r"(adapter|layer)_(\d+)\.weight", DECODER + r"\1_\2.0.weight"),
    _rule(_PD + r"(adapter|layer)_(\d+)\.norm\." + _WB, DECODER + r"\1_\2.1.\3"),
)

_PR = r"sem_seg_head\.predictor\."
_LAYER = TRANSFORMER + r"decoder.layers.\1."
PREDICTOR_RULES = (
    _rule(_PR + r"transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_" + _WB,
          _LAYER + r"self_attn.q_proj.\2", _LAYER + r"self_attn.k_proj.\2", _LAYER + r"self_attn.v_proj.\2",
          kind="split"),
    _rule(_PR + r"transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\." + _WB, _LAYER + r"self_attn.out_proj.\2"),
    _rule(_PR + r"transformer_self_attention_layers\.(\d+)\.norm\." + _WB, _LAYER + r"self_attn_layer_norm.\2"),
    _rule(_PR + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(in_proj_weight|in_proj_bias)",
          _LAYER + r"cross_attn.\2"),
    _rule(_PR + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.out_proj\." + _WB,
          _LAYER + r"cross_attn.out_proj.\2"),
    _rule(_PR + r"transformer_cross_attention_layers\.(\d+)\.norm\." + _WB, _LAYER + r"cross_attn_layer_norm.\2"),
    _rule(_PR + r"transformer_ffn_layers\.(\d+)\.linear1\." + _WB, _LAYER + r"fc1.\2"),
    _rule(_PR + r"transformer_ffn_layers\.(\d+)\.linear2\." + _WB, _LAYER + r"fc2.\2"),
    _rule(_PR + r"transformer_ffn_layers\.(\d+)\.norm\." + _WB, _LAYER + r"final_layer_norm.\2"),
    _rule(_PR + r"decoder_norm\." + _WB, TRANSFORMER + r"decoder.layernorm.\1"),
    _rule(_PR + r"query_feat\.weight", TRANSFORMER + "queries_features.weight"),
    _rule(_PR + r"query_embed\.weight", TRANSFORMER + "queries_embedder.weight"),
    _rule(_PR + r"level_embed\.weight", TRANSFORMER + "level_embed.weight"),
    _rule(_PR + r"input_proj\.(\d+)\." + _WB, TRANSFORMER + r"input_projections.\1.\2"),
    _rule(_PR + r"class_embed\." + _WB, r"class_predictor.\1"),
    _rule(_PR + r"mask_embed\.layers\.(\d+)\." + _WB, TRANSFORMER + r"decoder.mask_predictor.mask_embedder.\1.0.\2"),
    _rule(r"criterion\.empty_weight", "criterion.empty_weight"),
)

#: Target keys no detectron2 checkpoint fills, and why (kept at the model's own initial values).
NEW_TARGET_KEYS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\.swin\.layernorm\.(weight|bias)$"), "SwinModel's final norm, unused by the backbone's forward"),
    (re.compile(r"\.normalization\.num_batches_tracked$"), "BatchNorm counter (detectron2's FrozenBN has none)"),
    (re.compile(r"\.gate\.classifier\.(weight|bias)$"), "ECO-M2F gate (the checkpoint has none): untrained"),
)


@dataclass
class MappingReport:
    """The accounting of one conversion: every source key and every target key, and what happened to it."""

    renamed: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    new: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"source_keys_converted": len(self.renamed), "source_keys_checked_not_stored": len(self.checked),
                "target_keys_filled": sum(len(v) for v in self.renamed.values()), "target_keys_new": len(self.new)}


def _targets(rule: Rule, match: re.Match) -> list[str]:
    if rule.targets == ("<resnet>",):
        return [_resnet_stage_target(match)]
    if rule.targets == ("<swin-norm>",):  # detectron2's norm{i} normalises stage i + 1's output
        return [f"{BACKBONE}hidden_states_norms.stage{int(match.group(1)) + 1}.{match.group(2)}"]
    return [match.expand(t) for t in rule.targets]


def map_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, backbone: str,
    buffers: Callable[[str], torch.Tensor | None],
) -> tuple[dict[str, torch.Tensor], MappingReport]:
    """Map `source` (detectron2 names) onto the keys and shapes of `target` (an EcoMask2Former state dict).

    Args:
        backbone: `"swin"` or `"resnet"`: which backbone rules apply.
        buffers: the target model's non-persistent buffer of a name (for `"check"` rules), or `None`.

    Returns:
        The complete target state dict (new keys keep `target`'s values) and the report.

    Raises:
        ConversionError: an unknown source key, a target filled twice, a missing target, a shape or value mismatch.
    """
    rules = (SWIN_RULES if backbone == "swin" else RESNET_RULES) + PIXEL_DECODER_RULES + PREDICTOR_RULES
    out: dict[str, torch.Tensor] = {}
    report = MappingReport()
    for key, tensor in source.items():
        rule, match = next(((r, m) for r in rules if (m := r.pattern.match(key))), (None, None))
        if rule is None:
            raise ConversionError(f"unknown source key {key!r} {tuple(tensor.shape)}: no mapping rule for it")
        names = _targets(rule, match)
        if rule.kind == "check":
            own = buffers(names[0])
            # transformers may store the buffer flattened: compare the values in order.
            if own is None or own.numel() != tensor.numel() or not torch.equal(own.reshape(-1).to(tensor.dtype),
                                                                            tensor.reshape(-1)):
                raise ConversionError(f"source {key!r} differs from the target model's own {names[0]!r}")
            report.checked.append(key)
            continue
        pieces = list(tensor.chunk(3, dim=0)) if rule.kind == "split" else [tensor]
        if rule.kind == "split" and tensor.shape[0] % 3:
            raise ConversionError(f"source {key!r} {tuple(tensor.shape)}: packed q/k/v rows not divisible by 3")
        for name, piece in zip(names, pieces):
            if name not in target:
                raise ConversionError(f"source {key!r} maps to {name!r}, which the target model does not have")
            if name in out:
                raise ConversionError(f"target {name!r} filled twice (the second time from {key!r})")
            if tuple(piece.shape) != tuple(target[name].shape):
                raise ConversionError(f"shape mismatch: source {key!r} gives {tuple(piece.shape)} for {name!r}, the "
                                      f"target model expects {tuple(target[name].shape)}")
            out[name] = piece.to(target[name].dtype).clone()
        report.renamed[key] = names
    for name, value in target.items():
        if name in out:
            continue
        reason = next((why for pattern, why in NEW_TARGET_KEYS if pattern.search(name)), None)
        if reason is None:
            raise ConversionError(f"target key {name!r} {tuple(value.shape)} has no source in the checkpoint")
        report.new[name] = reason
        out[name] = value
    return out, report


__all__ = ["MappingReport", "NEW_TARGET_KEYS", "map_state_dict"]
