"""What every ecom2f early-exit model shares, whatever its task: ECO-M2F (arXiv 2404.15244) early exit from the
deformable encoder with a gate, and PRO-SCALE (arXiv 2404.14657) token re-calibration.

* `EcoEarlyExitMixin`: listed before the stock `PreTrainedModel` of both EcoMask2Former and EcoDeformableDetr, it
  initialises the ecom2f modules (gate, TRC, deformable attention), finds the gate (`exit_gate`), resolves a depth
  request (`resolve_depths`), freezes all but the gate (ECO-M2F step 3) and combines the task loss with the exit
  losses (`combine_exit_losses`: step-1 depth weight, step-3 gate cross-entropy).
* `build_exit_gate` / `build_token_recalibration`: the gate and the optional TRC a model builds from its config.
* `EcoExitOutputFields` / `EcoExitLossOutputFields`: the output fields every ecom2f model adds to the stock outputs,
  and `carry_fields`, which fills a task output from the base model's output.

Nothing here changes a module name or a state-dict key: the models keep the stock modules and attribute names.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .ecom2f_depth import depth_loss_weight, gate_cross_entropy, resolve_encoder_depths
from .ecom2f_gate import EcoExitGate
from .ecom2f_msda import EcoMultiscaleDeformableAttention, init_deformable_attention_
from .ecom2f_token_scaling import EcoTokenRecalibration


def build_exit_gate(config, *, in_channels: int) -> EcoExitGate:
    """The ECO-M2F gate over `config.exit_layers`, reading `in_channels`-channel input-projected tokens."""
    return EcoExitGate(
        in_channels=in_channels, num_exits=config.num_exits, hidden_size=config.gate_hidden_size,
        pooling=config.gate_pooling,
    )


def build_token_recalibration(config, *, feature_size: int) -> EcoTokenRecalibration | None:
    """PRO-SCALE TRC when `config.token_recalibration`, else `None`."""
    if not config.token_recalibration:
        return None
    return EcoTokenRecalibration(
        feature_size=feature_size, temperature=config.token_recalibration_temperature,
        layout=config.token_recalibration_layout,
    )


class EcoEarlyExitMixin:
    """Early-exit behaviour shared by the ecom2f pre-trained models, base and task models alike.

    List it first: `class EcoXPreTrainedModel(EcoEarlyExitMixin, StockPreTrainedModel)`. The class sets
    `exit_gate_path`, the gate's path inside the base model (`self.base_model`, which is `self` for a base model and
    `self.model` for a task model).
    """

    config: object
    exit_gate_path: str

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, EcoExitGate):
            # The released gate's linear layer starts with zero bias (GYeow/ECO-M2F
            # `mask2former/modeling/pixel_decoder/gating.py`, `GatingFunction`).
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    init.normal_(layer.weight, mean=0.0, std=self.config.init_std)
                    init.zeros_(layer.bias)
        elif isinstance(module, EcoTokenRecalibration):
            # PRO-SCALE initialises every weight matrix with xavier_uniform, as Mask2Former's pixel decoder.
            init.xavier_uniform_(module.proj.weight)
            init.zeros_(module.proj.bias)
        elif isinstance(module, EcoMultiscaleDeformableAttention):
            # Deformable DETR's initialisation, which stock Mask2Former repeats for its encoder attention.
            init_deformable_attention_(module)
        else:
            super()._init_weights(module)

    @property
    def exit_gate(self) -> EcoExitGate:
        """The ECO-M2F gate of this model."""
        return self.base_model.get_submodule(self.exit_gate_path)

    def resolve_depths(self, num_encoder_layers: int | torch.Tensor | None, batch_size: int) -> int | torch.Tensor | None:
        """The depth request after validation: an `int`, a LongTensor `(batch,)`, or `None` (the trained gate decides)."""
        return resolve_encoder_depths(self.config, num_encoder_layers, batch_size=batch_size)

    def freeze_all_but_gate(self) -> list[nn.Parameter]:
        """ECO-M2F step 3: freeze every parameter except the gate's; returns the gate parameters."""
        self.requires_grad_(False)
        gate = self.exit_gate
        gate.requires_grad_(True)
        return list(gate.parameters())

    def depth_loss_weight(self, depths: int | torch.Tensor) -> float | torch.Tensor:
        """Step-1 loss weight of the depth(s) used; the mean over images for per-image depths."""
        return depth_loss_weight(self.config, depths)

    def gate_loss(self, gate_logits: torch.Tensor, exit_labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of gate logits `(batch, num_exits)` against ideal depths `(batch,)` (ECO-M2F step 3)."""
        return gate_cross_entropy(gate_logits, exit_labels, exit_layers=self.config.exit_layers)

    def combine_exit_losses(
        self,
        task_loss: torch.Tensor | None,
        *,
        num_encoder_layers: int | torch.Tensor | None,
        outputs: EcoExitOutputFields,
        exit_labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The training loss of a forward: the task loss times the step-1 depth weight (ECO-M2F step 1, weighted by
        `config.exit_loss_weighting`), plus the gate's cross-entropy against `exit_labels` when given (step 3).

        Args:
            task_loss: the stock model's loss, or `None` without labels.
            num_encoder_layers: the forward's depth request; an `int` weights the loss by that depth, otherwise the
                depths the images used (`outputs.encoder_layers_used`) do.
            outputs: the base model's output (`encoder_layers_used`, `gate_logits`).
            exit_labels: ideal depth per image `(batch,)`, or `None`.

        Returns:
            `(loss, gate_loss)`, either `None` when nothing contributes to it.
        """
        loss = None
        if task_loss is not None:
            depths = num_encoder_layers if isinstance(num_encoder_layers, int) else outputs.encoder_layers_used
            loss = task_loss * self.depth_loss_weight(depths)
        gate_loss = None
        if exit_labels is not None:
            gate_loss = self.gate_loss(outputs.gate_logits, exit_labels)
            loss = gate_loss if loss is None else loss + gate_loss
        return loss, gate_loss


@dataclass(repr=False, eq=False)
class EcoExitOutputFields:
    r"""
    The per-image depth decision every ecom2f output adds to the stock one. List it first
    (`class EcoXOutput(EcoExitOutputFields, StockOutput)`), so its fields come after the stock fields.

    encoder_layers_used (`torch.LongTensor` of shape `(batch_size,)`):
        Number of deformable encoder layers each image went through.
    gate_logits (`torch.FloatTensor` of shape `(batch_size, num_exits)`, *optional*):
        Gate scores over `config.exit_layers`; `None` when the gate did not run.
    """

    encoder_layers_used: torch.Tensor | None = None
    gate_logits: torch.Tensor | None = None


@dataclass(repr=False, eq=False)
class EcoExitLossOutputFields(EcoExitOutputFields):
    r"""
    [`EcoExitOutputFields`] plus, for task outputs:

    gate_loss (`torch.FloatTensor`, *optional*):
        Cross-entropy of the gate against `exit_labels`, when those were given (ECO-M2F step 3).
    """

    gate_loss: torch.Tensor | None = None


def carry_fields(source: ModelOutput, output_class: type[ModelOutput], **values) -> ModelOutput:
    """An `output_class` whose fields are `values` where given, else `source`'s field of the same name (if any)."""
    names = {field.name for field in fields(source)}
    carried = {field.name: getattr(source, field.name) for field in fields(output_class) if field.name in names}
    return output_class(**{**carried, **values})


__all__ = [
    "EcoEarlyExitMixin",
    "EcoExitLossOutputFields",
    "EcoExitOutputFields",
    "build_exit_gate",
    "build_token_recalibration",
    "carry_fields",
]
