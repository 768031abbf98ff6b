"""The `from_scratch` mode of `accuracy_study.py`: where each from-scratch variant's trained model comes from.

A from-scratch variant is trained by exactly the command that made the shipped parent
(`examples/train_benchmark_parent.py`: its data, seed, batch, steps, learning rate and augmentation), with only the
encoder flags of the variant appended (`Variant.encoder_argv`). Its model folder is, in this order:

1. `<runs_dir>/<name>` when `--scratch_runs_dir` is given (trained or resumed there; the data in
   `<runs_dir>/parent_data`), so runs started by hand with the same command are reused;
2. the shipped folder `examples/parents/<SHIPPED[name]>` when it holds a model (checked against its `SHA256SUMS`),
   so a fresh clone reproduces the evaluation without the training;
3. `<output_dir>/<name>/train`, trained (or resumed from its last checkpoint) by the study.

The parent itself is never retrained by the default preset: it is the shipped folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from accuracy_study_variants import PARENTS, REPO, SHIPPED, TINY_SCRATCH_ARGV, Preset, Variant


def shipped_folder(variant: Variant, preset: Preset) -> Path | None:
    """The verified shipped model of `variant` (None in the tiny preset or when not shipped)."""
    from modeling_ecom2f.experiments.main_job import verify_parent

    if preset.parent is None or variant.name not in SHIPPED:
        return None
    folder = PARENTS / SHIPPED[variant.name]
    if not (folder / "model.safetensors").is_file():
        return None
    verify_parent(folder)  # a changed or corrupt shipped file is an error, not a silent retrain
    return folder


def repo_relative(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (the published files name no checkout)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def train_argv(variant: Variant, preset: Preset, *, train: Path, data: Path) -> list[str]:
    """The arguments of `examples/train_benchmark_parent.py` for `variant` (the tiny preset shrinks the run)."""
    extra = TINY_SCRATCH_ARGV if preset.parent is None else []
    return ["--output_dir", str(train), "--data_dir", str(data), *extra, *variant.encoder_argv()]


def command_line(argv: list[str]) -> str:
    return " ".join(["python examples/train_benchmark_parent.py", *argv])


def train_from_scratch(variant: Variant, preset: Preset, root: Path, stage, *, runs_dir: Path | None) -> tuple[Path, dict]:
    """The trained model folder of `variant` and its provenance (`train_command`, `train_folder`, `shipped`),
    training it with the parent's command when no trained model exists. `stage(name, done, fn)` runs `fn` unless
    `done` exists (timed)."""
    from modeling_ecom2f.experiments import benchmark_parent

    if runs_dir is not None:
        train, data = runs_dir / variant.name, runs_dir / "parent_data"
    else:
        shipped = shipped_folder(variant, preset)
        if shipped is not None:
            return shipped, {"train_command": shipped_command(shipped), "train_folder": repo_relative(shipped),
                             "shipped": True}
        train, data = root / variant.name / "train", root / "parent_data"
    if preset.parent is None:
        data = root / "data"  # the smoke run trains on the study's own tiny images
    argv = train_argv(variant, preset, train=train, data=data)
    resume = ["--resume_from_checkpoint", "latest"] if (train / "checkpoints").is_dir() else []

    def run() -> None:
        summary = benchmark_parent.main(argv + resume)
        if not summary.get("finished"):
            raise SystemExit(f"{variant.name}: training stopped before its last step ({summary.get('completed_steps')})")

    stage("train", train / "model.safetensors", run)
    return train, {"train_command": command_line(argv), "train_folder": str(train), "shipped": False}


def recipe_record(preset: Preset) -> dict:
    """The training recipe every from-scratch model shares (the parent's command), parsed by `train_early_exit.py`'s
    own parser so the summary states what actually ran."""
    from modeling_ecom2f.experiments import benchmark_parent

    from modeling_ecom2f.recipe.arguments import build_train_early_exit_parser

    extra = TINY_SCRATCH_ARGV if preset.parent is None else []
    args = build_train_early_exit_parser().parse_args(
        ["--dataset", "disk", "--dataset_path", "-", "--output_dir", "-", *benchmark_parent.PARENT_ARGS, *extra])
    summary = (f"{args.max_train_steps} steps, batch {args.per_device_train_batch_size}, AdamW lr "
               f"{args.learning_rate:g} with {args.warmup_ratio:.0%} warm-up then {args.lr_scheduler_type}, weight decay "
               f"{args.weight_decay:g}, gradient clipping {args.max_grad_norm:g}, seed {args.seed}, "
               f"{args.num_threads} thread, on " + ("the study's own tiny images" if extra else
                                                    "the parent's own training images (`train_benchmark_parent.py`: "
                                                    "depth benchmark seed 1, 3000 images)"))
    return {"summary": summary, "parent_args": list(benchmark_parent.PARENT_ARGS), "extra_args": extra}


def shipped_command(folder: Path) -> str:
    """The reproduction command of a shipped folder, as its README records it (first `train_benchmark_parent.py`
    line of a code block)."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    found = re.search(r"^python examples/train_benchmark_parent\.py[^\n]*", text, flags=re.MULTILINE)
    return found.group(0).strip() if found else f"(see {folder}/README.md)"


# ------------------------------------------------------------------------------------------- training curves (tqdm)
#: One refresh of the step-1 progress bar with its postfix: `| 1350/5000 [40:06<1:57:46, 1.93s/it, loss=110.2, ...]`.
BAR = re.compile(r"\|\s*(\d+)/(\d+) \[([\d:]+)<[^,\]]*,[^,\]]*, loss=([^,\]]+), lr=([^,\]]+)(?:, depth=(\d+))?\]")


def training_log_rows(log_text: str, *, every: int = 50) -> list[dict]:
    """The logged training curve of a step-1 run from its progress-bar output: step, elapsed, loss (the mean over the
    last `--logging_steps` steps, weighted by depth as trained), learning rate and last sampled depth, every
    `every` steps. The bar shows a step first with the previous postfix, then with its own: the last one wins."""
    rows: dict[int, dict] = {}
    for match in BAR.finditer(log_text):
        step = int(match.group(1))
        if step % every == 0:
            rows[step] = {"step": step, "elapsed": match.group(3), "loss": float(match.group(4)),
                          "lr": float(match.group(5)), "depth": None if match.group(6) is None else int(match.group(6))}
    return [rows[k] for k in sorted(rows)]


def write_training_log(rows: list[dict], path: Path) -> None:
    """`step elapsed loss lr depth` as tab-separated text (the layout of the shipped parent's `training_log.tsv`)."""
    lines = ["step\telapsed\tloss\tlr\tdepth"]
    lines += [f"{r['step']}\t{r['elapsed']}\t{r['loss']:.6g}\t{r['lr']:.6g}\t{'' if r['depth'] is None else r['depth']}"
              for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_training_log(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    out = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        out.append({"step": int(row["step"]), "elapsed": row["elapsed"], "loss": float(row["loss"]),
                    "lr": float(row["lr"]), "depth": int(row["depth"]) if row["depth"] else None})
    return out


#: The files of a shipped model folder that `SHA256SUMS` lists (as `examples/parents/depth_benchmark/`).
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def ship_model(run: Path, log: Path, dest: Path) -> dict[str, str]:
    """Copy a finished step-1 run's model into `dest` (the files of `SHIPPED_FILES`), its training curve from its
    progress-bar output `log` into `training_log.tsv`, and their digests into `SHA256SUMS`; the README is written by
    hand. Returns file name -> SHA-256."""
    import hashlib
    import shutil

    summary = json.loads((run / "train_early_exit_summary.json").read_text(encoding="utf-8"))
    if not summary.get("finished"):
        raise SystemExit(f"{run} has not finished its training (completed {summary.get('completed_steps')} steps)")
    dest.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in SHIPPED_FILES:
        shutil.copyfile(run / name, dest / name)
        digests[name] = hashlib.sha256((dest / name).read_bytes()).hexdigest()
    write_training_log(training_log_rows(log.read_text(encoding="utf-8", errors="replace")), dest / "training_log.tsv")
    (dest / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in digests.items()), encoding="utf-8")
    return digests
