"""Recognise a detectron2 Mask2Former-family state dict and describe its architecture.

Everything the converter needs is read from the names and shapes of the weights: the backbone (Swin or ResNet,
`D2SwinTransformer` / detectron2 `ResNet` names), the pixel decoder (`MSDeformAttnPixelDecoder` of Mask2Former, its
ECO-M2F variant with the gate `transformer.encoder.gt.head`, its PRO-SCALE variant with staged layers,
`token_excite` and the max-pool `layer_1`), and the masked-attention decoder. Only the attention head count cannot be
read from shapes (`MASK_FORMER.NHEADS`, 8 in every released config); it is an argument. A state dict that does not
fit fails with a `ConversionError` that names what is missing or odd, before anything is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from transformers import ResNetConfig, SwinConfig

from .reading import ConversionError

PIXEL_DECODER = "sem_seg_head.pixel_decoder."
PREDICTOR = "sem_seg_head.predictor."
ENCODER = PIXEL_DECODER + "transformer.encoder."
STAGES = ["stage1", "stage2", "stage3", "stage4"]


@dataclass(frozen=True)
class SwinSpec:
    """A `D2SwinTransformer` backbone."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int
    mlp_ratio: float
    qkv_bias: bool

    kind = "swin"

    def to_config(self) -> SwinConfig:
        return SwinConfig(embed_dim=self.embed_dim, depths=list(self.depths), num_heads=list(self.num_heads),
                          window_size=self.window_size, patch_size=self.patch_size, mlp_ratio=self.mlp_ratio,
                          qkv_bias=self.qkv_bias, drop_path_rate=0.0, out_features=STAGES)


@dataclass(frozen=True)
class ResNetSpec:
    """A detectron2 bottleneck `ResNet` with the basic stem and the stride in the 3x3 convolution
    (`RESNETS.STRIDE_IN_1X1: False`, the Mask2Former configs' setting for torchvision-initialised models)."""

    depths: tuple[int, ...]
    stem_channels: int
    hidden_sizes: tuple[int, ...]

    kind = "resnet"

    def to_config(self) -> ResNetConfig:
        return ResNetConfig(embedding_size=self.stem_channels, hidden_sizes=list(self.hidden_sizes),
                            depths=list(self.depths), layer_type="bottleneck", downsample_in_bottleneck=False,
                            out_features=STAGES)


@dataclass(frozen=True)
class Detectron2Architecture:
    """What a detectron2 Mask2Former-family checkpoint is, read from its state dict.

    `family`: `"mask2former"` (stock), `"eco_m2f"` (a gate over encoder exits), `"proscale"` (staged token length,
    TRC and/or LPE) or `"proscale+eco_m2f"` (both). `encoder_levels_per_layer`: levels each encoder layer attends to,
    coarse first. `gate_exits`: the depths the gate's classes stand for (class `k` = the `k`-th exit), or `None`.
    """

    family: str
    backbone: SwinSpec | ResNetSpec
    num_classes: int
    num_queries: int
    hidden_dim: int
    decoder_layers: int
    dim_feedforward: int
    decoder_input_projection: bool
    feature_size: int
    mask_feature_size: int
    num_feature_levels: int
    encoder_layers: int
    encoder_feedforward_dim: int
    encoder_levels_per_layer: tuple[int, ...]
    encoder_n_points: int
    num_attention_heads: int
    token_recalibration: bool
    light_pixel_embedding: bool
    gate_exits: tuple[int, ...] | None
    no_object_weight: float | None

    @property
    def token_scaling_layers(self) -> list[int] | None:
        """PRO-SCALE stages `[p1, p2, p3]`, or `None` when every layer sees every level."""
        if all(n == self.num_feature_levels for n in self.encoder_levels_per_layer):
            return None
        return [self.encoder_levels_per_layer.count(n) for n in range(1, self.num_feature_levels + 1)]


