"""Pixel decoder and pixel-level module of EcoMask2Former: the stock ones with a gate and an early-exit encoder."""

from __future__ import annotations

import torch
from torch import nn
from transformers.backbone_utils import load_backbone
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelLevelModule,
    Mask2FormerPixelLevelModuleOutput,
)

from .ecom2f_depth import depths_from_gate_logits
from .ecom2f_encoder import EcoMask2FormerPixelDecoderEncoder
from .ecom2f_gate import EcoMask2FormerGate
from .ecom2f_outputs import EcoMask2FormerPixelDecoderOutput
from .ecom2f_token_scaling import EcoMask2FormerTokenRecalibration, light_pixel_embedding


class EcoMask2FormerPixelDecoder(Mask2FormerPixelDecoder):
    """Stock Mask2Former pixel decoder (same modules, same keys) plus `gate`, with an encoder that can exit early.

    PRO-SCALE options (config): token-length stages in the encoder, `token_recalibration` (TRC) on the levels before
    they enter, and `light_pixel_embedding` (LPE) in place of the FPN output convolutions.

    Args:
        config: an `EcoMask2FormerConfig`.
        feature_channels: channels of the backbone maps at strides 4, 8, 16, 32.
    """

    def __init__(self, config, feature_channels: list[int]) -> None:
        super().__init__(config, feature_channels)
        # Same layers and keys as the stock encoder built above, with a depth-aware forward.
        self.encoder = EcoMask2FormerPixelDecoderEncoder(config)
        self.gate = EcoMask2FormerGate(
            in_channels=config.feature_size, num_exits=config.num_exits, hidden_size=config.gate_hidden_size
        )
        self.token_recalibration = (
            EcoMask2FormerTokenRecalibration(
                feature_size=config.feature_size, temperature=config.token_recalibration_temperature
            )
            if config.token_recalibration
            else None
        )
        if config.light_pixel_embedding:
            lpe = [light_pixel_embedding(feature_size=config.feature_size) for _ in range(self.num_fpn_levels)]
            for idx, module in enumerate(lpe):
                self.add_module(f"layer_{idx + 1}", module)  # the stock name of the FPN output convolution
            self.output_convolutions = lpe[::-1]  # low to high resolution, as the stock list

    def forward(
        self,
        features: list[torch.Tensor],
        *,
        depths: int | torch.Tensor | None,
        run_gate: bool = False,
        pixel_mask: torch.Tensor | None = None,
    ) -> EcoMask2FormerPixelDecoderOutput:
        """Encode the backbone maps at the given depth(s).

        Args:
            features: backbone maps at strides 4, 8, 16, 32, each `(batch, channels, h, w)`.
            pixel_mask: `(batch, height, width)`, 1 on real pixels and 0 on padding. Padding is masked out of the
                deformable attention (values and valid ratios, as in Deformable DETR) and of the gate's pooling.
                `None` or all ones gives exactly the stock Mask2Former computation (which ignores the mask).
            depths: validated depth(s) (an `int` or a LongTensor `(batch,)`), or `None` to let the gate decide.
            run_gate: compute the gate logits even when `depths` is given (gate training, analysis).
        """
        config = self.config
        levels = self.num_feature_levels
        # Coarse to fine: 1/32, 1/16, 1/8.
        inputs_embeds = [self.input_projections[i](x) for i, x in enumerate(features[::-1][:levels])]
        padding_masks = self._padding_masks(pixel_mask, inputs_embeds)  # per level (B, h, w), True = padding

        gate_logits = None
        if depths is None or run_gate:
            level = config.gate_input_level
            gate_logits = self.gate(inputs_embeds[level], padding_masks[level])  # (B, num_exits)
        if depths is None:
            depths = depths_from_gate_logits(gate_logits, exit_layers=config.exit_layers)
        if self.token_recalibration is not None:
            inputs_embeds = self.token_recalibration(inputs_embeds)

        batch_size = inputs_embeds[0].shape[0]
        spatial_shapes_list = [(x.shape[2], x.shape[3]) for x in inputs_embeds]
        flat_embeds = torch.cat([x.flatten(2).transpose(1, 2) for x in inputs_embeds], 1)  # (B, tokens, C)
        position_embeddings = torch.cat(
            [
                self.position_embedding(x.shape, x.device, x.dtype).flatten(2).transpose(1, 2)
                + self.level_embed[i].view(1, 1, -1)
                for i, x in enumerate(inputs_embeds)
            ],
            1,
        )  # (B, tokens, C)
        masks_flat = torch.cat([mask.flatten(1) for mask in padding_masks], 1)  # (B, tokens)
        spatial_shapes = torch.as_tensor(spatial_shapes_list, dtype=torch.long, device=flat_embeds.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m, dtype=flat_embeds.dtype) for m in padding_masks], 1)

        encoded = self.encoder(
            inputs_embeds=flat_embeds,
            attention_mask=masks_flat,
            position_embeddings=position_embeddings,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            depths=depths,
            max_depth=config.max_exit,
        )

        # Split back into maps with Python sizes (no tensor iteration, compile friendly).
        split_sizes = [h * w for h, w in spatial_shapes_list]
        outputs = [
            tokens.transpose(1, 2).reshape(batch_size, -1, h, w)  # (B, tokens_l, C) -> (B, C, h, w)
            for tokens, (h, w) in zip(torch.split(encoded, split_sizes, dim=1), spatial_shapes_list)
        ]
        multi_scale_features = tuple(outputs)

        # Extra FPN levels (1/4 for the default strides), exactly as stock Mask2Former.
        for idx, feature in enumerate(features[: self.num_fpn_levels][::-1]):
            lateral = self.lateral_convolutions[idx](feature)
            upsampled = nn.functional.interpolate(
                outputs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            outputs.append(self.output_convolutions[idx](lateral + upsampled))

        if isinstance(depths, int):
            depths = torch.full((batch_size,), depths, dtype=torch.long, device=flat_embeds.device)
        return EcoMask2FormerPixelDecoderOutput(
            mask_features=self.mask_projection(outputs[-1]),
            multi_scale_features=multi_scale_features,
            encoder_layers_used=depths,
            gate_logits=gate_logits,
        )


    @staticmethod
    def _padding_masks(pixel_mask: torch.Tensor | None, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level `(batch, h, w)` bool masks, `True` on padding (all `False` without a pixel mask)."""
        if pixel_mask is None:
            return [torch.zeros((x.shape[0], x.shape[2], x.shape[3]), device=x.device, dtype=torch.bool) for x in maps]
        mask = pixel_mask[:, None].to(maps[0].dtype)  # (B, 1, H, W)
        return [
            nn.functional.interpolate(mask, size=x.shape[-2:], mode="nearest")[:, 0] < 0.5  # (B, h, w)
            for x in maps
        ]


class EcoMask2FormerPixelLevelModule(Mask2FormerPixelLevelModule):
    """Backbone + [`EcoMask2FormerPixelDecoder`]; same submodule names as the stock pixel-level module."""

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.encoder = load_backbone(config)
        self.decoder = EcoMask2FormerPixelDecoder(config, feature_channels=self.encoder.channels)

    def forward(
        self,
        pixel_values: torch.Tensor,
        *,
        depths: int | torch.Tensor | None,
        run_gate: bool = False,
        pixel_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[Mask2FormerPixelLevelModuleOutput, EcoMask2FormerPixelDecoderOutput]:
        backbone_features = self.encoder(pixel_values).feature_maps
        decoder_output = self.decoder(backbone_features, depths=depths, run_gate=run_gate, pixel_mask=pixel_mask)
        stock_output = Mask2FormerPixelLevelModuleOutput(
            encoder_last_hidden_state=backbone_features[-1],
            encoder_hidden_states=tuple(backbone_features) if output_hidden_states else None,
            decoder_last_hidden_state=decoder_output.mask_features,
            decoder_hidden_states=decoder_output.multi_scale_features,
        )
        return stock_output, decoder_output
