"""The converter puts every weight where the authors' forward uses it, checked against references built
independently of the mapping: timm's Swin and torchvision's ResNet loaded with the detectron2 weights by their own
names, `nn.MultiheadAttention` with the packed decoder weights, the ECO-M2F gate recomputed from its source weights,
the released PRO-SCALE TRC computation on tokens, and stock transformers Mask2Former holding the converted weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

from helpers.detectron2 import SWIN_T_COCO, random_checkpoint, save_checkpoint, tiny
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_token_scaling import EcoTokenRecalibration
from modeling_ecom2f.convert import convert_checkpoint


def _convert(tmp_path, params, name: str, **kwargs):
    state = random_checkpoint(params, seed=3)
    path = save_checkpoint(state, tmp_path / f"{name}.pth", fmt="pth")
    result = convert_checkpoint(path, tmp_path / name, preset="coco-panoptic", verify=False, **kwargs)
    return state, EcoMask2FormerForUniversalSegmentation.from_pretrained(result.output_dir).eval()


def _backbone_maps(model, pixel_values) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.model.pixel_level_module.encoder(pixel_values).feature_maps)


def test_swin_backbone_matches_timm_swin_with_the_detectron2_weights(tmp_path):
    params = tiny(SWIN_T_COCO["mask2former_swint_coco"])
    state, model = _convert(tmp_path, params, "swin")
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=0, embed_dim=16,
                                  num_heads=(1, 1, 2, 2), drop_path_rate=0.0, always_partition=True).eval()
    # detectron2's Swin shifts windows even where a map is no larger than a window (timm's `always_partition`).
    # timm keeps the original Swin names, except that a stage's patch merging opens the next stage.
    timm_state = {}
    for key, value in state.items():
        if not key.startswith("backbone.") or key.startswith("backbone.norm") or "relative_position_index" in key:
            continue
        name = key[len("backbone."):]
        if ".downsample." in name:
            stage, rest = name[len("layers."):].split(".", 1)
            name = f"layers.{int(stage) + 1}.{rest}"
        timm_state[name] = value
    missing, unexpected = reference.load_state_dict(timm_state, strict=False)
    assert not unexpected and all(k.startswith(("head", "norm.")) or "relative_position_index" in k for k in missing)
    pixel_values = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stages = reference.forward_intermediates(pixel_values, indices=4, intermediates_only=True)
    for i, (ours, theirs) in enumerate(zip(_backbone_maps(model, pixel_values), stages)):
        normed = F.layer_norm(theirs.permute(0, 2, 3, 1), (theirs.shape[1],), state[f"backbone.norm{i}.weight"],
                              state[f"backbone.norm{i}.bias"]).permute(0, 3, 1, 2)
        torch.testing.assert_close(ours, normed, rtol=0, atol=1e-4, msg=f"stage {i + 1}")


def test_resnet_backbone_matches_torchvision_with_the_detectron2_weights(tmp_path):
    params = replace(tiny(SWIN_T_COCO["mask2former_swint_coco"]), backbone="resnet", resnet_depths=(1, 1, 1, 1))
    state, model = _convert(tmp_path, params, "resnet")
    reference = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1]).eval()
    renamed = {}
    for key, value in state.items():
        if not key.startswith("backbone."):
            continue
        parts = key.split(".")
        if parts[1] == "stem":  # backbone.stem.conv1[.norm].x -> conv1.x / bn1.x
            renamed[("bn1." if parts[3] == "norm" else "conv1.") + parts[-1]] = value
            continue
        layer = f"layer{int(parts[1][3]) - 1}.{parts[2]}"
        if parts[3] == "shortcut":
            renamed[f"{layer}.downsample.{1 if parts[4] == 'norm' else 0}.{parts[-1]}"] = value
        else:
            conv = parts[3][-1]
            renamed[f"{layer}.{'bn' if parts[4] == 'norm' else 'conv'}{conv}.{parts[-1]}"] = value
    missing, unexpected = reference.load_state_dict(renamed, strict=False)
    assert not unexpected and all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in missing)
    pixel_values = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(pixel_values))))
        stages = []
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            x = layer(x)
            stages.append(x)
    for i, (ours, theirs) in enumerate(zip(_backbone_maps(model, pixel_values), stages)):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4, msg=f"res{i + 2}")


def test_decoder_self_attention_split_equals_the_packed_multihead_attention(tmp_path):
    params = tiny(SWIN_T_COCO["mask2former_swint_coco"])
    state, model = _convert(tmp_path, params, "decoder")
    d, prefix = params.d_model, "sem_seg_head.predictor.transformer_self_attention_layers.1.self_attn"
    packed = torch.nn.MultiheadAttention(d, params.heads).eval()
    packed.load_state_dict({"in_proj_weight": state[f"{prefix}.in_proj_weight"],
                            "in_proj_bias": state[f"{prefix}.in_proj_bias"],
                            "out_proj.weight": state[f"{prefix}.out_proj.weight"],
                            "out_proj.bias": state[f"{prefix}.out_proj.bias"]})
    queries = torch.randn(params.queries, 2, d, generator=torch.Generator().manual_seed(0))  # (Q, B, C)
    position = torch.randn(params.queries, 2, d, generator=torch.Generator().manual_seed(1))
    layer = model.model.transformer_module.decoder.layers[1]
    with torch.no_grad():
        expected = packed(queries + position, queries + position, queries, need_weights=False)[0]
        got = layer.self_attn(hidden_states=queries, position_embeddings=position)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    q_weight = model.state_dict()["model.transformer_module.decoder.layers.1.self_attn.q_proj.weight"]
    assert torch.equal(q_weight, state[f"{prefix}.in_proj_weight"][:d])  # rows 0..d-1 are q


def test_gate_decision_is_the_released_argmax_plus_two(tmp_path):
    params = tiny(SWIN_T_COCO["eco_m2f_swint_coco"])
    state, model = _convert(tmp_path, params, "eco")
    pixel_values = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * torch.tensor(
        [0.2, 1.0, 3.0, 6.0]).view(4, 1, 1, 1)
    pd = "sem_seg_head.pixel_decoder"
    with torch.no_grad():
        res5 = _backbone_maps(model, pixel_values)[-1]
        projected = F.group_norm(F.conv2d(res5, state[f"{pd}.input_proj.0.0.weight"], state[f"{pd}.input_proj.0.0.bias"]),
                                 32, state[f"{pd}.input_proj.0.1.weight"], state[f"{pd}.input_proj.0.1.bias"])
        logits = F.linear(projected.mean(dim=(2, 3)), state[f"{pd}.transformer.encoder.gt.head.weight"],
                          state[f"{pd}.transformer.encoder.gt.head.bias"])
        out = model(pixel_values=pixel_values)
    torch.testing.assert_close(out.gate_logits, logits, rtol=0, atol=1e-5)
    assert out.encoder_layers_used.tolist() == (logits.argmax(-1) + 2).tolist()


def _released_trc(tokens, guide_tokens, size, guide_size, proj, temperature):
    """The released TRC on token-major tensors: the guide's memory read as a (B, C, H, W) map, resized, and read back
    as (B, L, C) before the linear score."""
    batch, length, channels = tokens.shape
    guide = guide_tokens.contiguous().view(-1, channels, *guide_size)
    resized = F.interpolate(guide, size=size, mode="bilinear", align_corners=False).reshape(batch, length, channels)
    return tokens * torch.sigmoid(temperature * proj(resized))


def test_official_token_recalibration_reproduces_the_released_computation():
    torch.manual_seed(0)
    trc = EcoTokenRecalibration(feature_size=32, temperature=0.1, layout="official")
    torch.nn.init.normal_(trc.proj.weight, std=2.0)
    maps = [torch.randn(2, 32, 3, 4), torch.randn(2, 32, 6, 8), torch.randn(2, 32, 12, 16)]
    tokens = [m.flatten(2).transpose(1, 2) for m in maps]  # (B, L, C) as the encoder holds them
    with torch.no_grad():
        out = trc(maps)
        for level in range(2):
            expected = _released_trc(tokens[level], tokens[2], maps[level].shape[-2:], (12, 16), trc.proj, 0.1)
            torch.testing.assert_close(out[level].flatten(2).transpose(1, 2), expected, rtol=0, atol=1e-6)
        standard = EcoTokenRecalibration(feature_size=32, temperature=0.1)
        standard.load_state_dict(trc.state_dict())
        assert not torch.allclose(standard(maps)[0], out[0])  # the two layouts are different computations
    assert torch.equal(out[2], maps[2])


def test_converted_stock_checkpoint_equals_transformers_mask2former(tmp_path):
    params = replace(tiny(SWIN_T_COCO["mask2former_swint_coco"]), points=4)  # transformers fixes 4 points
    _, model = _convert(tmp_path, params, "stock")
    data = {k: v for k, v in model.config.to_dict().items() if k in Mask2FormerConfig.__dataclass_fields__
            or k in ("id2label", "label2id")}
    data.pop("model_type", None)
    stock = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**data)).eval()
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(".gate." in k for k in unexpected)
    pixel_values = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, got = stock(pixel_values=pixel_values), model(pixel_values=pixel_values)
    assert got.encoder_layers_used.tolist() == [6, 6]
    for name in ("class_queries_logits", "masks_queries_logits"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-4, msg=name)
