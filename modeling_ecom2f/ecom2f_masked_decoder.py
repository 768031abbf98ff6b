"""A faster stand-in for the stock masked-attention decoder (`Mask2FormerMaskedAttentionDecoder`): same parameters
(state-dict keys), same outputs.

Before every layer the stock decoder lets a query whose attention mask blocks every pixel attend everywhere
(facebookresearch/Mask2Former `mask2former/modeling/transformer_decoder/mask2former_transformer_decoder.py`,
`attn_mask[torch.where(attn_mask.sum(-1) == attn_mask.shape[-1])] = False`). transformers computes that as an int64
sum over the boolean `(batch * heads, queries, h * w)` mask and a multiplication by the result: at 800x800 a 64 MB
int64 copy, a sum and a pass over the mask at each of the three 1/8 layers. Here the same rule is a boolean
`all(-1)` and a boolean `and` (which ONNX exports too). The rest of the forward is the stock one.
"""

from __future__ import annotations

import torch
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerMaskedAttentionDecoderOutput,
)


def unblock_full_rows(attention_mask: torch.Tensor) -> torch.Tensor:
    """`attention_mask` `(batch * heads, queries, pixels)` (`True` = blocked) with every all-blocked row cleared,
    as the stock decoder's `attention_mask * (attention_mask.sum(-1) != pixels)`."""
    return attention_mask & ~attention_mask.all(-1, keepdim=True)  # (B * heads, Q, 1) rows broadcast


class EcoMaskedAttentionDecoder(Mask2FormerMaskedAttentionDecoder):
    """The stock masked-attention decoder with the all-blocked-row rule computed on booleans (`unblock_full_rows`)."""

    def forward(
        self,
        inputs_embeds: torch.Tensor | None = None,
        multi_stage_positional_embeddings: torch.Tensor | None = None,
        pixel_embeddings: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        query_position_embeddings: torch.Tensor | None = None,
        feature_size_list: list | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Mask2FormerMaskedAttentionDecoderOutput | tuple:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_states = inputs_embeds  # (Q, B, C)
        all_hidden_states = () if output_hidden_states else None
        attentions = () if output_attentions else None

        intermediate_hidden_states = self.layernorm(inputs_embeds)
        intermediate = (intermediate_hidden_states,)
        predicted_mask, attention_mask = self.mask_predictor(
            intermediate_hidden_states, pixel_embeddings, feature_size_list[0]
        )
        intermediate_mask_predictions = (predicted_mask,)

        for idx, decoder_layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            layer_outputs = decoder_layer(
                hidden_states,
                idx % self.num_feature_levels,
                None,  # attention_mask
                multi_stage_positional_embeddings,
                query_position_embeddings,
                encoder_hidden_states,
                encoder_attention_mask=unblock_full_rows(attention_mask),
                output_attentions=output_attentions,
            )
            hidden_states = layer_outputs[0]
            intermediate_hidden_states = self.layernorm(hidden_states)
            predicted_mask, attention_mask = self.mask_predictor(
                intermediate_hidden_states, pixel_embeddings, feature_size_list[(idx + 1) % self.num_feature_levels]
            )
            intermediate_mask_predictions += (predicted_mask,)
            intermediate += (intermediate_hidden_states,)
            if output_attentions:
                attentions += (layer_outputs[1],)

        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        hidden_states = hidden_states.transpose(1, 0)  # (B, Q, C)
        if not return_dict:
            outputs = [hidden_states, all_hidden_states, attentions, intermediate, intermediate_mask_predictions]
            return tuple(v for v in outputs if v is not None)
        return Mask2FormerMaskedAttentionDecoderOutput(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attentions=attentions,
            intermediate_hidden_states=intermediate,
            masks_queries_logits=intermediate_mask_predictions,
        )
