"""Configuration of EcoDeformableDetr: stock Deformable DETR plus input-adaptive encoder depth (ECO-M2F early exit
and gate) and progressive token-length scaling (PRO-SCALE stages with TRC) in its deformable encoder.

With every new field at its default the model *is* stock Deformable DETR (single stage, no box refinement): the same
modules, the same state-dict keys (plus the small gate) and, at full encoder depth, the same outputs.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import DeformableDetrConfig

from configuration.configuration_ecom2f import EcoEarlyExitConfigMixin


@strict
class EcoDeformableDetrConfig(EcoEarlyExitConfigMixin, DeformableDetrConfig):
    r"""
    Configuration of [`EcoDeformableDetrForObjectDetection`]. Every field of [`DeformableDetrConfig`] keeps its
    meaning; the fields below add early exit from, and token-length stages in, the deformable encoder.

    Encoder levels are counted **coarse to fine** in these fields (0 = the coarsest level, 1/64 for the default
    4-level ResNet setup), although stock Deformable DETR orders its levels fine to coarse (1/8, 1/16, 1/32, 1/64).

    Not supported: `two_stage=True` (its proposals would read a depth-dependent encoder output through extra stock
    heads that this class does not wire up); it raises a `ValueError`. `with_box_refine=True` only concerns the
    decoder and the heads, which are the stock modules, and is supported.

    exit_layers (`list[int]`, *optional*):
        Encoder depths at which the model may exit, strictly increasing, each in `[1, encoder_layers]`. `None`
        (default) means every depth from 2 to `encoder_layers` (the ECO-M2F authors' choice). The last entry is the
        depth used when nothing else is asked for.
    exit_loss_weighting (`str`, *optional*, defaults to `"linear"`):
        Step-1 loss weight of a sampled depth k: `"linear"` multiplies the Deformable DETR loss by k (ECO-M2F's
        released training forward), `"uniform"` by 1.
    gate_hidden_size (`int`, *optional*):
        Width of the gate's hidden layer; `None` (default) is the paper's gate: mean pooling + one linear layer.
    gate_input_level (`int`, *optional*, defaults to 0):
        Which input-projected level the gate pools, coarse to fine: 0 is the coarsest level.
    gate_trained (`bool`, *optional*, defaults to `False`):
        When `True`, a forward without `num_encoder_layers` lets the gate choose each image's depth; when `False`
        such a forward runs the deepest exit.
    gate_objective (`str`, *optional*, defaults to `"classification"`):
        `"classification"`: the gate's outputs are logits over the exits for one beta (the paper); `"utility"`: they
        predict each exit's per-image quality gain and the depth is `argmax_k(pred_k - gate_beta * k)` (any beta).
    gate_beta (`float`, *optional*, defaults to 0.0):
        Default trade-off of a `"utility"` gate (quality fraction per encoder layer); a forward's `gate_beta`
        overrides it.
    gate_pooling (`str`, *optional*, defaults to `"mean"`):
        `"mean"` (the paper) or `"mean_std"` (also the spatial standard deviation of each channel).
    deformable_attention_implementation (`str`, *optional*, defaults to `"auto"`):
        Sampling core of the encoder's deformable attention (the decoder keeps the stock one): `"reference"`
        (per-level `grid_sample`), `"embedding_bag"` (one fused gather-and-sum, equal within float rounding) or
        `"auto"` (`embedding_bag` on CPU, except in training with fewer than 16 channels per head; the reference
        elsewhere).
    token_scaling_layers (`list[int]`, *optional*):
        PRO-SCALE stages, one per encoder level, coarse to fine: the first `p1` layers see only the coarsest level,
        the next `p2` also the second coarsest, ..., the last stage all levels. Must sum to `encoder_layers` and end
        with a positive stage. `None` (default) is stock Deformable DETR (every layer on every level).
    token_recalibration (`bool`, *optional*, defaults to `False`):
        PRO-SCALE TRC: before the encoder, every level but the finest is re-weighted per position by
        `sigmoid(token_recalibration_temperature * Linear(guide))`, the guide being the finest input-projected level
        resized to that level (one linear map shared by all levels).
    token_recalibration_temperature (`float`, *optional*, defaults to 0.1):
        Scale of the TRC logit.
    token_recalibration_layout (`str`, *optional*, defaults to `"standard"`):
        `"standard"` scores one position's channels; `"official"` reproduces the released PRO-SCALE code's token-major
        reinterpretation of the guide (see [`EcoMask2FormerConfig`]).
    """

    model_type = "eco_deformable_detr"
    # The early-exit and token-scaling fields are `EcoEarlyExitConfigMixin`'s (`encoder_n_points` is stock here).

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # A stock config.json loaded into this class carries `model_type="deformable_detr"`; the class value wins.
        self.__dict__.pop("model_type", None)
        self._finish_eco_fields()

    def validate_architecture(self) -> None:
        """The stock rules and the shared ecom2f ones (`EcoEarlyExitConfigMixin.validate_architecture`), after the
        two checks of this class."""
        if self.two_stage:
            raise ValueError(
                "two_stage=True is not supported by EcoDeformableDetrConfig (early exit and token scaling are "
                "implemented for single-stage Deformable DETR); use two_stage=False"
            )
        if self.num_feature_levels < 1:
            raise ValueError(f"num_feature_levels must be >= 1, got {self.num_feature_levels}")
        super().validate_architecture()


__all__ = ["EcoDeformableDetrConfig"]
