"""detectron2 state-dict layouts of Mask2Former, ECO-M2F and PRO-SCALE, built from their parameters.

`detectron2_layout(params)` lists every key with its shape and dtype as the authors' detectron2 modules name them
(`D2SwinTransformer` or detectron2 `ResNet`, `MSDeformAttnPixelDecoder` and its ECO-M2F / PRO-SCALE variants, the
multi-scale masked transformer decoder, `SetCriterion`). With the Swin-T parameters it reproduces the layouts of the
released checkpoints key for key (`test_convert_layouts.py` checks it against the shared manifests), so tiny
parameters give state dicts with the authors' names at test sizes. `random_checkpoint` fills a layout with random
values (Swin's `relative_position_index` with the real index).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class D2Params:
    backbone: str = "swin"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    resnet_depths: tuple[int, ...] = (3, 4, 6, 3)
    d_model: int = 256
    encoder_ffn: int = 1024
    heads: int = 8
    points: int = 4
    levels_per_layer: tuple[int, ...] = (3,) * 6
    trc: bool = False
    lpe: bool = False
    gate_classes: int | None = None
    num_classes: int = 133
    queries: int = 100
    decoder_layers: int = 9
    decoder_ffn: int = 2048


SWIN_T_COCO = {
    "mask2former_swint_coco": D2Params(),
    "eco_m2f_swint_coco": D2Params(gate_classes=5),
    "eco_m2f_swint_cityscapes": D2Params(gate_classes=5, num_classes=19),
    "proscale_swint_coco": D2Params(levels_per_layer=(1, 1, 1, 2, 2, 2, 3, 3, 3), trc=True, lpe=True),
}


def tiny(params: D2Params) -> D2Params:
    """The same names at test sizes (GroupNorm(32) needs d_model a multiple of 32)."""
    return replace(params, embed_dim=16, swin_heads=(1, 1, 2, 2), d_model=32, encoder_ffn=64, points=2,
                   queries=6, decoder_ffn=64, decoder_layers=3)


def _linear(prefix: str, out_f: int, in_f: int, bias: bool = True) -> dict:
    out = {f"{prefix}.weight": [out_f, in_f]}
    if bias:
        out[f"{prefix}.bias"] = [out_f]
    return out


def _norm(prefix: str, size: int) -> dict:
    return {f"{prefix}.weight": [size], f"{prefix}.bias": [size]}


def _swin(p: D2Params) -> dict:
    keys = {"backbone.patch_embed.proj.weight": [p.embed_dim, 3, 4, 4], "backbone.patch_embed.proj.bias": [p.embed_dim]}
    keys |= _norm("backbone.patch_embed.norm", p.embed_dim)
    for i, (depth, heads) in enumerate(zip(p.depths, p.swin_heads)):
        dim = p.embed_dim * 2**i
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}"
            keys |= _norm(f"{b}.norm1", dim)
            keys[f"{b}.attn.relative_position_bias_table"] = [(2 * p.window - 1) ** 2, heads]
            keys[f"{b}.attn.relative_position_index"] = [p.window**2, p.window**2]
            keys |= _linear(f"{b}.attn.qkv", 3 * dim, dim) | _linear(f"{b}.attn.proj", dim, dim)
            keys |= _norm(f"{b}.norm2", dim) | _linear(f"{b}.mlp.fc1", 4 * dim, dim) | _linear(f"{b}.mlp.fc2", dim, 4 * dim)
        if i < len(p.depths) - 1:
            keys[f"backbone.layers.{i}.downsample.reduction.weight"] = [2 * dim, 4 * dim]
            keys |= _norm(f"backbone.layers.{i}.downsample.norm", 4 * dim)
    for i in range(len(p.depths)):
        keys |= _norm(f"backbone.norm{i}", p.embed_dim * 2**i)
    return keys


def _frozen_bn(prefix: str, size: int) -> dict:
    return {f"{prefix}.norm.{n}": [size] for n in ("weight", "bias", "running_mean", "running_var")}


def _resnet(p: D2Params) -> dict:
    keys = {"backbone.stem.conv1.weight": [64, 3, 7, 7]} | _frozen_bn("backbone.stem.conv1", 64)
    in_ch = 64
    for s, blocks in enumerate(p.resnet_depths):
        out_ch, mid = 256 * 2**s, 64 * 2**s
        for j in range(blocks):
            b = f"backbone.res{s + 2}.{j}"
            if j == 0:
                keys[f"{b}.shortcut.weight"] = [out_ch, in_ch, 1, 1]
                keys |= _frozen_bn(f"{b}.shortcut", out_ch)
            for c, shape in ((1, [mid, in_ch if j == 0 else out_ch, 1, 1]), (2, [mid, mid, 3, 3]), (3, [out_ch, mid, 1, 1])):
                keys[f"{b}.conv{c}.weight"] = shape
                keys |= _frozen_bn(f"{b}.conv{c}", shape[0])
        in_ch = out_ch
    return keys


def _channels(p: D2Params) -> list[int]:
    if p.backbone == "swin":
        return [p.embed_dim * 2**i for i in range(4)]
    return [256 * 2**i for i in range(4)]


def _pixel_decoder(p: D2Params) -> dict:
    d, pd = p.d_model, "sem_seg_head.pixel_decoder"
    channels = _channels(p)
    keys = {}
    for i, c in enumerate(reversed(channels[1:])):  # res5, res4, res3
        keys |= {f"{pd}.input_proj.{i}.0.weight": [d, c, 1, 1], f"{pd}.input_proj.{i}.0.bias": [d]}
        keys |= _norm(f"{pd}.input_proj.{i}.1", d)
    keys[f"{pd}.transformer.level_embed"] = [3, d]
    for i, levels in enumerate(p.levels_per_layer):
        e = f"{pd}.transformer.encoder.layers.{i}"
        n = p.heads * levels * p.points
        keys |= _linear(f"{e}.self_attn.sampling_offsets", 2 * n, d) | _linear(f"{e}.self_attn.attention_weights", n, d)
        keys |= _linear(f"{e}.self_attn.value_proj", d, d) | _linear(f"{e}.self_attn.output_proj", d, d)
        keys |= _norm(f"{e}.norm1", d) | _linear(f"{e}.linear1", p.encoder_ffn, d) | _linear(f"{e}.linear2", d, p.encoder_ffn)
        keys |= _norm(f"{e}.norm2", d)
    if p.gate_classes:
        keys |= _linear(f"{pd}.transformer.encoder.gt.head", p.gate_classes, d)
    if p.trc:
        keys |= _linear(f"{pd}.transformer.encoder.token_excite.ops", 1, d)
    keys |= {f"{pd}.mask_features.weight": [d, d, 1, 1], f"{pd}.mask_features.bias": [d]}
    keys |= {f"{pd}.adapter_1.weight": [d, channels[0], 1, 1]} | _norm(f"{pd}.adapter_1.norm", d)
    if not p.lpe:
        keys[f"{pd}.layer_1.weight"] = [d, d, 3, 3]
    return keys | _norm(f"{pd}.layer_1.norm", d)


def _predictor(p: D2Params) -> dict:
    d, pr = p.d_model, "sem_seg_head.predictor"
    keys = {}
    for i in range(p.decoder_layers):
        s, c, f = (f"{pr}.transformer_self_attention_layers.{i}", f"{pr}.transformer_cross_attention_layers.{i}",
                   f"{pr}.transformer_ffn_layers.{i}")
        keys |= {f"{s}.self_attn.in_proj_weight": [3 * d, d], f"{s}.self_attn.in_proj_bias": [3 * d]}
        keys |= _linear(f"{s}.self_attn.out_proj", d, d) | _norm(f"{s}.norm", d)
        keys |= {f"{c}.multihead_attn.in_proj_weight": [3 * d, d], f"{c}.multihead_attn.in_proj_bias": [3 * d]}
        keys |= _linear(f"{c}.multihead_attn.out_proj", d, d) | _norm(f"{c}.norm", d)
        keys |= _linear(f"{f}.linear1", p.decoder_ffn, d) | _linear(f"{f}.linear2", d, p.decoder_ffn) | _norm(f"{f}.norm", d)
    keys |= _norm(f"{pr}.decoder_norm", d)
    keys |= {f"{pr}.query_feat.weight": [p.queries, d], f"{pr}.query_embed.weight": [p.queries, d],
             f"{pr}.level_embed.weight": [3, d]}
    keys |= _linear(f"{pr}.class_embed", p.num_classes + 1, d)
    for i in range(3):
        keys |= _linear(f"{pr}.mask_embed.layers.{i}", d, d)
    return keys | {"criterion.empty_weight": [p.num_classes + 1]}


def detectron2_layout(p: D2Params) -> dict[str, tuple[list[int], str]]:
    """Every key of the detectron2 state dict of `p`: `{name: (shape, dtype)}`."""
    keys = (_swin(p) if p.backbone == "swin" else _resnet(p)) | _pixel_decoder(p) | _predictor(p)
    return {k: (v, "int64" if k.endswith("relative_position_index") else "float32") for k, v in keys.items()}


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (w*w, w*w, 2) offsets
    return (rel[..., 0] + window - 1) * (2 * window - 1) + rel[..., 1] + window - 1


def random_checkpoint(p: D2Params, *, seed: int = 0, scale: float = 0.2) -> dict[str, torch.Tensor]:
    """A state dict of layout `p` with random values (norm weights near 1, BN variances positive)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, (shape, dtype) in detectron2_layout(p).items():
        if dtype == "int64":
            out[key] = _relative_position_index(p.window)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key == "criterion.empty_weight":
            out[key] = torch.cat([torch.ones(shape[0] - 1), torch.tensor([0.1])])
        else:
            value = torch.randn(shape, generator=g) * scale
            out[key] = value + 1.0 if (".norm" in key and key.endswith("weight") and len(shape) == 1) else value
    return out


def save_checkpoint(state: dict[str, torch.Tensor], path: Path, *, fmt: str, extra: dict | None = None) -> Path:
    """Write `state` as detectron2 does: `fmt="pth"` (`torch.save` of `{"model": ..., **extra}`) or `"pkl"`
    (a pickle of `{"model": {name: ndarray}}`, protocol 2 as the model zoo's files)."""
    if fmt == "pth":
        torch.save({"model": state, **(extra or {})}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, handle, protocol=2)
    return path


__all__ = ["SWIN_T_COCO", "D2Params", "detectron2_layout", "random_checkpoint", "save_checkpoint", "tiny"]
