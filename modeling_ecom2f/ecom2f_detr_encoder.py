"""Deformable DETR's encoder with per-image early exit and PRO-SCALE token-length stages.

The layers keep the stock `DeformableDetrEncoderLayer` parameter names (`self_attn.*`, `self_attn_layer_norm`,
`mlp.fc1`, `mlp.fc2`, `final_layer_norm`), so stock checkpoints load unchanged. The per-image exit loop is the one
every ecom2f encoder shares (`ecom2f_encoder.EcoEarlyExitEncoder`) and the deformable attention is ecom2f's (stock
parameters, selectable sampling core).

Level order: stock Deformable DETR concatenates its levels fine to coarse (1/8, 1/16, 1/32, 1/64), so the coarsest
`n` levels, the ones a PRO-SCALE stage sees, are the *last* `n` levels of the token axis.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrEncoder,
    DeformableDetrEncoderLayer,
    DeformableDetrMLP,
)

from .ecom2f_encoder import EcoEarlyExitEncoder, encoder_self_attention


class EcoDeformableDetrEncoderLayer(DeformableDetrEncoderLayer):
    """The stock post-norm Deformable DETR encoder layer attending to `n_levels` levels with ecom2f's deformable
    attention. With `n_levels=config.num_feature_levels` its parameters are the stock layer's (names and shapes).

    Unlike the stock layer, `attention_mask` is `True` on padding (the stock one marks real tokens).
    """

    def __init__(self, config, *, n_levels: int) -> None:
        nn.Module.__init__(self)
        self.hidden_size = config.d_model
        self.self_attn = encoder_self_attention(
            config, embed_dim=config.d_model, num_heads=config.encoder_attention_heads, n_levels=n_levels
        )
        self.self_attn_layer_norm = nn.LayerNorm(self.hidden_size)
        self.dropout = config.dropout
        self.mlp = DeformableDetrMLP(config, self.hidden_size, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(self.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
        level_start_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer over `(batch, tokens, d_model)` tokens; `attention_mask` `(batch, tokens)` is `True` on padding.

        Returns the updated tokens and the attention weights `(batch, tokens, heads, levels, points)`.
        """
        residual = hidden_states
        hidden_states, attention_weights = self.self_attn(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=hidden_states,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)
        hidden_states = self.final_layer_norm(hidden_states + self.mlp(hidden_states))
        if self.training:
            # The stock layer clamps only after a host-side isfinite check; clamping unconditionally gives the same
            # result for finite values below the bound and needs no host sync.
            bound = torch.finfo(hidden_states.dtype).max - 1000
            hidden_states = hidden_states.clamp(min=-bound, max=bound)
        return hidden_states, attention_weights


class EcoDeformableDetrEncoder(EcoEarlyExitEncoder):
    """Deformable DETR encoder (`layers.{i}`, the stock keys) with per-image exits and token-length stages.

    Layer `i` attends to the `config.encoder_levels_per_layer[i]` coarsest levels; without token scaling that is
    every level and, at full depth, exactly the stock computation. `forward` / `forward_exits` are the shared ones
    (`EcoEarlyExitEncoder`), with levels in stock (fine to coarse) order and `attention_mask` `True` on padding.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.dropout = config.dropout
        num_levels = config.num_feature_levels
        self.levels_per_layer = list(config.encoder_levels_per_layer)
        # Fine-to-coarse token order: the coarsest n levels are the last n.
        self.level_spans = [(num_levels - n, num_levels) for n in self.levels_per_layer]
        self.layers = nn.ModuleList(
            [EcoDeformableDetrEncoderLayer(config, n_levels=n) for n in self.levels_per_layer]
        )

    def _encoder_inputs(
        self, inputs_embeds: torch.Tensor, spatial_shapes_list: list[tuple[int, int]], valid_ratios: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stock encoder drops out its input tokens first."""
        hidden_states = nn.functional.dropout(inputs_embeds, p=self.dropout, training=self.training)
        reference_points = DeformableDetrEncoder.get_reference_points(
            tuple(spatial_shapes_list), valid_ratios, device=inputs_embeds.device
        )  # (batch, tokens, levels, 2)
        return hidden_states, reference_points


__all__ = ["EcoDeformableDetrEncoder", "EcoDeformableDetrEncoderLayer"]
