"""Which form of utility gate should the main job train? Compare gate inputs and sizes on a finished main job.

Reads a main-job folder of `examples/run_eco_m2f.py` (its `data/`, `step1_parent/`, `step2_derived/` and
`evaluation/per_exit_counts.npz`), caches the pixel decoder's input-projected maps of every training and validation
image once, and trains every variant of the gate (`EcoExitGate`, the model's own module, started as step 3 starts it)
on the derived data set's per-image quality gains with step 3's hyper-parameters (`build_train_gate_parser`
defaults: learning rate, weight decay, epochs, batch, clipping) in the probes' plain loop
(`depth_probe_gate.train_utility_gate`: cosine without step 3's warm-up, weight decay on every parameter), several
seeds each:

- input level (0 = 1/32, the paper's; 1 = 1/16; ...), pooling (`mean`, the paper's; `mean_std`), hidden layer;
- **selection** on the held-out 20% of the training images only (step 3's own split): the mean per-image PQ of the
  gate's choices at the beta calibrated to `--target_encoder_fraction` of the encoder, averaged over seeds;
- **for reference, never for selection**: the validation data-set PQ of the same routing minus full depth's, from the
  evaluation's per-exit counts, and its encoder fraction.

    python benchmarks/gate_variants.py --job_dir outputs/main_job --out docs/gate_variants_maze

writes `OUT.json` and `OUT.md`. CPU minutes: feature caching is one backbone pass per image; each variant trains in
seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from depth_probe_gate import predict, train_utility_gate

from modeling_ecom2f.ecom2f_gate import GATE_POOLINGS, EcoExitGate
from modeling_ecom2f.metrics import panoptic_from_counts
from modeling_ecom2f.recipe.arguments import build_train_gate_parser
from modeling_ecom2f.recipe.derived import load_derived_dataset, quality_matrix
from modeling_ecom2f.recipe.gate_training import holdout_split
from modeling_ecom2f.recipe.mode_evaluation import PER_EXIT_COUNTS_FILE, load_per_exit_counts
from modeling_ecom2f.recipe.routing import calibrate_beta, utility_depths


def cache_maps(job_dir: Path, *, batch_size: int = 32) -> dict[str, list[np.ndarray]]:
    """`{split: [level 0 maps (N, C, h, w), level 1, ...]}`: the input-projected levels, coarse to fine, that the
    gate may read (`EcoMask2FormerModel.compute_gate_logits`'s computation for every level)."""
    import datasets

    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
    from modeling_ecom2f.recipe.data import build_image_processor

    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(job_dir / "step1_parent").eval()
    processor = build_image_processor(image_size=None, model_dir=str(job_dir / "step1_parent"))  # the job's own
    data = datasets.load_from_disk(str(job_dir / "data"))
    inner = model.model
    projections = inner.pixel_level_module.decoder.input_projections
    out = {}
    for split in ("train", "validation"):
        levels: list[list[np.ndarray]] = [[] for _ in projections]
        for start in range(0, len(data[split]), batch_size):
            images = [image.convert("RGB") for image in data[split][start:start + batch_size]["image"]]
            pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                features = inner.pixel_level_module.encoder(pixel_values).feature_maps[::-1]  # coarse to fine
                for level, projection in enumerate(projections):
                    levels[level].append(projection(features[level]).numpy())  # (B, C, h, w)
        out[split] = [np.concatenate(chunks) for chunks in levels]
    return out


def train_variant(maps: np.ndarray, quality: np.ndarray, *, pooling: str, hidden_size: int | None, seed: int,
                  settings: argparse.Namespace, init_std: float) -> EcoExitGate:
    """A fresh gate regressing the per-exit gains of `quality` (N, num_exits), started as step 3 starts it and trained
    with step 3's hyper-parameters (`settings`: `build_train_gate_parser` defaults) by the probes' loop
    (`depth_probe_gate.train_utility_gate`)."""
    return train_utility_gate(maps, quality, hidden_size=hidden_size, pooling=pooling, seed=seed, init_std=init_std,
                              epochs=settings.num_train_epochs, batch_size=settings.per_device_train_batch_size,
                              learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
                              max_grad_norm=settings.max_grad_norm)


def evaluate_variants(job_dir: Path, *, levels: list[int], poolings: list[str], hidden_sizes: list[int | None],
                      seeds: int, target_fraction: float, holdout_fraction: float = 0.2, split_seed: int = 0) -> dict:
    from modeling_ecom2f import EcoMask2FormerConfig

    config = EcoMask2FormerConfig.from_pretrained(job_dir / "step1_parent")
    derived, info = load_derived_dataset(job_dir / "step2_derived")
    exits = list(config.exit_layers)
    quality = quality_matrix(derived, exits, column=info.get("quality", "pq"))  # (N_train, num_exits)
    per_exit = load_per_exit_counts(job_dir / "evaluation" / PER_EXIT_COUNTS_FILE)
    counts = per_exit["counts"]  # (num_exits, N_val, 4, num_categories)

    def validation_pq(depths: np.ndarray) -> float:
        chosen = np.searchsorted(np.asarray(per_exit["exits"]), depths)
        summed = counts[chosen, np.arange(len(depths))].sum(axis=0)
        return 100 * panoptic_from_counts(summed, per_exit["category_ids"], per_exit["thing_ids"])["pq"]

    full = validation_pq(np.full(counts.shape[1], exits[-1]))
    start = time.perf_counter()
    maps = cache_maps(job_dir)
    cache_seconds = time.perf_counter() - start
    train_idx, holdout_idx = holdout_split(len(quality), holdout_fraction, split_seed)
    settings = build_train_gate_parser().parse_args(["--derived_dataset", "-"])
    rows = []
    for level, pooling, hidden in itertools.product(levels, poolings, hidden_sizes):
        runs = []
        for seed in range(seeds):
            gate = train_variant(maps["train"][level][train_idx], quality[train_idx], pooling=pooling,
                                 hidden_size=hidden, seed=seed, settings=settings, init_std=config.init_std)
            held, val = predict(gate, maps["train"][level][holdout_idx]), predict(gate, maps["validation"][level])
            beta, fraction = calibrate_beta(held, exits, target_fraction=target_fraction)
            depths = utility_depths(held, exits, beta)
            held_pq = 100 * quality[holdout_idx][np.arange(len(depths)), np.searchsorted(exits, depths)].mean()
            val_depths = utility_depths(val, exits, beta)
            runs.append({"seed": seed, "beta": beta, "holdout_pq": float(held_pq), "holdout_fraction": fraction,
                         "validation_gap": validation_pq(val_depths) - full,
                         "validation_fraction": float(val_depths.mean() / exits[-1])})
        rows.append({"input_level": level, "pooling": pooling, "hidden_size": hidden, "runs": runs,
                     **{f"mean_{key}": float(np.mean([r[key] for r in runs]))
                        for key in ("holdout_pq", "validation_gap", "validation_fraction")},
                     "std_validation_gap": float(np.std([r["validation_gap"] for r in runs]))})
        print(f"level {level} {pooling:8s} hidden {hidden}: held-out PQ {rows[-1]['mean_holdout_pq']:.2f}, "
              f"validation {rows[-1]['mean_validation_gap']:+.2f} at {rows[-1]['mean_validation_fraction']:.3f}",
              flush=True)
    best = max(rows, key=lambda r: r["mean_holdout_pq"])
    return {"job_dir": str(job_dir), "exits": exits, "full_depth_validation_pq": full,
            "target_encoder_fraction": target_fraction, "seeds": seeds, "holdout_images": int(len(holdout_idx)),
            "train_images": int(len(train_idx)), "validation_images": int(counts.shape[1]),
            "optimiser": {k: getattr(settings, k) for k in ("learning_rate", "weight_decay", "num_train_epochs",
                                                             "per_device_train_batch_size", "max_grad_norm")},
            "cache_seconds": round(cache_seconds, 1), "variants": rows,
            "selected": {k: best[k] for k in ("input_level", "pooling", "hidden_size")}}


def markdown(result: dict, command: str) -> str:
    lines = [f"# Utility-gate variants on `{result['job_dir']}`", "",
             f"Command: `{command}`", "",
             f"Selection: mean per-image PQ of the gate's choices on {result['holdout_images']} held-out training "
             f"images at the beta calibrated to {result['target_encoder_fraction']:.0%} of the encoder, over "
             f"{result['seeds']} seeds (trained on {result['train_images']} images). The validation columns "
             f"({result['validation_images']} images; full depth {result['full_depth_validation_pq']:.2f} PQ) are for "
             "reference only.", "",
             "| level | pooling | hidden | held-out PQ (selection) | validation PQ - full (mean +- std) | "
             "validation encoder fraction |", "|---|---|---|---|---|---|"]
    for row in sorted(result["variants"], key=lambda r: -r["mean_holdout_pq"]):
        chosen = " **(selected)**" if all(row[k] == result["selected"][k] for k in result["selected"]) else ""
        lines.append(f"| {row['input_level']} | {row['pooling']} | {row['hidden_size'] or '-'} | "
                     f"{row['mean_holdout_pq']:.2f}{chosen} | {row['mean_validation_gap']:+.2f} +- "
                     f"{row['std_validation_gap']:.2f} | {row['mean_validation_fraction']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job_dir", default="outputs/main_job", help="a finished main job's --output_dir")
    parser.add_argument("--out", default=None, help="output path without suffix (default: JOB_DIR/gate_variants)")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--poolings", nargs="+", choices=GATE_POOLINGS, default=list(GATE_POOLINGS))
    parser.add_argument("--hidden_sizes", type=int, nargs="+", default=[0, 32, 128], help="0: no hidden layer")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--target_encoder_fraction", type=float, default=0.7)
    parser.add_argument("--num_threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    job_dir = Path(args.job_dir)
    result = evaluate_variants(job_dir, levels=args.levels, poolings=args.poolings,
                               hidden_sizes=[h or None for h in args.hidden_sizes], seeds=args.seeds,
                               target_fraction=args.target_encoder_fraction)
    command = "python benchmarks/gate_variants.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result["command"] = command
    out = Path(args.out) if args.out else job_dir / "gate_variants"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result, command), encoding="utf-8")
    print(f"selected {result['selected']}; wrote {out.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
