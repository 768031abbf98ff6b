"""One accuracy study of stock Mask2Former, ECO-M2F, PRO-SCALE (with its TRC/LPE ablations and a lighter stage
setting) and the combined model, all trained the same way on the same data and evaluated on the same validation
images.

Mode `fine_tuned` (the default): every variant starts from the shipped parent (`examples/parents/depth_benchmark/`,
an EcoMask2Former trained with this project's step-1 script) and is fine-tuned with the same data, schedule, seed and
batch size:

- `stock`: full depth only (`exit_layers=[6]`): mathematically the stock Mask2Former;
- `eco`: ECO-M2F step 1 (a depth sampled from exits 2..6 each step, loss weighted by depth), then step 2 (derived
  set) and step 3 (the utility gate, arXiv 2404.15244 step 3 with a regression objective);
- `proscale_*`: PRO-SCALE (arXiv 2404.14657) stages `(p1, p2, p3)` at full depth, with/without TRC and LPE;
- `combined`: PRO-SCALE (3,3,3)+TRC+LPE trained with ECO-M2F exits, then steps 2 and 3.

PRO-SCALE (3,3,3) has 9 encoder layers where the parent has 6: its layers are warm-started from the parent's (layer
`i` of `L` takes parent layer `floor(i * 6 / L)`; a layer that sees fewer levels takes the parent's sampling offsets
and attention weights of the coarsest levels), so every variant starts from the same weights where shapes allow; TRC
and LPE start from their own initialisation.

Mode `from_scratch`: PRO-SCALE (3,3,3)+TRC+LPE and the combined model trained from scratch by exactly the command of
the shipped parent (`examples/train_benchmark_parent.py`, only the encoder flags differ; see
`accuracy_study_scratch.py`), evaluated with the shipped parent at full depth on the same validation images; the
combined model then runs steps 2-3 like the fine-tuned gated variants. Its rows are merged into the same
`accuracy_study.{json,md,png}` (every row says its `training`); the other mode's rows are kept as they are.

Every step does a fixed amount of work, so the quality figures do not depend on the machine's speed (latency ratios
do, measured interleaved in one process at the end, against the stock transformers Mask2Former of the same run).

    python benchmarks/accuracy_study.py                      # the committed study (docs/accuracy_study.*)
    python benchmarks/accuracy_study.py --mode from_scratch  # + the from-scratch rows (shipped weights if present)
    python benchmarks/accuracy_study.py --preset tiny --output_dir /tmp/study --docs_dir ''   # a smoke run

Variants run as subprocesses (`--jobs` at a time, one CPU thread each); a rerun skips finished stages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path


from accuracy_study_variants import (  # noqa: E402  (the benchmarks folder is on the path above)
    GATE_BETAS,
    MODES,
    PRESETS,
    TARGET_ENCODER_FRACTION,
    Preset,
    Variant,
    baseline_name,
    variant_pool,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--mode", choices=MODES, default="fine_tuned",
                        help="fine_tuned: from the shipped parent; from_scratch: the parent's own command and schedule")
    parser.add_argument("--output_dir", default=None,
                        help="default: outputs/accuracy_study (outputs/accuracy_study_scratch for from_scratch)")
    parser.add_argument("--docs_dir", default=None,
                        help="also write accuracy_study.{md,json} and accuracy_study.png here (default: docs for the "
                             "default preset; '' disables); rows of the other mode already there are kept")
    parser.add_argument("--variants", nargs="*", default=None, help="subset of the variant names (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at the same time (one thread each)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's fine-tuning steps")
    parser.add_argument("--scratch_runs_dir", default=None,
                        help="from_scratch: train (or resume, or reuse) each variant in DIR/<name> with the data in "
                             "DIR/parent_data instead of using the shipped weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def variant_named(name: str, *, preset: str, mode: str = "fine_tuned") -> Variant:
    """The variant `name` of the preset's own list (the tiny preset's variants share names with the default's)."""
    pool = {v.name: v for v in variant_pool(preset=preset, mode=mode)}
    if name not in pool:
        raise SystemExit(f"unknown variant {name!r} for preset {preset!r}; choose from {sorted(pool)}")
    return pool[name]


