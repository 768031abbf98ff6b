"""Pixel decoder and pixel-level module of EcoMask2Former: the stock ones with a gate and an early-exit encoder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import nn
from transformers.backbone_utils import load_backbone
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelLevelModule,
    Mask2FormerPixelLevelModuleOutput,
)

from .ecom2f_depth import gate_depths
from .ecom2f_encoder import EcoMask2FormerPixelDecoderEncoder, run_early_exit_layers
from .ecom2f_early_exit import build_exit_gate, build_token_recalibration
from .ecom2f_outputs import EcoMask2FormerPixelDecoderOutput
from .ecom2f_token_scaling import light_pixel_embedding


@dataclass
class EcoMask2FormerEncoderTokens:
    """The flattened inputs of the deformable encoder, levels coarse to fine in the token axis.

    Attributes:
        inputs_embeds: `(batch, tokens, feature_size)`.
        attention_mask: `(batch, tokens)`, `True` on padding.
        position_embeddings: position + level embeddings `(batch, tokens, feature_size)`.
        spatial_shapes_list: `(height, width)` of each level.
        level_start_index: `(levels,)` first token of each level.
        valid_ratios: `(batch, levels, 2)` unpadded share of each level.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_embeddings: torch.Tensor
    spatial_shapes_list: list[tuple[int, int]]
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor

    def encoder_inputs(self) -> dict:
        """Keyword arguments of `EcoMask2FormerPixelDecoderEncoder.forward`/`forward_exits`."""
        return dict(self.__dict__)


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
        self.gate = build_exit_gate(config, in_channels=config.feature_size)
        self.token_recalibration = build_token_recalibration(config, feature_size=config.feature_size)
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
        gate_beta: float | None = None,
    ) -> EcoMask2FormerPixelDecoderOutput:
        """Encode the backbone maps at the given depth(s).

        Args:
            features: backbone maps at strides 4, 8, 16, 32, each `(batch, channels, h, w)`.
            pixel_mask: `(batch, height, width)`, 1 on real pixels and 0 on padding. Padding is masked out of the
                deformable attention (values and valid ratios, as in Deformable DETR) and of the gate's pooling.
                `None` or all ones gives exactly the stock Mask2Former computation (which ignores the mask).
            depths: validated depth(s) (an `int` or a LongTensor `(batch,)`), or `None` to let the gate decide.
            run_gate: compute the gate logits even when `depths` is given (gate training, analysis).
            gate_beta: the trade-off of a `"utility"` gate for this call (`config.gate_beta` when `None`).
        """
        config = self.config
        inputs_embeds, padding_masks, gate_logits = self.embed_levels(
            features, pixel_mask=pixel_mask, run_gate=depths is None or run_gate
        )
        if depths is None:
            depths = gate_depths(gate_logits, config=config, gate_beta=gate_beta)
        tokens = self.flatten_levels(inputs_embeds, padding_masks)
        encoded = self.encoder(**tokens.encoder_inputs(), depths=depths, max_depth=config.max_exit)
        return self.assemble(features, encoded, tokens, depths=depths, gate_logits=gate_logits)

    def forward_exits(
        self,
        features: list[torch.Tensor],
        *,
        exits: list[int],
        run_gate: bool = False,
        pixel_mask: torch.Tensor | None = None,
    ) -> Iterator[tuple[int, EcoMask2FormerPixelDecoderOutput]]:
        """Every exit in `exits` from one pass: the input projections and encoder layers `1..k` run once and are
        shared, and each exit gets its own FPN and mask projection. Yields `(depth, output)` in increasing depth; each
        output equals `forward(features, depths=depth)` (the same operations on the same batch).
        """
        exits = sorted({int(k) for k in exits})
        bad = [k for k in exits if not 1 <= k <= len(self.encoder.layers)]
        if not exits or bad:
            raise ValueError(f"exits must be a non-empty list of depths in [1, {len(self.encoder.layers)}], got {exits}")
        inputs_embeds, padding_masks, gate_logits = self.embed_levels(features, pixel_mask=pixel_mask, run_gate=run_gate)
        tokens = self.flatten_levels(inputs_embeds, padding_masks)
        done = 0
        for depth in exits:
            tokens = replace(tokens, inputs_embeds=self.encode_layers(tokens, first=done, last=depth))
            done = depth
            yield depth, self.assemble(features, tokens.inputs_embeds, tokens, depths=depth, gate_logits=gate_logits)

    def embed_levels(
        self, features: list[torch.Tensor], *, pixel_mask: torch.Tensor | None, run_gate: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """Stage 1: input projections of the encoder levels (coarse to fine: 1/32, 1/16, 1/8), their padding masks,
        the gate's logits (`None` unless `run_gate`) and, with PRO-SCALE TRC, the re-calibrated levels.

        Returns:
            `(inputs_embeds, padding_masks, gate_logits)`: maps `(batch, C, h_l, w_l)`, masks `(batch, h_l, w_l)`
            (`True` on padding), logits `(batch, num_exits)` or `None`.
        """
        levels = self.num_feature_levels
        inputs_embeds = [self.input_projections[i](x) for i, x in enumerate(features[::-1][:levels])]
        padding_masks = self._padding_masks(pixel_mask, inputs_embeds)  # per level (B, h, w), True = padding
        gate_logits = None
        if run_gate:
            level = self.config.gate_input_level
            gate_logits = self.gate(inputs_embeds[level], padding_masks[level])  # (B, num_exits)
        if self.token_recalibration is not None:
            inputs_embeds = self.token_recalibration(inputs_embeds)
        return inputs_embeds, padding_masks, gate_logits

    def flatten_levels(
        self, inputs_embeds: list[torch.Tensor], padding_masks: list[torch.Tensor]
    ) -> EcoMask2FormerEncoderTokens:
        """Stage 2: the flattened encoder inputs (tokens, position + level embeddings, padding, level geometry)."""
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
        return EcoMask2FormerEncoderTokens(
            inputs_embeds=flat_embeds,
            attention_mask=masks_flat,
            position_embeddings=position_embeddings,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
        )

    def encode_layers(self, tokens: EcoMask2FormerEncoderTokens, *, first: int, last: int) -> torch.Tensor:
        """Stage 2b: encoder layers `[first, last)` on every image of `tokens.inputs_embeds` (the early-exit loop at
        one depth for the batch). `forward_exits` chains it from exit to exit; the ONNX export cuts its encoder
        segments with it. Returns the tokens `(batch, tokens, C)`.
        """
        reference_points = self.encoder.get_reference_points(
            tokens.spatial_shapes_list, tokens.valid_ratios, device=tokens.inputs_embeds.device
        )
        return run_early_exit_layers(
            self.encoder.layers[first:last],
            level_spans=[(0, n) for n in self.encoder.levels_per_layer[first:last]],  # coarse levels come first
            hidden_states=tokens.inputs_embeds,
            attention_mask=tokens.attention_mask,
            position_embeddings=tokens.position_embeddings,
            reference_points=reference_points,
            spatial_shapes_list=tokens.spatial_shapes_list,
            level_start_index=tokens.level_start_index,
            depths=last - first,
            max_depth=last - first,
        )

    def assemble(
        self,
        features: list[torch.Tensor],
        encoded: torch.Tensor,
        tokens: EcoMask2FormerEncoderTokens,
        *,
        depths: int | torch.Tensor | None,
        gate_logits: torch.Tensor | None,
    ) -> EcoMask2FormerPixelDecoderOutput:
        """Stage 3: encoded tokens back to maps, the extra FPN levels (1/4) and the mask projection, as stock.

        `depths` only fills `encoder_layers_used` (`None` leaves it empty, as the exported tail does).
        """
        batch_size = encoded.shape[0]
        spatial_shapes_list = tokens.spatial_shapes_list
        # Split back into maps with Python sizes (no tensor iteration, compile friendly).
        split_sizes = [h * w for h, w in spatial_shapes_list]
        outputs = [
            level.transpose(1, 2).reshape(batch_size, -1, h, w)  # (B, tokens_l, C) -> (B, C, h, w)
            for level, (h, w) in zip(torch.split(encoded, split_sizes, dim=1), spatial_shapes_list)
        ]
        multi_scale_features = tuple(outputs)

        # Extra FPN levels (1/4 for the default strides), exactly as stock Mask2Former.
        for idx, feature in enumerate(features[: self.num_fpn_levels][::-1]):
            lateral = self.lateral_convolutions[idx](feature)
            upsampled = nn.functional.interpolate(  # contiguous input: torch copies a channels-last-strided output
                outputs[-1].contiguous(), size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            outputs.append(self.output_convolutions[idx](lateral + upsampled))

        if isinstance(depths, int):
            depths = torch.full((batch_size,), depths, dtype=torch.long, device=encoded.device)
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
        gate_beta: float | None = None,
    ) -> tuple[Mask2FormerPixelLevelModuleOutput, EcoMask2FormerPixelDecoderOutput]:
        backbone_features = self.encoder(pixel_values).feature_maps
        decoder_output = self.decoder(
            backbone_features, depths=depths, run_gate=run_gate, pixel_mask=pixel_mask, gate_beta=gate_beta
        )
        return self._stock_output(backbone_features, decoder_output, output_hidden_states), decoder_output

    def forward_exits(
        self,
        pixel_values: torch.Tensor,
        *,
        exits: list[int],
        run_gate: bool = False,
        pixel_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Iterator[tuple[int, Mask2FormerPixelLevelModuleOutput, EcoMask2FormerPixelDecoderOutput]]:
        """The backbone once, then `EcoMask2FormerPixelDecoder.forward_exits`: yields `(depth, stock, decoder)`."""
        backbone_features = self.encoder(pixel_values).feature_maps
        for depth, decoder_output in self.decoder.forward_exits(
            backbone_features, exits=exits, run_gate=run_gate, pixel_mask=pixel_mask
        ):
            yield depth, self._stock_output(backbone_features, decoder_output, output_hidden_states), decoder_output

    @staticmethod
    def _stock_output(backbone_features, decoder_output, output_hidden_states: bool) -> Mask2FormerPixelLevelModuleOutput:
        return Mask2FormerPixelLevelModuleOutput(
            encoder_last_hidden_state=backbone_features[-1],
            encoder_hidden_states=tuple(backbone_features) if output_hidden_states else None,
            decoder_last_hidden_state=decoder_output.mask_features,
            decoder_hidden_states=decoder_output.multi_scale_features,
        )