def _count(keys: set[str], pattern: str) -> int:
    """Number of distinct indices `i` for which some key matches `pattern` with `(\\d+)` standing for `i`."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := regex.match(k))})


def _require(state: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"not a recognised {what}: key {key!r} is missing")
    return state[key]


def _swin_spec(state: dict[str, torch.Tensor], keys: set[str]) -> SwinSpec:
    if "backbone.absolute_pos_embed" in state:
        raise ConversionError("Swin with absolute position embeddings (APE) is not supported: 'backbone.absolute_pos_embed'")
    proj = state["backbone.patch_embed.proj.weight"]  # (embed_dim, 3, patch, patch)
    stages = _count(keys, r"^backbone\.layers\.(\d+)\.blocks\.")
    if stages != len(STAGES):
        raise ConversionError(f"Swin backbone with {stages} stages; the converter expects {len(STAGES)}")
    depths, heads, windows = [], [], set()
    for i in range(stages):
        depths.append(_count(keys, rf"^backbone\.layers\.{i}\.blocks\.(\d+)\."))
        table = _require(state, f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table", "Swin backbone")
        side = math.isqrt(table.shape[0])
        if side * side != table.shape[0] or side % 2 == 0:
            raise ConversionError(f"Swin relative position table of stage {i} has {table.shape[0]} rows, not (2w-1)^2")
        windows.add((side + 1) // 2)
        heads.append(table.shape[1])
    if len(windows) != 1:
        raise ConversionError(f"Swin stages use different window sizes {sorted(windows)}")
    fc1 = _require(state, "backbone.layers.0.blocks.0.mlp.fc1.weight", "Swin backbone")
    return SwinSpec(embed_dim=proj.shape[0], depths=tuple(depths), num_heads=tuple(heads), window_size=windows.pop(),
                    patch_size=proj.shape[-1], mlp_ratio=fc1.shape[0] / fc1.shape[1],
                    qkv_bias="backbone.layers.0.blocks.0.attn.qkv.bias" in state)


def _resnet_spec(state: dict[str, torch.Tensor], keys: set[str]) -> ResNetSpec:
    if any("conv2_offset" in k for k in keys):
        raise ConversionError("ResNet with deformable convolutions (DCN) is not supported: 'conv2_offset' keys")
    depths, hidden = [], []
    for stage in range(2, 6):
        blocks = _count(keys, rf"^backbone\.res{stage}\.(\d+)\.")
        if blocks == 0:
            raise ConversionError(f"ResNet backbone without stage res{stage}")
        conv3 = _require(state, f"backbone.res{stage}.0.conv3.weight", "bottleneck ResNet backbone")
        depths.append(blocks)
        hidden.append(conv3.shape[0])
    return ResNetSpec(depths=tuple(depths), stem_channels=state["backbone.stem.conv1.weight"].shape[0],
                      hidden_sizes=tuple(hidden))


def _encoder_levels(state: dict[str, torch.Tensor], layers: int, levels: int, heads: int) -> tuple[tuple[int, ...], int]:
    """Levels per encoder layer and sampling points, from `attention_weights` rows = heads * levels * points."""
    rows = [_require(state, f"{ENCODER}layers.{i}.self_attn.attention_weights.weight", "deformable encoder").shape[0]
            for i in range(layers)]
    points, remainder = divmod(rows[-1], heads * levels)
    if remainder or points < 1:
        raise ConversionError(f"the last encoder layer's attention_weights has {rows[-1]} rows, not a multiple of "
                              f"{heads} heads x {levels} levels (pass the right num_attention_heads)")
    per_layer = []
    for i, n in enumerate(rows):
        layer_levels, remainder = divmod(n, heads * points)
        offsets = state[f"{ENCODER}layers.{i}.self_attn.sampling_offsets.weight"].shape[0]
        if remainder or not 1 <= layer_levels <= levels or offsets != 2 * n:
            raise ConversionError(f"encoder layer {i}: attention_weights {n} rows / sampling_offsets {offsets} rows do "
                                  f"not fit {heads} heads x {points} points x 1..{levels} levels")
        per_layer.append(layer_levels)
    if any(b < a for a, b in zip(per_layer, per_layer[1:])) or per_layer[-1] != levels:
        raise ConversionError(f"encoder layers attend to {per_layer} levels: not progressive stages ending with all "
                              f"{levels} levels")
    return tuple(per_layer), points


def detect_architecture(state: dict[str, torch.Tensor], *, num_attention_heads: int = 8) -> Detectron2Architecture:
    """Describe a detectron2 Mask2Former / ECO-M2F / PRO-SCALE state dict, or raise `ConversionError`."""
    keys = set(state)
    if not any(k.startswith(PIXEL_DECODER) for k in keys) or f"{PREDICTOR}class_embed.weight" not in keys:
        prefixes = sorted({k.split(".")[0] for k in keys})[:8]
        raise ConversionError("not a detectron2 Mask2Former-family checkpoint: no 'sem_seg_head.pixel_decoder.*' / "
                              f"'sem_seg_head.predictor.class_embed' keys (top-level names: {prefixes})")
    if any(k.startswith(PREDICTOR + "transformer.") for k in keys):
        raise ConversionError("a MaskFormer (v1) checkpoint ('sem_seg_head.predictor.transformer.*'): not supported")
    if f"{ENCODER}layers.0.self_attn.sampling_offsets.weight" not in keys:
        raise ConversionError("the pixel decoder has no deformable encoder ('transformer.encoder.layers.0.self_attn."
                              "sampling_offsets'): only MSDeformAttnPixelDecoder-family checkpoints are supported")
    if "backbone.patch_embed.proj.weight" in keys:
        backbone = _swin_spec(state, keys)
    elif "backbone.stem.conv1.weight" in keys:
        backbone = _resnet_spec(state, keys)
    else:
        raise ConversionError("unknown backbone: neither a Swin ('backbone.patch_embed') nor a ResNet "
                              "('backbone.stem.conv1') state dict")
    levels = _count(keys, rf"^{re.escape(PIXEL_DECODER)}input_proj\.(\d+)\.")
    feature_size = state[f"{PIXEL_DECODER}input_proj.0.0.weight"].shape[0]
    layers = _count(keys, rf"^{re.escape(ENCODER)}layers\.(\d+)\.")
    per_layer, points = _encoder_levels(state, layers, levels, num_attention_heads)
    trc = state.get(f"{ENCODER}token_excite.ops.weight")
    if trc is not None and trc.dim() != 2:
        raise ConversionError("TRC with a 1x1 convolution (PRO-SCALE IS_EXCITE_CONV: True) is not supported; the "
                              "released checkpoints use the linear TRC")
    lpe = f"{PIXEL_DECODER}layer_1.weight" not in keys and f"{PIXEL_DECODER}layer_1.norm.weight" in keys
    gate = state.get(f"{ENCODER}gt.head.weight")
    gate_exits = tuple(range(layers - gate.shape[0] + 1, layers + 1)) if gate is not None else None
    if gate_exits is not None and gate_exits[0] < 1:
        raise ConversionError(f"gate 'gt.head' has {gate.shape[0]} classes for a {layers}-layer encoder")
    proscale = per_layer != (levels,) * layers or trc is not None or lpe
    family = {(False, False): "mask2former", (True, False): "eco_m2f", (False, True): "proscale",
              (True, True): "proscale+eco_m2f"}[(gate is not None, proscale)]
    queries = _require(state, f"{PREDICTOR}query_feat.weight", "Mask2Former decoder")
    empty_weight = state.get("criterion.empty_weight")
    return Detectron2Architecture(
        family=family, backbone=backbone,
        num_classes=state[f"{PREDICTOR}class_embed.weight"].shape[0] - 1,
        num_queries=queries.shape[0], hidden_dim=queries.shape[1],
        decoder_layers=_count(keys, rf"^{re.escape(PREDICTOR)}transformer_self_attention_layers\.(\d+)\.") + 1,
        dim_feedforward=_require(state, f"{PREDICTOR}transformer_ffn_layers.0.linear1.weight", "decoder").shape[0],
        decoder_input_projection=f"{PREDICTOR}input_proj.0.weight" in keys,
        feature_size=feature_size,
        mask_feature_size=_require(state, f"{PIXEL_DECODER}mask_features.weight", "pixel decoder").shape[0],
        num_feature_levels=levels, encoder_layers=layers,
        encoder_feedforward_dim=state[f"{ENCODER}layers.0.linear1.weight"].shape[0],
        encoder_levels_per_layer=per_layer, encoder_n_points=points, num_attention_heads=num_attention_heads,
        token_recalibration=trc is not None, light_pixel_embedding=lpe, gate_exits=gate_exits,
        no_object_weight=None if empty_weight is None else float(empty_weight[-1]),
    )


__all__ = ["Detectron2Architecture", "ResNetSpec", "SwinSpec", "detect_architecture"]