def variants_of(args) -> list[Variant]:
    pool = variant_pool(preset=args.preset, mode=args.mode)
    if not args.variants:
        return list(pool)
    known = {v.name: v for v in pool}
    unknown = sorted(set(args.variants) - set(known))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {sorted(known)}")
    chosen = [known[n] for n in args.variants]
    base = baseline_name(pool)
    if base not in args.variants:
        chosen.append(known[base])  # every ratio is against the stock-architecture variant
    return chosen


# ----------------------------------------------------------------------------------------------------------- data
def make_data(preset: Preset, root: Path, seed: int) -> Path:
    from modeling_ecom2f.data import (
        depth_benchmark_config,
        make_synthetic_panoptic_dataset,
    )

    folder = root / "data"
    if (folder / "dataset_dict.json").is_file():
        return folder
    config = depth_benchmark_config(height=preset.image_size, width=preset.image_size,
                                    num_train_images=preset.train_images,
                                    num_validation_images=preset.validation_images, seed=seed)
    splits, label_info = make_synthetic_panoptic_dataset(config=config)
    if preset.parent is None:
        make_tiny_parent(root / "tiny_parent", label_info, seed)
    splits.save_to_disk(str(folder))
    return folder


def common_argv(preset: Preset, data: Path, seed: int) -> list[str]:
    return ["--dataset", "disk", "--dataset_path", str(data), "--seed", str(seed), "--image_size",
            str(preset.image_size), "--per_device_eval_batch_size", "16", "--num_threads", "1"]


# ------------------------------------------------------------------------------------------------------ warm start
def warm_start(model, parent_state: dict, parent_layers: int, source_of=None) -> int:
    """Copy the parent's encoder layers into `model`'s (layer i of L <- parent layer floor(i * parent_layers / L)),
    slicing the per-level sampling offsets and attention weights to the coarsest levels a PRO-SCALE layer sees
    (levels are ordered coarse to fine). Returns the number of tensors copied."""
    import torch

    prefix = "model.pixel_level_module.decoder.encoder.layers."
    layers = model.config.encoder_layers
    heads, points = model.config.num_attention_heads, model.config.encoder_n_points
    own = model.state_dict()
    copied = 0
    with torch.no_grad():
        for i in range(layers):
            source = source_of(i) if source_of else i * parent_layers // layers
            for name, tensor in own.items():
                if not name.startswith(f"{prefix}{i}."):
                    continue
                key = f"{prefix}{source}." + name[len(f"{prefix}{i}."):]
                if key not in parent_state:
                    continue
                value = parent_state[key]
                if value.shape != tensor.shape and (".sampling_offsets." in name or ".attention_weights." in name):
                    per = 2 if ".sampling_offsets." in name else 1
                    parent_levels = value.shape[0] // (heads * points * per)
                    levels = tensor.shape[0] // (heads * points * per)
                    # (heads * levels * points * per, ...) -> keep the first `levels` levels of every head
                    value = value.reshape(heads, parent_levels, points * per, *value.shape[1:])[:, :levels]
                    value = value.reshape(tensor.shape)
                if value.shape == tensor.shape:
                    tensor.copy_(value)
                    copied += 1
    return copied


def initial_model(variant: Variant, preset: Preset, folder: Path, data: Path, seed: int) -> Path:
    """The variant's starting weights, saved to `folder` (from the parent, or a fresh tiny model)."""
    import torch
    from safetensors.torch import load_file

    from modeling_ecom2f.recipe.modeling import load_model

    if (folder / "model.safetensors").is_file():
        return folder
    parent = Path(preset.parent) if preset.parent else data.parent / "tiny_parent"
    parent_config = json.loads((parent / "config.json").read_text(encoding="utf-8"))
    torch.manual_seed(seed)
    model = load_model(parent, overrides=variant.overrides(parent_config["encoder_layers"]))
    if variant.stages:
        warm_start(model, load_file(str(parent / "model.safetensors")), parent_config["encoder_layers"])
    model.save_pretrained(folder)
    for name in ("preprocessor_config.json",):
        if (parent / name).is_file():
            shutil.copy(parent / name, folder / name)
    return folder


