"""What the main job (`ecom2f-main-job`, `examples/run_eco_m2f.py`) runs on: its size presets, the synthetic
benchmarks with their parents, and the recipe's defaults (betas, the utility gate's form per benchmark, its encoder
budget).

The maze-rooms parent (the default benchmark's) is package data of this package (`parents/maze_rooms/`, read through
`importlib.resources`), so the main job runs from an installed wheel. The shapes benchmark's parent stays in a source
checkout (`examples/parents/depth_benchmark/`, beside the other folders the benchmarks use); from an installed
package, `--benchmark shapes` needs `--parent FOLDER` (or `--parent scratch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from configuration.configuration_ecom2f import EcoMask2FormerConfig


@dataclass(frozen=True)
class UtilityGateForm:
    """The main job's utility gate: `pooling` of its input level, `hidden_size` of its optional hidden layer (None:
    the paper's single linear layer), `input_level` (input-projected level, 0 = coarsest, 1/32 as in the paper)."""

    pooling: str = "mean_std"
    hidden_size: int | None = 32
    input_level: int = 0

    def __post_init__(self) -> None:
        # The model config's rules judge the form (a ValueError naming gate_pooling, gate_hidden_size or
        # gate_input_level).
        EcoMask2FormerConfig(gate_pooling=self.pooling, gate_hidden_size=self.hidden_size,
                             gate_input_level=self.input_level)


#: The parents shipped inside this package (package data): see each README for the command that trains it.
PACKAGE_PARENTS_DIR = Path(str(files(__package__) / "parents"))
#: The parents of a source checkout (`examples/parents/`; absent from an installed package).
CHECKOUT_PARENTS_DIR = Path(__file__).resolve().parents[2] / "examples" / "parents"


@dataclass(frozen=True)
class Benchmark:
    """A synthetic benchmark the main job runs on: its generator (`data_config`), what its per-image `difficulty`
    column records (analysis only), its shipped parent and what step 1 adds for it."""

    name: str
    title: str
    difficulty: str
    parent: Path
    step1_args: tuple[str, ...] = ()
    analysis_columns: tuple[str, ...] = ()  # more per-image columns the report relates the gain and gates to
    utility_gate: UtilityGateForm = field(default_factory=UtilityGateForm)


BENCHMARKS = {
    "shapes": Benchmark(name="shapes", title="the synthetic depth benchmark (shapes)",
                        difficulty="difficulty: the shapes generator's d in [0, 1] (object count and size, occlusion, "
                                   "clutter, colour similarity, noise)", parent=CHECKOUT_PARENTS_DIR / "depth_benchmark",
                        utility_gate=UtilityGateForm(pooling="mean_std", hidden_size=32, input_level=0)),
    # no augmentation: a scale jitter moves the cells off the token grid and a crop can cut a room's marker out
    "maze": Benchmark(name="maze", title="the maze-rooms benchmark",
                      difficulty="hops: the largest hop distance (cells along open passages) from a free cell to its "
                                 "room's marker", parent=PACKAGE_PARENTS_DIR / "maze_rooms", step1_args=("--no_augmentation",),
                      analysis_columns=("rooms",),
                      # 1/16 (8x8 tokens at 128 px) rather than 1/32 (4x4, coarser than a maze cell): the paper's
                      # linear gate on it was the best form on held-out training images (benchmarks/gate_variants.py)
                      utility_gate=UtilityGateForm(pooling="mean_std", hidden_size=None, input_level=1)),
}
#: The benchmark of `python examples/run_eco_m2f.py` and of the committed `docs/results_main_job.*`.
DEFAULT_BENCHMARK = "maze"
#: The default benchmark's shipped parent.
SHIPPED_PARENT = BENCHMARKS[DEFAULT_BENCHMARK].parent


#: `Preset.parent` value meaning: the shipped parent of the chosen benchmark.
SHIPPED = "shipped"


@dataclass(frozen=True)
class Preset:
    """Sizes of a main-job run. `parent`: a model folder step 1 fine-tunes (None: a fresh model from the size fields;
    `SHIPPED`: the chosen benchmark's shipped parent). `benchmark`: render the chosen benchmark's generator
    (`--benchmark`), else the generic generator with the step-1 defaults."""

    image_size: int
    train_images: int
    validation_images: int
    backbone: str
    feature_size: int
    encoder_layers: int
    decoder_layers: int
    num_queries: int
    batch_size: int
    learning_rate: float
    step1_steps: int
    parent: str | None = None
    benchmark: bool = False
    deadline_minutes: float | None = None
    eval_batch_size: int = 16


PRESETS = {
    # Seconds: for CI and smoke tests (64x64 images, 3 encoder layers, exits 2..3, two step-1 steps from scratch).
    "tiny": Preset(image_size=64, train_images=12, validation_images=6, backbone="swin-mini", feature_size=32,
                   encoder_layers=3, decoder_layers=2, num_queries=10, batch_size=4, learning_rate=1e-3,
                   step1_steps=2, eval_batch_size=8),
    # The main job (under 20 minutes on 2 CPU cores): the shipped parent (128x128, Swin embed 32 / depths 1-1-2-1,
    # 64-d pixel decoder, 6 encoder layers with exits 2..6, 4 decoder layers, 20 queries) fine-tuned for 100 steps on
    # the benchmark's own training images; 1000 training images for steps 2-3, 600 validation images.
    "default": Preset(image_size=128, train_images=1000, validation_images=600, backbone="swin-mini", feature_size=64,
                      encoder_layers=6, decoder_layers=4, num_queries=20, batch_size=8, learning_rate=2e-5,
                      step1_steps=100, parent=SHIPPED, benchmark=True, deadline_minutes=20.0),
    # From scratch on the benchmark, the setting of the shipped parent (hours on 2 CPU cores).
    "scratch": Preset(image_size=128, train_images=1200, validation_images=600, backbone="swin-mini", feature_size=64,
                      encoder_layers=6, decoder_layers=4, num_queries=20, batch_size=8, learning_rate=5e-4,
                      step1_steps=5000, benchmark=True),
    "large": Preset(image_size=256, train_images=4000, validation_images=500, backbone="swin-tiny", feature_size=256,
                    encoder_layers=6, decoder_layers=9, num_queries=100, batch_size=16, learning_rate=1e-4,
                    step1_steps=30000, benchmark=True),
}
#: The classification gate's beta (the paper's scale: COCO 0.0005 / 0.02, Cityscapes 0.003 / 0.01, arXiv 2404.15244).
DEFAULT_BETA = 0.003
#: Betas at which the one utility gate is evaluated (quality fraction per encoder layer).
DEFAULT_UTILITY_BETAS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03)
#: The encoder budget the utility gate is calibrated for on held-out training images (`--target_encoder_fraction`).
DEFAULT_TARGET_FRACTION = 0.7


__all__ = ["BENCHMARKS", "DEFAULT_BENCHMARK", "DEFAULT_BETA", "DEFAULT_TARGET_FRACTION", "DEFAULT_UTILITY_BETAS",
           "CHECKOUT_PARENTS_DIR", "PACKAGE_PARENTS_DIR", "PRESETS", "SHIPPED", "SHIPPED_PARENT", "Benchmark", "Preset",
           "UtilityGateForm"]
