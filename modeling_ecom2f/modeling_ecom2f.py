"""EcoMask2Former: Mask2Former whose pixel-decoder encoder exits early, per image (ECO-M2F, arXiv 2404.15244).

The modules are the stock transformers Mask2Former modules (same names, same state-dict keys) plus a tiny gate, so
every stock Mask2Former checkpoint loads unchanged and, at full encoder depth, gives the stock outputs.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from transformers.models.auto.modeling_auto import MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerForUniversalSegmentation,
    Mask2FormerLoss,
    Mask2FormerModel,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
)

from configuration.configuration_ecom2f import EcoMask2FormerConfig

from .ecom2f_depth import validate_encoder_depths
from .ecom2f_early_exit import EcoEarlyExitMixin, carry_fields
from .ecom2f_fast_modules import use_fast_modules
from .ecom2f_input_checks import check_pixel_values
from .ecom2f_outputs import EcoMask2FormerForUniversalSegmentationOutput, EcoMask2FormerModelOutput
from .ecom2f_pixel_decoder import EcoMask2FormerPixelLevelModule
from .ecom2f_size_groups import (
    MASK_LOGIT_PADDING,
    merge_group_outputs,
    merge_group_tensors,
    run_size_groups,
    size_groups,
)

# How `merge_group_outputs` puts a mixed-size batch's per-group outputs back together: the transformer decoder's
# states are `(queries, batch, hidden)`, and mask logits outside an image are "no segment".
_GROUP_BATCH_DIMS = {"transformer_decoder_hidden_states": 1, "transformer_decoder_intermediate_states": 1}
_GROUP_FILLS = {"masks_queries_logits": MASK_LOGIT_PADDING}


class EcoMask2FormerPreTrainedModel(EcoEarlyExitMixin, Mask2FormerPreTrainedModel):
    config_class = EcoMask2FormerConfig
    config: EcoMask2FormerConfig
    exit_gate_path = "pixel_level_module.decoder.gate"


class EcoMask2FormerModel(EcoMask2FormerPreTrainedModel, Mask2FormerModel):
    """Mask2Former backbone + pixel decoder + transformer decoder with a per-image encoder depth."""

    def __init__(self, config: EcoMask2FormerConfig) -> None:
        EcoMask2FormerPreTrainedModel.__init__(self, config)
        self.pixel_level_module = EcoMask2FormerPixelLevelModule(config)
        self.transformer_module = Mask2FormerTransformerModule(in_features=config.feature_size, config=config)
        use_fast_modules(self)  # stand-ins: same parameters and outputs, less work (ecom2f_fast_modules)
        self.post_init()

    def compute_gate_logits(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Gate scores `(batch, num_exits)` from the backbone and input projection only (no encoder, no decoder);
        a mixed-size batch runs per size group, so each image gets its own logits (`ecom2f_size_groups`)."""
        decoder = self.pixel_level_module.decoder
        check_pixel_values(pixel_values, config=self.config, input_projections=decoder.input_projections)
        groups = size_groups(pixel_mask, pixel_values)
        if groups is not None:
            parts = [self.compute_gate_logits(group.crop(pixel_values), group.crop(pixel_mask)) for group in groups]
            return merge_group_tensors(parts, groups, batch_size=pixel_values.shape[0])
        features = self.pixel_level_module.encoder(pixel_values).feature_maps
        level = self.config.gate_input_level
        projected = decoder.input_projections[level](features[::-1][level])  # (B, C, h, w)
        return decoder.gate(projected, decoder._padding_masks(pixel_mask, [projected])[0])

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        num_encoder_layers: int | torch.Tensor | None = None,
        output_gate_logits: bool = False,
        gate_beta: float | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EcoMask2FormerModelOutput:
        r"""
        pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            1 on real pixels, 0 on padding at the bottom/right (as the image processor makes it). With padding, the
            images run per size group, each cropped to its own size, so every image gets the logits, gate logits and
            depth it gets alone; the outputs are padded back to the largest image (`image_sizes`, `mask_sizes` say
            where each image lies; `ecom2f_size_groups`). All ones (or `None`) is one pass over the batch, exactly
            stock Mask2Former.
        num_encoder_layers (`int` or `torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Deformable-encoder depth, one for the batch or one per image, each in `config.exit_layers`. `None`: the
            gate decides per image if `config.gate_trained`, else the deepest exit.
        output_gate_logits (`bool`, *optional*, defaults to `False`):
            Run the gate even when the depth is given, and return its logits.
        gate_beta (`float`, *optional*):
            Trade-off of a `"utility"` gate for this call (`config.gate_beta` when `None`); see `config.gate_objective`.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        check_pixel_values(
            pixel_values, config=self.config, input_projections=self.pixel_level_module.decoder.input_projections
        )
        depths = self.resolve_depths(num_encoder_layers, pixel_values.shape[0])
        groups = size_groups(pixel_mask, pixel_values)
        if groups is not None:  # a mixed-size batch: each size group as its images run alone
            output = run_size_groups(
                groups,
                lambda group: self.forward(
                    group.crop(pixel_values), pixel_mask=group.crop(pixel_mask), num_encoder_layers=group.take(depths),
                    output_gate_logits=output_gate_logits, gate_beta=gate_beta,
                    output_hidden_states=output_hidden_states, output_attentions=output_attentions, return_dict=True,
                ),
                batch_size=pixel_values.shape[0], batch_dims=_GROUP_BATCH_DIMS, fills=_GROUP_FILLS,
            )
            return output if return_dict else output.to_tuple()
        pixel_output, decoder_output = self.pixel_level_module(
            pixel_values,
            depths=depths,
            run_gate=output_gate_logits,
            pixel_mask=pixel_mask,
            output_hidden_states=output_hidden_states,
            gate_beta=gate_beta,
        )
        output = self._decode(pixel_values, pixel_output, decoder_output, output_hidden_states, output_attentions)
        return output if return_dict else output.to_tuple()

    def forward_exits(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        exits: list[int] | None = None,
        output_gate_logits: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Iterator[tuple[int, EcoMask2FormerModelOutput]]:
        """Every exit from one pass (ECO-M2F step 2, evaluation): the backbone, input projections and encoder layers
        `1..k` run once and are shared by all exits; the FPN and transformer decoder run once per exit.

        Args:
            exits: depths to return, each in `config.exit_layers` (default: all of them).

        Yields:
            `(depth, output)` in increasing depth, each output equal to `forward(..., num_encoder_layers=depth)`
            (a mixed-size batch runs per size group, as `forward` does).
        """
        exits = list(self.config.exit_layers if exits is None else exits)
        for depth in exits:
            validate_encoder_depths(depth, exit_layers=self.config.exit_layers, batch_size=pixel_values.shape[0])
        groups = size_groups(pixel_mask, pixel_values)
        if groups is not None:
            streams = [
                self.forward_exits(
                    group.crop(pixel_values), pixel_mask=group.crop(pixel_mask), exits=exits,
                    output_gate_logits=output_gate_logits, output_hidden_states=output_hidden_states,
                    output_attentions=output_attentions,
                )
                for group in groups
            ]
            for per_group in zip(*streams):  # every group yields the same depths in the same order
                yield per_group[0][0], merge_group_outputs(
                    [output for _, output in per_group], groups, batch_size=pixel_values.shape[0],
                    batch_dims=_GROUP_BATCH_DIMS, fills=_GROUP_FILLS,
                )
            return
        for depth, pixel_output, decoder_output in self.pixel_level_module.forward_exits(
            pixel_values, exits=exits, run_gate=output_gate_logits, pixel_mask=pixel_mask,
            output_hidden_states=output_hidden_states,
        ):
            yield depth, self._decode(pixel_values, pixel_output, decoder_output, output_hidden_states, output_attentions)

    def _decode(
        self, pixel_values, pixel_output, decoder_output, output_hidden_states, output_attentions
    ) -> EcoMask2FormerModelOutput:
        """The stock transformer decoder on the pixel decoder's outputs, packed with the depth decision and the
        image areas (here every image fills the batch)."""
        transformer_output = self.transformer_module(
            multi_scale_features=pixel_output.decoder_hidden_states,
            mask_features=pixel_output.decoder_last_hidden_state,
            output_hidden_states=True,
            output_attentions=output_attentions,
        )
        return EcoMask2FormerModelOutput(
            encoder_last_hidden_state=pixel_output.encoder_last_hidden_state,
            pixel_decoder_last_hidden_state=pixel_output.decoder_last_hidden_state,
            transformer_decoder_last_hidden_state=transformer_output.last_hidden_state,
            encoder_hidden_states=pixel_output.encoder_hidden_states if output_hidden_states else None,
            pixel_decoder_hidden_states=pixel_output.decoder_hidden_states if output_hidden_states else None,
            transformer_decoder_hidden_states=transformer_output.hidden_states if output_hidden_states else None,
            transformer_decoder_intermediate_states=transformer_output.intermediate_hidden_states,
            attentions=transformer_output.attentions,
            masks_queries_logits=transformer_output.masks_queries_logits,
            encoder_layers_used=decoder_output.encoder_layers_used,
            gate_logits=decoder_output.gate_logits,
            image_sizes=_sizes(pixel_values),
            mask_sizes=_sizes(transformer_output.masks_queries_logits[-1]),
        )


def _sizes(maps: torch.Tensor) -> torch.Tensor:
    """`(batch, 2)` LongTensor repeating the `(height, width)` of `(batch, ..., height, width)` maps."""
    size = torch.tensor(maps.shape[-2:], dtype=torch.long, device=maps.device)
    return size.repeat(maps.shape[0], 1)


class EcoMask2FormerForUniversalSegmentation(EcoMask2FormerPreTrainedModel, Mask2FormerForUniversalSegmentation):
    """Mask2Former for panoptic, instance and semantic segmentation with input-adaptive encoder depth.

    Outputs are the stock ones (so the stock image processor's `post_process_*` methods work) plus
    `encoder_layers_used` `(batch,)`, `gate_logits` `(batch, num_exits)` and, for batches of different sizes,
    `image_sizes` / `mask_sizes` `(batch, 2)`: each image's own area (see `EcoImageSizeOutputFields`).

    `push_to_hub` is the stock method (weights, config). To publish a repository that loads with
    `trust_remote_code=True` (custom code, `auto_map`, model card), use the project's Hub tooling, which this model
    code does not import: `hub.push.push_model(model=model, repo_id=...)` or the `ecom2f-push` command.
    """

    def __init__(self, config: EcoMask2FormerConfig) -> None:
        EcoMask2FormerPreTrainedModel.__init__(self, config)
        self.model = EcoMask2FormerModel(config)
        self.weight_dict: dict[str, float] = {
            "loss_cross_entropy": config.class_weight,
            "loss_mask": config.mask_weight,
            "loss_dice": config.dice_weight,
        }
        self.class_predictor = nn.Linear(config.hidden_dim, config.num_labels + 1)
        self.criterion = Mask2FormerLoss(config=config, weight_dict=self.weight_dict)
        use_fast_modules(self.class_predictor)  # the head (self.model installed its own stand-ins)
        self.post_init()

    def forward_exits(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        exits: list[int] | None = None,
        output_gate_logits: bool = False,
    ) -> Iterator[tuple[int, EcoMask2FormerForUniversalSegmentationOutput]]:
        """Every exit from one pass (ECO-M2F step 2 and evaluation): the backbone, input projections and encoder
        layers `1..k` run once and are shared; the FPN, transformer decoder and heads run once per exit.

        Args:
            exits: depths to return, each in `config.exit_layers` (default: all of them).

        Yields:
            `(depth, output)` in increasing depth; `output.class_queries_logits`, `masks_queries_logits`,
            `encoder_layers_used` (and `gate_logits` with `output_gate_logits`) equal those of
            `forward(pixel_values, pixel_mask=pixel_mask, num_encoder_layers=depth)` image by image.
        """
        for depth, outputs in self.model.forward_exits(
            pixel_values, pixel_mask=pixel_mask, exits=exits, output_gate_logits=output_gate_logits
        ):
            class_logits = self.class_predictor(outputs.transformer_decoder_intermediate_states[-1].transpose(0, 1))
            yield depth, carry_fields(
                outputs,
                EcoMask2FormerForUniversalSegmentationOutput,
                class_queries_logits=class_logits,  # (B, num_queries, num_labels + 1)
                masks_queries_logits=outputs.masks_queries_logits[-1],  # (B, num_queries, H/4, W/4)
            )

    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_labels: list[torch.Tensor] | None = None,
        class_labels: list[torch.Tensor] | None = None,
        pixel_mask: torch.Tensor | None = None,
        num_encoder_layers: int | torch.Tensor | None = None,
        exit_labels: torch.Tensor | None = None,
        output_gate_logits: bool = False,
        gate_beta: float | None = None,
        output_hidden_states: bool | None = None,
        output_auxiliary_logits: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EcoMask2FormerForUniversalSegmentationOutput:
        r"""
        mask_labels (`list[torch.Tensor]`, *optional*):
            Per image, binary masks `(num_targets, height, width)`.
        class_labels (`list[torch.LongTensor]`, *optional*):
            Per image, the class of each mask `(num_targets,)`.
        exit_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Ideal depth of each image (ECO-M2F step 2). Adds the gate's cross-entropy to the loss (`gate_loss`).

        `pixel_mask`, `num_encoder_layers`, `output_gate_logits` and `gate_beta` are those of
        [`EcoMask2FormerModel.forward`].

        With `mask_labels` and `class_labels`, `loss` is the stock Mask2Former loss times the step-1 depth weight
        (`config.exit_loss_weighting`: k at exit k for `"linear"`).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        outputs = self.model(
            pixel_values=pixel_values,
            pixel_mask=pixel_mask,
            num_encoder_layers=num_encoder_layers,
            output_gate_logits=output_gate_logits or exit_labels is not None,
            gate_beta=gate_beta,
            output_hidden_states=output_hidden_states or self.config.use_auxiliary_loss,
            output_attentions=output_attentions,
            return_dict=True,
        )
        class_queries_logits = tuple(
            self.class_predictor(state.transpose(0, 1)) for state in outputs.transformer_decoder_intermediate_states
        )
        masks_queries_logits = outputs.masks_queries_logits
        auxiliary_logits = self.get_auxiliary_logits(class_queries_logits, masks_queries_logits)

        task_loss = None
        if mask_labels is not None and class_labels is not None:
            loss_dict = self.get_loss_dict(
                masks_queries_logits=masks_queries_logits[-1],
                class_queries_logits=class_queries_logits[-1],
                mask_labels=mask_labels,
                class_labels=class_labels,
                auxiliary_predictions=auxiliary_logits,
            )
            task_loss = self.get_loss(loss_dict)
        loss, gate_loss = self.combine_exit_losses(
            task_loss, num_encoder_layers=num_encoder_layers, outputs=outputs, exit_labels=exit_labels
        )

        output_auxiliary_logits = (
            self.config.output_auxiliary_logits if output_auxiliary_logits is None else output_auxiliary_logits
        )
        # The base model ran with hidden states whenever the auxiliary loss needs them; return them only if asked.
        hidden_states = ("encoder_hidden_states", "pixel_decoder_hidden_states", "transformer_decoder_hidden_states")
        output = carry_fields(
            outputs,
            EcoMask2FormerForUniversalSegmentationOutput,
            loss=loss,
            class_queries_logits=class_queries_logits[-1],
            masks_queries_logits=masks_queries_logits[-1],
            auxiliary_logits=auxiliary_logits if output_auxiliary_logits else None,
            gate_loss=gate_loss,
            **({} if output_hidden_states else dict.fromkeys(hidden_states)),
        )
        return output if return_dict else output.to_tuple()


# transformers' image-segmentation pipeline checks a model's class name against plain copies of the task mappings'
# name tables (model type -> class name), which `AutoModel*.register` does not fill; listed there, this class loads
# in `pipeline(...)` without the "is not supported" error, also as Hub custom code (this file is exported).
MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES.setdefault(
    EcoMask2FormerConfig.model_type, EcoMask2FormerForUniversalSegmentation.__name__
)

__all__ = [
    "EcoMask2FormerForUniversalSegmentation",
    "EcoMask2FormerModel",
    "EcoMask2FormerPreTrainedModel",
]