def make_tiny_parent(folder: Path, label_info, seed: int) -> None:
    """A fresh 3-layer model (random init) standing in for the parent in a smoke run."""
    import torch

    from modeling_ecom2f.modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
    from modeling_ecom2f.recipe.arguments import build_train_early_exit_parser
    from modeling_ecom2f.recipe.modeling import fresh_config

    args = build_train_early_exit_parser().parse_args(
        ["--feature_size", "32", "--encoder_layers", "3", "--decoder_layers", "2", "--num_queries", "10"])
    torch.manual_seed(seed)
    EcoMask2FormerForUniversalSegmentation(fresh_config(args, label_info)).save_pretrained(folder)


# ------------------------------------------------------------------------------------------------------- a variant
def fine_tune(variant: Variant, preset: Preset, root: Path, seed: int, stage) -> tuple[Path, dict]:
    """Step 1 of a fine-tuned variant from its warm-started copy of the parent; returns its folder and provenance."""
    from modeling_ecom2f.recipe.arguments import build_train_early_exit_parser
    from modeling_ecom2f.recipe.early_exit import train_early_exit

    data, folder = root / "data", root / variant.name
    init = initial_model(variant, preset, folder / "init", data, seed)
    train = folder / "train"
    stage("train", train / "model.safetensors", lambda: train_early_exit(build_train_early_exit_parser().parse_args(
        common_argv(preset, data, seed) + [
            "--model_name_or_path", str(init), "--output_dir", str(train), "--per_device_train_batch_size",
            str(preset.batch_size), "--learning_rate", str(preset.learning_rate), "--max_train_steps",
            str(preset.steps), "--checkpointing_steps", str(max(1, preset.steps // 3)), "--logging_steps", "50",
            "--eval_depths"] + (["--resume_from_checkpoint", "latest"] if (train / "checkpoints").is_dir() else []))))
    return train, {"train_folder": str(train)}


def run_variant(variant: Variant, preset: Preset, root: Path, seed: int, *, runs_dir: Path | None = None) -> dict:
    """Train (fine-tune, or from scratch by the parent's command), (derive + gate,) evaluate one variant; every stage
    whose output exists is skipped. Returns its record (also `<variant>/variant.json`)."""
    import torch

    from modeling_ecom2f.recipe.arguments import (
        build_derive_exit_dataset_parser,
        build_evaluate_parser,
        build_train_gate_parser,
    )
    from modeling_ecom2f.recipe.derived import derive_exit_dataset
    from modeling_ecom2f.recipe.evaluation_step import evaluate_model
    from modeling_ecom2f.recipe.gate_training import train_gate

    torch.set_num_threads(1)
    data = root / "data"
    folder = root / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    common = common_argv(preset, data, seed)
    timings: dict[str, float] = {}

    def stage(name: str, done: Path, fn) -> None:
        if done.exists():
            return
        start = time.perf_counter()
        fn()
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"[accuracy_study] {variant.name}: {name} done in {timings[name]:.0f} s", flush=True)

    if variant.training == "from_scratch":
        from accuracy_study_scratch import train_from_scratch

        train, provenance = train_from_scratch(variant, preset, root, stage, runs_dir=runs_dir)
    else:
        train, provenance = fine_tune(variant, preset, root, seed, stage)
    eval_argv = common + ["--model_name_or_path", str(train), "--output_dir", str(folder / "evaluation"), "--no_gate"]
    eval_argv += ["--depths", *map(str, variant.depths)] if variant.depths else []
    model_folder = train
    if variant.gate:
        derived, gate = folder / "derived", folder / "gate_utility"
        stage("derive", derived / "derived_info.json", lambda: derive_exit_dataset(
            build_derive_exit_dataset_parser().parse_args(
                common + ["--model_name_or_path", str(train), "--output_dir", str(derived), "--max_train_samples",
                          str(preset.gate_images), "--betas", "0.003"])))
        stage("gate", gate / "model.safetensors", lambda: train_gate(build_train_gate_parser().parse_args(
            common + ["--model_name_or_path", str(train), "--derived_dataset", str(derived), "--skip_validation",
                      "--max_train_samples", str(preset.gate_images),
                      "--gate_objective", "utility", "--target_encoder_fraction", str(TARGET_ENCODER_FRACTION),
                      "--gate_pooling", "mean_std", "--gate_hidden_size", "32", "--output_dir", str(gate)])))
        calibrated = json.loads((gate / "config.json").read_text(encoding="utf-8"))["gate_beta"]
        betas = sorted({*GATE_BETAS, round(calibrated, 6)})
        eval_argv += ["--gate_models", str(gate), "--gate_betas", *map(str, betas)]
        model_folder = gate  # the step-1 weights plus the trained utility gate
    else:
        calibrated = None
        eval_argv += ["--no_random_routing"]
    stage("evaluate", folder / "evaluation" / "evaluation.json",
          lambda: evaluate_model(build_evaluate_parser().parse_args(eval_argv)))
    record_file = folder / "variant.json"
    previous = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    record = {"variant": asdict(variant), "calibrated_beta": calibrated, "model_folder": str(model_folder),
              **provenance, "timings_s": {**previous.get("timings_s", {}), **timings}}
    record_file.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def run_workers(variants: list[Variant], args, root: Path) -> None:
    """Every variant in its own process (`--jobs` at a time), with a progress bar over finished variants."""
    from tqdm.auto import tqdm

    pending = list(variants)
    running: list[tuple[Variant, subprocess.Popen, object]] = []
    failed = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tqdm(total=len(variants), desc="variants", unit="variant") as bar:
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                variant = pending.pop(0)
                log = open(root / f"{variant.name}.log", "a", encoding="utf-8")
                argv = [sys.executable, __file__, "--worker", variant.name, "--preset", args.preset, "--mode",
                        args.mode, "--output_dir", str(root), "--seed", str(args.seed)]
                argv += ["--steps", str(args.steps)] if args.steps else []
                argv += ["--scratch_runs_dir", args.scratch_runs_dir] if args.scratch_runs_dir else []
                running.append((variant, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log))
            time.sleep(1.0)
            for item in list(running):
                variant, process, log = item
                if process.poll() is None:
                    continue
                running.remove(item)
                log.close()
                bar.update(1)
                bar.set_postfix_str(f"{variant.name}: {'ok' if process.returncode == 0 else 'FAILED'}")
                if process.returncode != 0:
                    failed.append(variant.name)
    if failed:
        raise SystemExit(f"variant(s) {failed} failed: see {root}/<name>.log")


def main(argv: list[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset]
    if args.steps:
        preset = Preset(**{**asdict(preset), "steps": args.steps})
    root = Path(args.output_dir or ("outputs/accuracy_study_scratch" if args.mode == "from_scratch"
                                    else "outputs/accuracy_study"))
    runs_dir = Path(args.scratch_runs_dir) if args.scratch_runs_dir else None
    if args.worker:
        variant = variant_named(args.worker, preset=args.preset, mode=args.mode)
        run_variant(variant, preset, root, args.seed, runs_dir=runs_dir)
        return None
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    make_data(preset, root, args.seed)
    variants = variants_of(args)
    run_workers(variants, args, root)
    from accuracy_study_report import measure_and_report

    docs = args.docs_dir if args.docs_dir is not None else ("docs" if args.preset == "default" else "")
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/accuracy_study.py", *given])
    return measure_and_report(variants=variants, preset=preset, root=root, docs_dir=Path(docs) if docs else None,
                              command=command, start=start, seed=args.seed, training=args.mode)


if __name__ == "__main__":
    main()
