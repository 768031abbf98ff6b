"""The deformable encoder with early exit: stock Mask2Former layers, a per-image number of them."""

from __future__ import annotations

import torch
from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoderEncoderOnly


class EcoMask2FormerPixelDecoderEncoder(Mask2FormerPixelDecoderEncoderOnly):
    """The stock encoder (same `layers.{i}` modules and state-dict keys) that stops each image at its own depth.

    With one depth for the batch it runs `layers[:depth]` exactly as stock Mask2Former does. With one depth per image,
    layer `i` runs only on the images whose depth exceeds `i` (they are gathered, updated and scattered back), so an
    image that exited is not computed further and gets the same result as when run alone.
    """

    def forward(
        self,
        *,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_embeddings: torch.Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor,
        depths: int | torch.Tensor,
        max_depth: int,
    ) -> torch.Tensor:
        """Run the encoder.

        Args:
            inputs_embeds: flattened multi-scale tokens `(batch, tokens, feature_size)`.
            attention_mask: padding mask `(batch, tokens)`, `True` = padding.
            position_embeddings: position + level embeddings `(batch, tokens, feature_size)`.
            spatial_shapes_list: `(height, width)` of each level, coarse to fine.
            level_start_index: start of each level in the token axis `(levels,)`.
            valid_ratios: `(batch, levels, 2)`.
            depths: one depth for the batch (`int`) or one per image (LongTensor `(batch,)`).
            max_depth: the deepest allowed exit; the per-image loop stops there.

        Returns:
            The encoded tokens `(batch, tokens, feature_size)`.
        """
        reference_points = self.get_reference_points(spatial_shapes_list, valid_ratios, device=inputs_embeds.device)
        layer_kwargs = {"spatial_shapes_list": spatial_shapes_list, "level_start_index": level_start_index}
        hidden_states = inputs_embeds
        if isinstance(depths, int):
            for layer in self.layers[:depths]:
                hidden_states = layer(
                    hidden_states,
                    attention_mask,
                    position_embeddings=position_embeddings,
                    reference_points=reference_points,
                    **layer_kwargs,
                )[0]
            return hidden_states

        for index, layer in enumerate(self.layers[:max_depth]):
            active = (depths > index).nonzero().squeeze(1)  # (A,) images still inside the encoder
            updated = layer(
                hidden_states.index_select(0, active),
                attention_mask.index_select(0, active),
                position_embeddings=position_embeddings.index_select(0, active),
                reference_points=reference_points.index_select(0, active),
                **layer_kwargs,
            )[0]
            hidden_states = hidden_states.index_copy(0, active, updated)
        return hidden_states
