"""Configuration of EcoMask2Former: stock Mask2Former plus input-adaptive encoder depth (ECO-M2F) and progressive
token-length scaling (PRO-SCALE).

With every new field at its default the model *is* stock Mask2Former: the same modules, the same state-dict keys
(plus the small gate) and, at full encoder depth, the same outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from huggingface_hub.dataclasses import strict
from transformers import Mask2FormerConfig

EXIT_LOSS_WEIGHTINGS = ("linear", "uniform")
GATE_OBJECTIVES = ("classification", "utility")
GATE_POOLINGS = ("mean", "mean_std")
DEFORMABLE_ATTENTION_IMPLEMENTATIONS = ("auto", "reference", "embedding_bag")
TOKEN_RECALIBRATION_LAYOUTS = ("standard", "official")


def check_gate_beta(beta, *, name: str = "gate_beta") -> float:
    """A usable utility-gate trade-off: a finite number >= 0 (quality fraction per encoder layer), else `ValueError`."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (quality fraction per encoder layer), got {beta!r}")
    return float(beta)


@dataclass(repr=False, eq=False, kw_only=True)
class EcoEarlyExitConfigMixin:
    """The fields, validation and derived properties shared by the ecom2f configs (EcoMask2Former,
    EcoDeformableDetr): ECO-M2F early exit and gate (arXiv 2404.15244) and PRO-SCALE token-length stages with TRC
    (arXiv 2404.14657). Each config documents the fields in its own terms.

    A dataclass, so a config that lists it before the stock config (`class C(EcoEarlyExitConfigMixin, StockConfig)`)
    gets these fields after the stock ones. The host config provides `encoder_layers`, `num_feature_levels`
    (encoder levels) and `encoder_n_points`, calls `_finish_eco_fields()` from its `__post_init__` and is decorated
    with huggingface_hub's `@strict`, so that its `validate()` runs this mixin's `validate_architecture`. Levels are
    indexed coarse to fine here (0 = coarsest).

    Validation follows transformers: the rules live in `validate_architecture()`, the method transformers' configs
    extend (a `ValueError` naming the field). It runs at construction, in `validate()` (huggingface_hub's strict
    dataclass entry point, which wraps the error in a `StrictDataclassClassValidationError`), hence before every
    `save_pretrained`, and code that changes a field afterwards calls it.
    """

    exit_layers: list[int] | None = None
    exit_loss_weighting: str = "linear"
    gate_hidden_size: int | None = None
    gate_input_level: int = 0
    gate_trained: bool = False
    gate_objective: str = "classification"
    gate_beta: float = 0.0
    gate_pooling: str = "mean"
    deformable_attention_implementation: str = "auto"
    token_scaling_layers: list[int] | None = None
    token_recalibration: bool = False
    token_recalibration_temperature: float = 0.1
    token_recalibration_layout: str = "standard"

    def _finish_eco_fields(self) -> None:
        """Fill the default exits (every depth from 2 to `encoder_layers`) and validate every ecom2f field."""
        if self.exit_layers is None:
            self.exit_layers = list(range(min(2, self.encoder_layers), self.encoder_layers + 1))
        self.exit_layers = [int(k) for k in self.exit_layers]
        # Also run by `validate()` right after construction; called here so construction raises the plain ValueError.
        self.validate_architecture()

    def validate_architecture(self) -> None:
        """Check every field against the others; raises a `ValueError` naming the first bad field. Call it after
        changing a field of a constructed config (`save_pretrained` runs it through `validate()`)."""
        super().validate_architecture()
        if self.encoder_layers < 1:
            raise ValueError(f"encoder_layers must be >= 1, got {self.encoder_layers}")
        exits = self.exit_layers
        if not exits:
            raise ValueError(f"exit_layers must name at least one encoder depth, got {exits!r}")
        bad = [k for k in exits if not 1 <= k <= self.encoder_layers]
        if bad:
            raise ValueError(
                f"exit_layers must lie in [1, encoder_layers={self.encoder_layers}], got {exits} (bad: {bad})"
            )
        if any(b <= a for a, b in zip(exits, exits[1:])):
            raise ValueError(f"exit_layers must be strictly increasing, got {exits}")
        if self.exit_loss_weighting not in EXIT_LOSS_WEIGHTINGS:
            raise ValueError(
                f"exit_loss_weighting must be one of {EXIT_LOSS_WEIGHTINGS}, got {self.exit_loss_weighting!r}"
            )
        if self.gate_hidden_size is not None and self.gate_hidden_size < 1:
            raise ValueError(f"gate_hidden_size must be None or >= 1, got {self.gate_hidden_size}")
        if self.gate_pooling not in GATE_POOLINGS:
            raise ValueError(f"gate_pooling must be one of {GATE_POOLINGS}, got {self.gate_pooling!r}")
        if self.gate_objective not in GATE_OBJECTIVES:
            raise ValueError(f"gate_objective must be one of {GATE_OBJECTIVES}, got {self.gate_objective!r}")
        check_gate_beta(self.gate_beta)
        if self.deformable_attention_implementation not in DEFORMABLE_ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"deformable_attention_implementation must be one of {DEFORMABLE_ATTENTION_IMPLEMENTATIONS}, "
                f"got {self.deformable_attention_implementation!r}"
            )
        if self.token_recalibration_layout not in TOKEN_RECALIBRATION_LAYOUTS:
            raise ValueError(
                f"token_recalibration_layout must be one of {TOKEN_RECALIBRATION_LAYOUTS}, "
                f"got {self.token_recalibration_layout!r}"
            )
        if self.encoder_n_points < 1:
            raise ValueError(f"encoder_n_points must be >= 1, got {self.encoder_n_points}")
        self._validate_token_scaling()
        if not 0 <= self.gate_input_level < self.num_feature_levels:
            raise ValueError(
                f"gate_input_level must index an encoder level in [0, {self.num_feature_levels}), "
                f"got {self.gate_input_level}"
            )

    def _validate_token_scaling(self) -> None:
        stages = self.token_scaling_layers
        if stages is None:
            return
        if len(stages) != self.num_feature_levels:
            raise ValueError(
                f"token_scaling_layers needs one stage per encoder level ({self.num_feature_levels}), got {stages}"
            )
        if any(p < 0 for p in stages):
            raise ValueError(f"token_scaling_layers entries must be >= 0, got {stages}")
        if sum(stages) != self.encoder_layers:
            raise ValueError(
                f"token_scaling_layers must sum to encoder_layers={self.encoder_layers}, got {stages} (sum {sum(stages)})"
            )
        if stages[-1] == 0:
            raise ValueError(f"token_scaling_layers must end with a stage of at least one layer (all levels), got {stages}")

    @property
    def encoder_levels_per_layer(self) -> list[int]:
        """How many levels (coarse first) each encoder layer attends to: all of them unless token scaling is on."""
        if self.token_scaling_layers is None:
            return [self.num_feature_levels] * self.encoder_layers
        return [stage + 1 for stage, count in enumerate(self.token_scaling_layers) for _ in range(count)]

    @property
    def num_exits(self) -> int:
        """Number of allowed exits, i.e. the number of gate classes."""
        return len(self.exit_layers)

    @property
    def max_exit(self) -> int:
        """The deepest allowed exit: the depth used when neither the caller nor a trained gate chooses."""
        return self.exit_layers[-1]

    def exit_loss_weight(self, depth: int) -> float:
        """Step-1 loss weight of an exit at `depth` encoder layers (see `exit_loss_weighting`)."""
        return float(depth) if self.exit_loss_weighting == "linear" else 1.0


