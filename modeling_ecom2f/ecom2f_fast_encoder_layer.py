"""A faster stand-in for the deformable encoder layer: the same parameters (state-dict keys) and outputs as
`EcoMask2FormerPixelDecoderEncoderLayer` (the stock post-norm layer), with its feed-forward block run in row blocks
at inference (`ecom2f_blocked_ffn`) and the attention residual added in place. Training, tracing and FLOP counting
(`ecom2f_onednn_linear.observed`) run the stock forward.
"""

from __future__ import annotations

import torch

from .ecom2f_blocked_ffn import blocked_feed_forward
from .ecom2f_encoder import EcoMask2FormerPixelDecoderEncoderLayer
from .ecom2f_onednn_linear import observed


class EcoFastPixelDecoderEncoderLayer(EcoMask2FormerPixelDecoderEncoderLayer):
    """`EcoMask2FormerPixelDecoderEncoderLayer` whose inference forward skips the full-size FFN activations."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
        level_start_index: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        if (self.training or torch.is_grad_enabled() or observed()
                or self.activation_fn is not torch.nn.functional.relu):
            return super().forward(
                hidden_states, attention_mask, position_embeddings=position_embeddings,
                reference_points=reference_points, spatial_shapes_list=spatial_shapes_list,
                level_start_index=level_start_index, output_attentions=output_attentions,
            )
        attended, attn_weights = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=hidden_states,
            encoder_attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            output_attentions=output_attentions,
        )  # (B, tokens, C)
        hidden_states = self.self_attn_layer_norm(attended.add_(hidden_states))
        hidden_states = blocked_feed_forward(
            hidden_states, fc1=self.fc1, fc2=self.fc2, activation="relu", post_norm=self.final_layer_norm
        )
        if output_attentions:
            return hidden_states, attn_weights.transpose(1, 0)
        return (hidden_states,)
