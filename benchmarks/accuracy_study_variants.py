"""The variants and presets of `accuracy_study.py`, for its two modes.

- `fine_tuned` (the default): every variant fine-tunes the shipped parent (`examples/parents/depth_benchmark/`).
- `from_scratch`: the shipped parent itself (trained from scratch by `examples/train_benchmark_parent.py`) against
  PRO-SCALE and the combined model trained from scratch by the same command, only the encoder flags differing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARENTS = REPO / "examples" / "parents"
MODES = ("fine_tuned", "from_scratch")


@dataclass(frozen=True)
class Variant:
    """One trained configuration. `exits`: the depths step 1 samples (one entry: fixed full depth); `gate`: run steps
    2-3 and evaluate the utility gate; `depths`: the fixed depths evaluated and timed (default: every exit);
    `training`: `"fine_tuned"` (from the shipped parent) or `"from_scratch"` (the parent's own command)."""

    name: str
    family: str
    stages: tuple[int, ...] | None = None
    token_recalibration: bool = False
    light_pixel_embedding: bool = False
    exits: tuple[int, ...] | None = None
    gate: bool = False
    depths: tuple[int, ...] | None = None
    training: str = "fine_tuned"

    @property
    def encoder_layers(self) -> int:
        return sum(self.stages) if self.stages else 6

    def overrides(self, parent_layers: int) -> dict:
        layers = sum(self.stages) if self.stages else parent_layers
        out = {"exit_layers": list(self.exits or (layers,))}
        if self.stages:
            out.update(token_scaling_layers=list(self.stages), encoder_layers=layers,
                       token_recalibration=self.token_recalibration, light_pixel_embedding=self.light_pixel_embedding)
        return out

    def encoder_argv(self) -> list[str]:
        """The encoder flags of `train_early_exit.py` that turn the parent's command into this variant's (empty for
        the parent itself): stages, TRC, LPE, exits and the depths validated at the end of training."""
        if not self.stages:
            return []
        layers = sum(self.stages)
        exits = self.exits or (layers,)
        argv = ["--encoder_layers", str(layers), "--token_scaling_layers", *map(str, self.stages)]
        argv += ["--token_recalibration"] if self.token_recalibration else []
        argv += ["--light_pixel_embedding"] if self.light_pixel_embedding else []
        return argv + ["--exit_layers", *map(str, exits), "--eval_depths", *map(str, sorted({exits[0], exits[-1]}))]


VARIANTS = (  # the gated ones first: they have the most stages to run
    Variant("combined_333_trc_lpe", "combined", (3, 3, 3), True, True, exits=(3, 4, 5, 6, 7, 8, 9), gate=True),
    Variant("eco", "eco", exits=(2, 3, 4, 5, 6), gate=True),
    Variant("stock", "stock"),
    Variant("proscale_333_trc_lpe", "proscale", (3, 3, 3), True, True),
    Variant("proscale_333_lpe", "proscale", (3, 3, 3), False, True),
    Variant("proscale_333_trc", "proscale", (3, 3, 3), True, False),
    Variant("proscale_114_trc_lpe", "proscale", (1, 1, 4), True, True),
)
TINY_VARIANTS = (
    Variant("stock", "stock"),
    Variant("eco", "eco", exits=(2, 3), gate=True),
    Variant("proscale_111_trc_lpe", "proscale", (1, 1, 1), True, True),
    Variant("combined_111_trc_lpe", "combined", (1, 1, 1), True, True, exits=(2, 3), gate=True),
)
#: From scratch: the shipped parent (stock architecture, trained with ECO-M2F exits 2..6) evaluated at full depth is
#: the baseline; the other two are trained by the parent's command with their encoder flags.
SCRATCH_VARIANTS = (
    Variant("combined_333_trc_lpe", "combined", (3, 3, 3), True, True, exits=(3, 4, 5, 6, 7, 8, 9), gate=True,
            training="from_scratch"),
    Variant("parent", "stock", depths=(6,), training="from_scratch"),
    Variant("proscale_333_trc_lpe", "proscale", (3, 3, 3), True, True, training="from_scratch"),
)
TINY_SCRATCH_VARIANTS = (
    Variant("combined_111_trc_lpe", "combined", (1, 1, 1), True, True, exits=(2, 3), gate=True,
            training="from_scratch"),
    Variant("parent", "stock", depths=(3,), training="from_scratch"),
    Variant("proscale_111_trc_lpe", "proscale", (1, 1, 1), True, True, training="from_scratch"),
)
#: The folder under `examples/parents/` that holds a from-scratch variant's trained weights (used instead of training
#: when present and matching its SHA256SUMS).
SHIPPED = {"parent": "depth_benchmark", "proscale_333_trc_lpe": "proscale_333_trc_lpe",
           "combined_333_trc_lpe": "combined_333_trc_lpe"}
#: Appended to the parent's command in the tiny preset (later flags win): a seconds-long smoke training.
TINY_SCRATCH_ARGV = ["--image_size", "64", "--feature_size", "32", "--encoder_layers", "3", "--decoder_layers", "2",
                     "--num_queries", "10", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
                     "--max_train_steps", "2", "--checkpointing_steps", "1", "--max_eval_samples", "4",
                     "--eval_depths", "2", "3"]


@dataclass(frozen=True)
class Preset:
    image_size: int
    train_images: int
    validation_images: int
    steps: int
    batch_size: int
    learning_rate: float
    gate_images: int
    parent: str | None
    latency_repeats: int
    flops_size: int


PARENT = PARENTS / "depth_benchmark"
PRESETS = {
    "default": Preset(image_size=128, train_images=2000, validation_images=500, steps=1000, batch_size=8,
                      learning_rate=1e-4, gate_images=600, parent=str(PARENT), latency_repeats=20, flops_size=1024),
    # Seconds: a smoke run (64x64 images, a fresh 3-layer parent, two steps per variant).
    "tiny": Preset(image_size=64, train_images=12, validation_images=6, steps=2, batch_size=4, learning_rate=1e-3,
                   gate_images=8, parent=None, latency_repeats=2, flops_size=64),
}
#: Betas at which the gates are evaluated besides the calibrated one (quality fraction per encoder layer).
GATE_BETAS = (0.0, 0.001, 0.003, 0.01)
TARGET_ENCODER_FRACTION = 0.7


def variant_pool(*, preset: str, mode: str = "fine_tuned") -> tuple[Variant, ...]:
    """The variants of one preset and mode."""
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; choose from {MODES}")
    if mode == "from_scratch":
        return TINY_SCRATCH_VARIANTS if preset == "tiny" else SCRATCH_VARIANTS
    return TINY_VARIANTS if preset == "tiny" else VARIANTS


def baseline_name(variants) -> str:
    """The variant every ratio is measured against: the (one) stock-architecture variant of a run."""
    return next(v.name for v in variants if v.family == "stock")