@strict
class EcoMask2FormerConfig(EcoEarlyExitConfigMixin, Mask2FormerConfig):
    r"""
    Configuration of [`EcoMask2FormerForUniversalSegmentation`]. Every field of [`Mask2FormerConfig`] keeps its
    meaning; the fields below add ECO-M2F early exit from the pixel decoder's deformable encoder.

    exit_layers (`list[int]`, *optional*):
        Encoder depths at which the model may exit, strictly increasing, each in `[1, encoder_layers]`. `None`
        (default) means every depth from 2 to `encoder_layers`, as in the authors' released code (ECO-M2F gate classes
        map to exits 2..6 for a 6-layer encoder). The last entry is the depth used when nothing else is asked for.
    exit_loss_weighting (`str`, *optional*, defaults to `"linear"`):
        How the step-1 loss is weighted by the sampled depth k: `"linear"` multiplies the Mask2Former loss by k (the
        authors' released training forward, "linear combination of losses at each layer"); `"uniform"` by 1.
    gate_hidden_size (`int`, *optional*):
        Width of the gate's hidden layer. `None` (default) gives the paper's gate: mean pooling followed by one
        linear layer over the exits (ECO-M2F, arXiv 2404.15244 Sec. 3.3; GYeow/ECO-M2F
        `mask2former/modeling/pixel_decoder/gating.py`).
    gate_input_level (`int`, *optional*, defaults to 0):
        Which input-projected encoder level the gate pools: 0 is the coarsest (1/32) level, as in the paper.
    gate_trained (`bool`, *optional*, defaults to `False`):
        Whether the gate was trained (ECO-M2F step 3). When `True`, a forward without `num_encoder_layers` lets the
        gate choose the depth of each image; when `False` such a forward runs the deepest exit.
    gate_pooling (`str`, *optional*, defaults to `"mean"`):
        How the gate pools its input map: `"mean"` (the paper) or `"mean_std"` (also the per-channel spatial standard
        deviation, a richer input: the input projection's GroupNorm normalises much of the mean away).
    gate_objective (`str`, *optional*, defaults to `"classification"`):
        What the gate's outputs mean. `"classification"`: logits over the exits, trained with cross-entropy on the
        ideal depths `argmax_k(PQ_k - beta k)` of one beta (the paper, ECO-M2F Sec. 3.3); the depth is their argmax.
        `"utility"`: a predicted per-image quality gain (PQ fraction over the shallowest exit) per exit, trained by
        regression on the derived data set; the depth is `argmax_k(pred_k - gate_beta * k)`, so one trained gate
        serves every beta.
    gate_beta (`float`, *optional*, defaults to 0.0):
        Default trade-off of a `"utility"` gate (PQ fraction per encoder layer; 0.01 trades one PQ point for one
        layer). A forward's `gate_beta` argument overrides it per call. Ignored by a classification gate.
    deformable_attention_implementation (`str`, *optional*, defaults to `"auto"`):
        Sampling core of the encoder's deformable attention: `"reference"` (transformers' per-level `grid_sample`),
        `"embedding_bag"` (one fused gather-and-sum over all levels, equal within float rounding), or `"auto"`
        (`embedding_bag` on CPU, except in training with fewer than 16 channels per head; the reference elsewhere).
    encoder_n_points (`int`, *optional*, defaults to 4):
        Sampling points per head and level in the deformable attention (stock Mask2Former: 4).
    token_scaling_layers (`list[int]`, *optional*):
        PRO-SCALE stages `[p1, p2, p3]`: the first `p1` encoder layers see only the coarsest level (1/32), the next
        `p2` also 1/16, the last `p3` all levels. One entry per encoder level, summing to `encoder_layers`, the last
        one positive. `None` (default) is stock Mask2Former (every layer on every level), as is `[0, 0, 6]`.
    token_recalibration (`bool`, *optional*, defaults to `False`):
        PRO-SCALE TRC: re-weight the 1/32 and 1/16 tokens before they enter the encoder by
        `sigmoid(token_recalibration_temperature * Linear(guide))`, the guide being the input-projected 1/8 map
        resized to each level (one linear map shared by both levels).
    token_recalibration_temperature (`float`, *optional*, defaults to 0.1):
        Scale of the TRC logit (`EXCITE_TEMP` of the released PRO-SCALE configs).
    token_recalibration_layout (`str`, *optional*, defaults to `"standard"`):
        How TRC reads its guide. `"standard"`: the linear map scores one position's channels. `"official"`: the
        computation of the authors' released code (abhishekaich27/proscale-pytorch `proscale.py`, class `TRC`), which
        reinterprets the token-major `(batch, tokens, C)` guide as a `(batch, C, h, w)` map without a transpose and
        reads the resized map back the same way; the released PRO-SCALE weights were trained against it, so
        `ecom2f-convert` sets it for their checkpoints. Train new models with `"standard"`.
    light_pixel_embedding (`bool`, *optional*, defaults to `False`):
        PRO-SCALE LPE: the 3x3 output convolution of the 1/4-resolution FPN level becomes 3x3 max-pooling (stride 1)
        + GroupNorm(32) + ReLU.
    """

    model_type = "eco_mask2former"

    # The shared early-exit and token-scaling fields come from `EcoEarlyExitConfigMixin`; these two are Mask2Former's.
    encoder_n_points: int = 4
    light_pixel_embedding: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # A stock Mask2Former config.json loaded into this class carries `model_type="mask2former"`; the class value
        # is the truth (it is also what `save_pretrained` writes).
        self.__dict__.pop("model_type", None)
        self._finish_eco_fields()

    @property
    def num_feature_levels(self) -> int:
        """Backbone levels the deformable encoder reads (1/32, 1/16, 1/8): the last three `feature_strides`."""
        return min(3, len(self.feature_strides))


__all__ = [
    "DEFORMABLE_ATTENTION_IMPLEMENTATIONS",
    "EXIT_LOSS_WEIGHTINGS",
    "GATE_OBJECTIVES",
    "GATE_POOLINGS",
    "TOKEN_RECALIBRATION_LAYOUTS",
    "EcoEarlyExitConfigMixin",
    "EcoMask2FormerConfig",
    "check_gate_beta",
]
