"""EcoDeformableDetr: Deformable DETR whose deformable encoder exits early, per image (ECO-M2F, arXiv 2404.15244),
and can scale its token length progressively (PRO-SCALE, arXiv 2404.14657).

The backbone, input projections, position embeddings, decoder and heads are the stock transformers Deformable DETR
modules (same names, same state-dict keys); only the encoder layers' forward, a tiny gate and the optional TRC are
ecom2f's. Every stock Deformable DETR checkpoint (single stage) loads unchanged and, at full encoder depth without
token scaling, gives the stock outputs.

Supported: the default single-stage Deformable DETR, with or without `with_box_refine`, any backbone and number of
feature levels, sine or learned position embeddings. Not supported: `two_stage=True` (the config raises a
`ValueError`), `encoder_outputs=` (raises), and the encoder's `hidden_states` / `attentions` outputs (always `None`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrForObjectDetection,
    DeformableDetrMLPPredictionHead,
    DeformableDetrModel,
    DeformableDetrPreTrainedModel,
    inverse_sigmoid,
)
from transformers.utils.generic import can_return_tuple

from configuration.configuration_eco_deformable_detr import EcoDeformableDetrConfig

from .ecom2f_depth import gate_depths
from .ecom2f_detr_encoder import EcoDeformableDetrEncoder
from .ecom2f_detr_outputs import EcoDeformableDetrModelOutput, EcoDeformableDetrObjectDetectionOutput
from .ecom2f_early_exit import EcoEarlyExitMixin, build_exit_gate, build_token_recalibration, carry_fields
from .ecom2f_input_checks import check_pixel_values
from .ecom2f_size_groups import merge_group_tensors, run_size_groups, size_groups


# transformers 5 renames some Deformable DETR keys between the module tree and the saved files (legacy names such as
# `backbone.conv_encoder.*` and `layers.N.fc1` on disk). Registering the stock renames for our model type makes stock
# checkpoints load unchanged and makes our `save_pretrained` write the same keys as the stock model.
register_checkpoint_conversion_mapping(
    EcoDeformableDetrConfig.model_type, get_checkpoint_conversion_mapping("deformable_detr"), overwrite=True
)


class EcoDeformableDetrPreTrainedModel(EcoEarlyExitMixin, DeformableDetrPreTrainedModel):
    config_class = EcoDeformableDetrConfig
    config: EcoDeformableDetrConfig
    exit_gate_path = "gate"


class EcoDeformableDetrModel(EcoDeformableDetrPreTrainedModel, DeformableDetrModel):
    """Deformable DETR backbone + early-exit encoder + stock decoder, with a per-image encoder depth."""

    def __init__(self, config: EcoDeformableDetrConfig) -> None:
        DeformableDetrModel.__init__(self, config)  # the stock modules and keys
        # Same layer names as the stock encoder built above, with a depth- and stage-aware forward.
        self.encoder = EcoDeformableDetrEncoder(config)
        self.gate = build_exit_gate(config, in_channels=config.d_model)
        self.token_recalibration = build_token_recalibration(config, feature_size=config.d_model)
        self.post_init()

    def _multi_scale_inputs(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Input-projected levels `(batch, d_model, h_l, w_l)`, their masks `(batch, h_l, w_l)` (`True` = real
        pixel) and sine/learned position embeddings, fine to coarse, exactly as the stock model computes them."""
        dtype = pixel_values.dtype
        features = self.backbone(pixel_values, pixel_mask)  # [(map, mask)] per backbone level
        sources, masks = [], []
        for level, (feature_map, mask) in enumerate(features):
            sources.append(self.input_proj[level](feature_map))
            masks.append(mask)
        for level in range(len(features), self.config.num_feature_levels):  # extra levels: stride-2 3x3 convs
            source = self.input_proj[level](features[-1][0] if level == len(features) else sources[-1])
            mask = nn.functional.interpolate(pixel_mask[None].to(dtype), size=source.shape[-2:]).to(torch.bool)[0]
            sources.append(source)
            masks.append(mask)
        positions = [
            self.position_embedding(shape=source.shape, device=source.device, dtype=dtype, mask=mask).to(source.dtype)
            for source, mask in zip(sources, masks)
        ]
        return sources, masks, positions

    def compute_gate_logits(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Gate scores `(batch, num_exits)` from the backbone and input projections only (no encoder or decoder); a
        mixed-size batch runs per size group (`ecom2f_size_groups`)."""
        groups = size_groups(pixel_mask, pixel_values)
        if groups is not None:
            parts = [self.compute_gate_logits(group.crop(pixel_values), group.crop(pixel_mask)) for group in groups]
            return merge_group_tensors(parts, groups, batch_size=pixel_values.shape[0])
        if pixel_mask is None:
            pixel_mask = pixel_values.new_ones(pixel_values.shape[0], *pixel_values.shape[2:], dtype=torch.long)
        sources, masks, _ = self._multi_scale_inputs(pixel_values, pixel_mask)
        return self._gate_logits(sources, masks)

    def _gate_logits(self, sources: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        """The gate on `config.gate_input_level` (coarse to fine) of the input-projected levels (stock fine-to-coarse
        order, masks `True` on real pixels): `(batch, num_exits)`."""
        level = self.config.num_feature_levels - 1 - self.config.gate_input_level  # coarse-to-fine -> stock index
        return self.gate(sources[level], ~masks[level])

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.LongTensor | None = None,
        num_encoder_layers: int | torch.Tensor | None = None,
        output_gate_logits: bool = False,
        gate_beta: float | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> EcoDeformableDetrModelOutput:
        r"""
        pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            1 on real pixels, 0 on padding at the bottom/right. With padding, the images run per size group, each
            cropped to its own size, so every image gets the logits, boxes, gate logits and depth it gets alone
            (`ecom2f_size_groups`); `encoder_last_hidden_state` then holds each image's own tokens followed by zeros.
            All ones (or `None`) is one pass over the batch, as the stock model.
        num_encoder_layers (`int` or `torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Encoder depth, one for the batch or one per image, each in `config.exit_layers`. `None`: the gate
            decides per image if `config.gate_trained`, else the deepest exit.
        output_gate_logits (`bool`, *optional*, defaults to `False`):
            Run the gate even when the depth is given, and return its logits.
        gate_beta (`float`, *optional*):
            Trade-off of a `"utility"` gate for this call (`config.gate_beta` when `None`).

        `decoder_attention_mask`, `inputs_embeds` and `decoder_inputs_embeds` are accepted and unused, as in the
        stock model; `encoder_outputs` is not supported. Other keyword arguments (e.g. `output_attentions`) reach
        the stock decoder.
        """
        if encoder_outputs is not None:
            raise ValueError("EcoDeformableDetrModel computes its own encoder outputs; encoder_outputs is not supported")
        config = self.config
        check_pixel_values(pixel_values, config=config, input_projections=self.input_proj,
                           extra_levels=config.num_feature_levels - len(self.backbone.intermediate_channel_sizes))
        batch_size, _, height, width = pixel_values.shape
        depths = self.resolve_depths(num_encoder_layers, batch_size)
        groups = size_groups(pixel_mask, pixel_values)
        if groups is not None:  # a mixed-size batch: each size group as its images run alone
            return run_size_groups(
                groups,
                lambda group: self.forward(
                    group.crop(pixel_values), pixel_mask=group.crop(pixel_mask), num_encoder_layers=group.take(depths),
                    output_gate_logits=output_gate_logits, gate_beta=gate_beta, **kwargs,
                ),
                batch_size=batch_size,
            )
        if pixel_mask is None:
            pixel_mask = torch.ones((batch_size, height, width), dtype=torch.long, device=pixel_values.device)
        sources, masks, positions = self._multi_scale_inputs(pixel_values, pixel_mask)

        gate_logits = None
        if depths is None or output_gate_logits:
            gate_logits = self._gate_logits(sources, masks)  # (B, num_exits)
        if depths is None:
            depths = gate_depths(gate_logits, config=config, gate_beta=gate_beta)
        if self.token_recalibration is not None:
            sources = self.token_recalibration(sources[::-1])[::-1]  # TRC takes levels coarse to fine

        spatial_shapes_list = [(source.shape[2], source.shape[3]) for source in sources]
        source_flatten = torch.cat([source.flatten(2).transpose(1, 2) for source in sources], 1)  # (B, tokens, C)
        mask_flatten = torch.cat([mask.flatten(1) for mask in masks], 1)  # (B, tokens), True = real
        position_flatten = torch.cat(
            [pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1) for level, pos in enumerate(positions)],
            1,
        )
        spatial_shapes = torch.as_tensor(spatial_shapes_list, dtype=torch.long, device=source_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m, dtype=source_flatten.dtype) for m in masks], 1)

        encoded = self.encoder(
            inputs_embeds=source_flatten,
            attention_mask=~mask_flatten,
            position_embeddings=position_flatten,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            depths=depths,
            max_depth=config.max_exit,
        )

        # Single-stage decoder inputs, as the stock model: learned queries and their reference points.
        query_embed, target = torch.split(self.query_position_embeddings.weight, config.d_model, dim=1)
        query_embed = query_embed.unsqueeze(0).expand(batch_size, -1, -1)
        target = target.unsqueeze(0).expand(batch_size, -1, -1)
        reference_points = self.reference_points(query_embed).sigmoid()  # (B, queries, 2)
        decoder_outputs = self.decoder(
            inputs_embeds=target,
            object_queries_position_embeddings=query_embed,
            encoder_hidden_states=encoded,
            encoder_attention_mask=mask_flatten,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            **kwargs,
        )
        if isinstance(depths, int):
            depths = torch.full((batch_size,), depths, dtype=torch.long, device=encoded.device)
        return EcoDeformableDetrModelOutput(
            init_reference_points=reference_points,
            last_hidden_state=decoder_outputs.last_hidden_state,
            intermediate_hidden_states=decoder_outputs.intermediate_hidden_states,
            intermediate_reference_points=decoder_outputs.intermediate_reference_points,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoded,
            encoder_layers_used=depths,
            gate_logits=gate_logits,
        )


class EcoDeformableDetrForObjectDetection(EcoDeformableDetrPreTrainedModel, DeformableDetrForObjectDetection):
    """Deformable DETR object detector with input-adaptive encoder depth and optional PRO-SCALE token stages.

    Outputs are the stock ones (so the stock image processor's `post_process_object_detection` works) plus
    `encoder_layers_used` `(batch,)`, `gate_logits` `(batch, num_exits)` and `gate_loss`.
    """

    def __init__(self, config: EcoDeformableDetrConfig) -> None:
        EcoDeformableDetrPreTrainedModel.__init__(self, config)
        self.model = EcoDeformableDetrModel(config)
        # Stock heads, one per decoder layer (tied unless box refinement makes them per layer).
        self.class_embed = nn.ModuleList(
            [nn.Linear(config.d_model, config.num_labels) for _ in range(config.decoder_layers)]
        )
        self.bbox_embed = nn.ModuleList(
            [
                DeformableDetrMLPPredictionHead(input_dim=config.d_model, hidden_dim=config.d_model, output_dim=4, num_layers=3)
                for _ in range(config.decoder_layers)
            ]
        )
        # Stock ties heads 1..L-1 to head 0; with a single decoder layer there is nothing to tie (stock
        # transformers raises in that case, so the tie is dropped here).
        self._tied_weights_keys = (
            dict(DeformableDetrForObjectDetection._tied_weights_keys) if config.decoder_layers > 1 else {}
        )
        if config.with_box_refine:
            self.model.decoder.bbox_embed = copy.deepcopy(self.bbox_embed)
            self._tied_weights_keys["bbox_embed"] = "model.decoder.bbox_embed"
        self.post_init()

    def _predict(self, outputs: EcoDeformableDetrModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Per decoder layer class logits `(layers, B, queries, num_labels)` and boxes `(layers, B, queries, 4)`."""
        hidden_states = outputs.intermediate_hidden_states  # (B, layers, queries, C)
        references = [outputs.init_reference_points] + list(outputs.intermediate_reference_points.unbind(1))[:-1]
        classes, boxes = [], []
        for level in range(hidden_states.shape[1]):
            reference = inverse_sigmoid(references[level])
            delta = self.bbox_embed[level](hidden_states[:, level])
            if reference.shape[-1] == 4:  # box refinement: references are boxes
                coord_logits = delta + reference
            else:  # references are points: they shift the box centre
                coord_logits = torch.cat([delta[..., :2] + reference, delta[..., 2:]], dim=-1)
            classes.append(self.class_embed[level](hidden_states[:, level]))
            boxes.append(coord_logits.sigmoid())
        return torch.stack(classes), torch.stack(boxes)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.LongTensor | None = None,
        num_encoder_layers: int | torch.Tensor | None = None,
        exit_labels: torch.Tensor | None = None,
        output_gate_logits: bool = False,
        gate_beta: float | None = None,
        labels: list[dict] | None = None,
        **kwargs,
    ) -> EcoDeformableDetrObjectDetectionOutput:
        r"""
        exit_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Ideal depth of each image (ECO-M2F step 2); adds the gate's cross-entropy to the loss (`gate_loss`).
        labels (`list[dict]`, *optional*):
            Per image `{"class_labels": (targets,), "boxes": (targets, 4)}` (normalised cxcywh), as the stock model.
            `loss` is then the stock Deformable DETR loss times the step-1 depth weight (`exit_loss_weighting`).

        `pixel_mask`, `num_encoder_layers`, `output_gate_logits`, `gate_beta` and every other keyword argument (the
        stock ones: `decoder_attention_mask`, `encoder_outputs`, `inputs_embeds`, `decoder_inputs_embeds`,
        `output_attentions`, ...) are those of [`EcoDeformableDetrModel.forward`], which receives them.
        """
        outputs = self.model(
            pixel_values,
            pixel_mask=pixel_mask,
            num_encoder_layers=num_encoder_layers,
            output_gate_logits=output_gate_logits or exit_labels is not None,
            gate_beta=gate_beta,
            **kwargs,
        )
        outputs_class, outputs_coord = self._predict(outputs)
        logits, pred_boxes = outputs_class[-1], outputs_coord[-1]

        task_loss, loss_dict, auxiliary_outputs = None, None, None
        if labels is not None:
            task_loss, loss_dict, auxiliary_outputs = self.loss_function(
                logits, labels, self.device, pred_boxes, self.config, outputs_class, outputs_coord
            )
        loss, gate_loss = self.combine_exit_losses(
            task_loss, num_encoder_layers=num_encoder_layers, outputs=outputs, exit_labels=exit_labels
        )
        return carry_fields(
            outputs,
            EcoDeformableDetrObjectDetectionOutput,
            loss=loss,
            loss_dict=loss_dict,
            logits=logits,
            pred_boxes=pred_boxes,
            auxiliary_outputs=auxiliary_outputs,
            gate_loss=gate_loss,
        )


# The object-detection pipeline checks a model's class name against the task mappings' name tables (model type ->
# class name), which `AutoModelForObjectDetection.register` does not fill; listed there, this class loads in
# `pipeline(...)` without the "is not supported" error, also as Hub custom code (this file is exported).
MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES.setdefault(
    EcoDeformableDetrConfig.model_type, EcoDeformableDetrForObjectDetection.__name__
)


__all__ = [
    "EcoDeformableDetrForObjectDetection",
    "EcoDeformableDetrModel",
    "EcoDeformableDetrPreTrainedModel",
]
