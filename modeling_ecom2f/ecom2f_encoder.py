"""The deformable encoder with early exit and (optionally) PRO-SCALE token-length stages.

Stock Mask2Former runs every encoder layer over the tokens of all three levels. Here layer `i` attends to the first
`config.encoder_levels_per_layer[i]` levels only (coarse first: 1/32, 1/16, 1/8), and each image may stop after
its own number of layers. Tokens of a level that has not entered yet stay as they came in (its input projection),
which is what the FPN and decoder receive when an image exits before that level enters.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderLayer,
    Mask2FormerPixelDecoderEncoderOnly,
)

from .ecom2f_msda import EcoMask2FormerMultiscaleDeformableAttention


class EcoMask2FormerPixelDecoderEncoderLayer(Mask2FormerPixelDecoderEncoderLayer):
    """The stock post-norm deformable encoder layer with its level and point counts and its sampling core taken
    from arguments and config.

    With `n_levels=3` and `n_points=4` it is the stock layer (same parameter names and shapes).
    """

    def __init__(self, config, *, n_levels: int) -> None:
        nn.Module.__init__(self)
        self.embed_dim = config.feature_size
        self.self_attn = EcoMask2FormerMultiscaleDeformableAttention(
            embed_dim=self.embed_dim,
            num_heads=config.num_attention_heads,
            n_levels=n_levels,
            n_points=config.encoder_n_points,
            implementation=config.deformable_attention_implementation,
        )
        self.self_attn_layer_norm = nn.LayerNorm(self.embed_dim)
        self.dropout = config.dropout
        self.activation_fn = nn.functional.relu
        self.activation_dropout = config.dropout
        self.fc1 = nn.Linear(self.embed_dim, config.encoder_feedforward_dim)
        self.fc2 = nn.Linear(config.encoder_feedforward_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)


class EcoMask2FormerPixelDecoderEncoder(Mask2FormerPixelDecoderEncoderOnly):
    """Deformable encoder (`layers.{i}`, the stock state-dict keys) with per-image exits and token-length stages.

    With one depth for the batch it runs `layers[:depth]`; without token scaling that is exactly the stock
    computation. With one depth per image, layer `i` runs only on the images whose depth exceeds `i` (gathered,
    updated, scattered back), so an image that exited is not computed further and gets what it gets alone.
    """

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.dropout = config.dropout
        self.levels_per_layer = list(config.encoder_levels_per_layer)
        self.layers = nn.ModuleList(
            [EcoMask2FormerPixelDecoderEncoderLayer(config, n_levels=n) for n in self.levels_per_layer]
        )

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
            inputs_embeds: flattened multi-scale tokens `(batch, tokens, feature_size)`, levels coarse to fine.
            attention_mask: padding mask `(batch, tokens)`, `True` = padding.
            position_embeddings: position + level embeddings `(batch, tokens, feature_size)`.
            spatial_shapes_list: `(height, width)` of each level, coarse to fine.
            level_start_index: start of each level in the token axis `(levels,)`.
            valid_ratios: `(batch, levels, 2)`.
            depths: one depth for the batch (`int`) or one per image (LongTensor `(batch,)`).
            max_depth: the deepest allowed exit; the per-image loop stops there.

        Returns:
            The encoded tokens `(batch, tokens, feature_size)`; tokens of levels that had not entered at an image's
            exit are returned as they came in.
        """
        reference_points = self.get_reference_points(spatial_shapes_list, valid_ratios, device=inputs_embeds.device)
        # Tokens taken by the first n levels (Python ints: no tensor iteration, compile friendly).
        level_sizes = [h * w for h, w in spatial_shapes_list]
        prefix_tokens = [sum(level_sizes[:n]) for n in range(len(level_sizes) + 1)]
        per_image = not isinstance(depths, int)
        num_layers = max_depth if per_image else depths

        hidden_states = inputs_embeds
        for index, layer in enumerate(self.layers[:num_layers]):
            n_levels = self.levels_per_layer[index]
            tokens = prefix_tokens[n_levels]
            if per_image:
                images = (depths > index).nonzero().squeeze(1)  # (A,) images still inside the encoder
            else:
                images = None
            updated = layer(
                self._take(hidden_states, images, tokens),
                self._take(attention_mask, images, tokens),
                position_embeddings=self._take(position_embeddings, images, tokens),
                reference_points=self._take(reference_points, images, tokens)[:, :, :n_levels],
                spatial_shapes_list=spatial_shapes_list[:n_levels],
                level_start_index=level_start_index[:n_levels],
            )[0]  # (A or B, tokens, C)
            hidden_states = self._put(hidden_states, updated, images, tokens)
        return hidden_states

    @staticmethod
    def _take(tensor: torch.Tensor, images: torch.Tensor | None, tokens: int) -> torch.Tensor:
        """Rows `images` (all when `None`) and the first `tokens` tokens of a `(batch, tokens, ...)` tensor."""
        if images is not None:
            tensor = tensor.index_select(0, images)
        return tensor if tokens == tensor.shape[1] else tensor[:, :tokens]

    @staticmethod
    def _put(hidden_states: torch.Tensor, updated: torch.Tensor, images: torch.Tensor | None, tokens: int) -> torch.Tensor:
        """Write `updated` back into rows `images` and the first `tokens` tokens of `hidden_states`."""
        if tokens == hidden_states.shape[1]:
            return updated if images is None else hidden_states.index_copy(0, images, updated)
        head, tail = hidden_states[:, :tokens], hidden_states[:, tokens:]
        head = updated if images is None else head.index_copy(0, images, updated)
        return torch.cat([head, tail], dim=1)
