"""Depth probe: does each image of a data set need its own encoder depth, and can a gate find it?

Trains a small model with a per-pixel semantic head after every deformable encoder layer (`depth_probe_model`:
this project's encoder layers and deformable attention, exit-weighted loss, every exit trained from one pass) on one
image source (`depth_probe_data`: the project's shapes generator or maze rooms), then on held-out validation images:

- quality per exit (data-set mIoU and mean per-image mIoU), with exit 0 (no encoder layer) as the control;
- pixel accuracy per exit against a per-pixel difficulty (maze: hop distance from the room's marker);
- the per-image gain of the deepest over the shallowest gate exit: spread, Spearman correlation with each per-image
  difficulty column (analysis only: no model or gate input reads difficulty), mean gain per difficulty quintile;
- the oracle and random exits with its depth histogram, against the fixed-exit envelope;
- utility gates of ECO-M2F step 3 (`depth_probe_gate`) trained on per-image gains (of the training images, as the
  recipe does, or of a separate `gate` split), at several encoder budgets, against the fixed-exit envelope and
  their random-routing control with bootstrap standard errors.

Writes `results.json`, `results.md` and `results.png` (with `--tag T`: `resultsT.*`) into `--run_dir`; training is resumable (`checkpoint.pt`) and does
a fixed number of seeded steps.

    python benchmarks/depth_probe.py --source shapes --backbone efficientnet_lite0 --run_dir /tmp/probe_shapes
    python benchmarks/depth_probe.py --source maze --backbone shallow_conv --points 1 --run_dir /tmp/probe_maze
    python benchmarks/depth_probe.py --preset tiny --run_dir /tmp/probe_tiny      # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from depth_probe_analysis import (  # noqa: E402
    accuracy_by_pixel_difficulty,
    dataset_miou,
    difficulty_routing,
    gain_statistics,
    oracle_table,
    per_image_miou,
)
from depth_probe_data import SOURCES, ProbeArrays, make_arrays  # noqa: E402
from depth_probe_gate import evaluate_gate  # noqa: E402
from depth_probe_model import DepthProbe, build_backbone  # noqa: E402
from depth_probe_report import write_report  # noqa: E402
from depth_probe_train import ProbeInputs, ProbeTrainConfig, evaluate_probe, train_probe  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

#: Arguments that define the data, the model and its training: a run directory holds one setting of them.
RUN_KEYS = ("source", "overrides", "size", "num_train", "num_gate", "num_validation", "seed", "backbone",
            "backbone_width", "d_model", "layers", "heads", "points", "ffn", "steps", "batch_size", "learning_rate",
            "weight_decay", "warmup_steps", "exit_weighting")
PRESETS = {"tiny": dict(size=64, num_train=24, num_gate=0, num_validation=16, layers=2, d_model=32, heads=4,
                        ffn=64, steps=6, batch_size=4, warmup_steps=2, checkpoint_every=3, resamples=50,
                        backbone="shallow_conv", backbone_width=16, gate_exits=[1, 2], budgets=[0.6, 0.8])}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named setting (overrides the defaults below)")
    data = parser.add_argument_group("data")
    data.add_argument("--source", choices=SOURCES, default="shapes")
    data.add_argument("--overrides", type=json.loads, default={}, help="JSON knobs of the source's config")
    data.add_argument("--size", type=int, default=128)
    data.add_argument("--num_train", type=int, default=3000)
    data.add_argument("--num_gate", type=int, default=0,
                      help="images of a separate gate split; 0: the gate learns from the training images' gains")
    data.add_argument("--num_validation", type=int, default=500)
    data.add_argument("--seed", type=int, default=0)
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", choices=("efficientnet_lite0", "shallow_conv"), default="efficientnet_lite0")
    model.add_argument("--backbone_width", type=int, default=32)
    model.add_argument("--d_model", type=int, default=64)
    model.add_argument("--layers", type=int, default=6)
    model.add_argument("--heads", type=int, default=8)
    model.add_argument("--points", type=int, default=4)
    model.add_argument("--ffn", type=int, default=256)
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch_size", type=int, default=16)
    train.add_argument("--learning_rate", type=float, default=1e-3)
    train.add_argument("--weight_decay", type=float, default=1e-4)
    train.add_argument("--warmup_steps", type=int, default=100)
    train.add_argument("--exit_weighting", choices=("linear", "uniform"), default="linear")
    train.add_argument("--checkpoint_every", type=int, default=250)
    train.add_argument("--threads", type=int, default=1)
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--gate_exits", type=int, nargs="+", help="exits the gate chooses from (default 2..layers)")
    analysis.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9],
                          help="mean encoder cost targets, fractions of the deepest gate exit")
    analysis.add_argument("--gates", nargs="+", default=["mean", "mean_std", "mean_std:32"],
                          help="gate variants POOLING[:HIDDEN]")
    analysis.add_argument("--resamples", type=int, default=1000)
    analysis.add_argument("--gate_level", type=int, default=0, choices=(0, 1, 2),
                          help="encoder level the gate pools (0 = 1/32, the paper's; 1 = 1/16; 2 = 1/8)")
    analysis.add_argument("--tag", default="", help="suffix of the result files (results{tag}.json/.md/.png)")
    analysis.add_argument("--difficulty_key", help="per-image column for the gain quintiles (default: the first)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset:
        parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    args.gate_exits = args.gate_exits or list(range(min(2, args.layers), args.layers + 1))
    if not all(0 <= k <= args.layers for k in args.gate_exits) or sorted(set(args.gate_exits)) != args.gate_exits:
        parser.error(f"--gate_exits: increasing exits within 0..{args.layers}, got {args.gate_exits}")
    return args


def _arrays(args, split: str, count: int, run_dir: Path) -> ProbeArrays:
    path = run_dir / f"data_{split}.npz"
    if path.exists():
        return ProbeArrays.load(path)
    arrays = make_arrays(source=args.source, split=split, count=count, size=args.size, seed=args.seed,
                         overrides=args.overrides, progress=lambda it: tqdm(it, desc=f"data ({split})"))
    arrays.save(path)
    return arrays


def _check_run_dir(args) -> None:
    args.run_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    path = args.run_dir / "run_settings.json"
    if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(settings)):
        raise SystemExit(f"{args.run_dir} holds a run with other settings ({path}); use another --run_dir")
    path.write_text(json.dumps(settings, indent=2))


def _gate_variants(specs: list[str]) -> list[tuple[str, int | None]]:
    variants = []
    for spec in specs:
        pooling, _, hidden = spec.partition(":")
        variants.append((pooling, int(hidden) if hidden else None))
    return variants


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    _check_run_dir(args)
    train = _arrays(args, "train", args.num_train, args.run_dir)
    validation = _arrays(args, "validation", args.num_validation, args.run_dir)
    gate_split = _arrays(args, "gate", args.num_gate, args.run_dir) if args.num_gate else train
    backbone = build_backbone(args.backbone, width=args.backbone_width)
    frozen = args.backbone == "efficientnet_lite0"
    num_classes = len(train.class_names)
    probe = DepthProbe(in_channels=tuple(backbone.channels), num_classes=num_classes, d_model=args.d_model,
                       num_layers=args.layers, num_heads=args.heads, n_points=args.points, ffn_dim=args.ffn)
    bar = lambda it: tqdm(it, desc="backbone features")  # noqa: E731
    train_inputs = ProbeInputs(images=train.images, backbone=backbone, frozen=frozen, progress=bar)
    config = ProbeTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                              weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, seed=args.seed,
                              exit_weighting=args.exit_weighting, checkpoint_every=args.checkpoint_every)
    training = train_probe(probe=probe, inputs=train_inputs, labels=train.labels, config=config, run_dir=args.run_dir,
                           progress=lambda **kw: tqdm(**kw))
    trained_seconds = time.perf_counter() - start

    def evaluate(arrays: ProbeArrays, inputs: ProbeInputs | None, name: str):
        inputs = inputs or ProbeInputs(images=arrays.images, backbone=backbone, frozen=frozen, progress=bar)
        return evaluate_probe(probe=probe, inputs=inputs, labels=arrays.labels,
                              pixel_difficulty=arrays.pixel_difficulty, num_classes=num_classes,
                              gate_level=args.gate_level,
                              progress=lambda it: tqdm(it, desc=f"evaluation ({name})"))

    val_eval = evaluate(validation, None, "validation")
    gate_eval = evaluate(gate_split, train_inputs if gate_split is train else None, "gate images")
    val_quality, gate_quality = per_image_miou(val_eval.confusion), per_image_miou(gate_eval.confusion)
    np.savez_compressed(args.run_dir / f"per_image{args.tag}.npz", validation_quality=val_quality, gate_quality=gate_quality,
                        validation_gate_maps=val_eval.gate_maps,
                        **{f"difficulty__{k}": v for k, v in validation.difficulty.items()})
    columns = list(args.gate_exits)  # exit k is column k (column 0 = the 0-layer control)
    gain = val_quality[:, columns[-1]] - val_quality[:, columns[0]]
    betas = [0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03]
    gates = {}
    for pooling, hidden in _gate_variants(args.gates):
        name = pooling + (f", hidden {hidden}" if hidden else "")
        gates[name] = evaluate_gate(train_maps=gate_eval.gate_maps, train_quality=gate_quality[:, columns],
                                    eval_maps=val_eval.gate_maps, eval_quality=val_quality[:, columns],
                                    exits=columns, budgets=args.budgets, hidden_size=hidden, pooling=pooling,
                                    resamples=args.resamples, seed=args.seed)
    pixel_accuracy = accuracy_by_pixel_difficulty(val_eval.pixel_correct, val_eval.pixel_total)
    result = {
        "settings": {**{k: getattr(args, k) for k in RUN_KEYS}, "gate_exits": columns, "budgets": args.budgets,
                     "resamples": args.resamples, "threads": args.threads, "gate_level": args.gate_level},
        "training": {**training, "config": asdict(config), "seconds": round(trained_seconds, 1)},
        "class_names": train.class_names,
        "exits": list(range(args.layers + 1)),
        "dataset_miou": dataset_miou(val_eval.confusion).tolist(),
        "mean_image_miou": val_quality.mean(0).tolist(),
        "gate_images_mean_image_miou": gate_quality.mean(0).tolist(),
        "pixel_accuracy_by_difficulty": {
            "counts": val_eval.pixel_total.sum((0, 1)).tolist(),
            "accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in pixel_accuracy]},
        "gain": {"definition": f"per-image mIoU at exit {columns[-1]} minus exit {columns[0]}",
                 **gain_statistics(gain, validation.difficulty, by=args.difficulty_key)},
        "oracle": oracle_table(val_quality[:, columns], columns, betas),
        "difficulty_routing": _difficulty_routing(val_quality[:, columns], columns, validation.difficulty, args),
        "gates": gates,
        "seconds": round(time.perf_counter() - start, 1),
    }
    result["go"] = go_decision(result)
    (args.run_dir / f"results{args.tag}.json").write_text(json.dumps(result, indent=2))
    write_report(result, validation=validation, val_quality=val_quality, run_dir=args.run_dir, tag=args.tag)
    return result


def _difficulty_routing(quality: np.ndarray, columns: list[int], difficulty: dict, args) -> dict | None:
    name = args.difficulty_key or next(iter(difficulty), None)
    if name is None:
        return None
    result = difficulty_routing(quality, columns, difficulty[name], resamples=min(args.resamples, 300),
                                seed=args.seed)
    return {"column": name, "best": result["best"], "hard_images": result["hard_images"],
            "passing_pairs": int(sum(r["passes"] for r in result["pairs"]))}


def go_decision(result: dict) -> dict:
    """The pilot's go criterion: deepest gate exit >= 1 point above the shallowest (mean per-image mIoU) and one
    gate variant above both the envelope and its random control by > 2 standard errors at >= 2 budgets."""
    columns = result["settings"]["gate_exits"]
    quality = result["mean_image_miou"]
    depth_gain = 100 * (quality[columns[-1]] - quality[columns[0]])
    best = max(result["gates"].items(), key=lambda item: item[1]["passing_budgets"])
    return {"depth_gain_points": depth_gain, "depth_gain_ok": depth_gain >= 1.0, "best_gate": best[0],
            "passing_budgets": best[1]["passing_budgets"], "gate_ok": best[1]["passing_budgets"] >= 2,
            "go": bool(depth_gain >= 1.0 and best[1]["passing_budgets"] >= 2)}


def main(argv: list[str] | None = None) -> None:
    result = run(parse_args(argv))
    go = result["go"]
    print(f"depth gain {go['depth_gain_points']:+.2f} points; best gate {go['best_gate']!r} passes at "
          f"{go['passing_budgets']} budgets -> {'GO' if go['go'] else 'NO-GO'}")


if __name__ == "__main__":
    main()
