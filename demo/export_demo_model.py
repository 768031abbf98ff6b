"""Re-export the demo's shipped model and example images from the main job's Hub folder.

    python examples/run_eco_m2f.py                  # the main job (maze rooms): writes outputs/main_job/hub_folder
    python demo/export_demo_model.py                # -> demo/model (weights, config, card) and demo/examples

The model is the main job's utility-gate model on the default benchmark, maze rooms (a few MB): there the gate's
depth depends on the image (a one-room maze needs no encoder layer, four rooms need most), so the page's budget acts
per image. `--benchmark shapes` exports the main job on shapes instead (run it with `--benchmark shapes`), where every
exit gives the same quality and the gate decides alike for every image. The Hub folder also holds the
model's custom code for `trust_remote_code`; the demo runs with this project installed, so the copy keeps only the
weights, the configuration and the image processor (both without `auto_map`, which would point at code files the
copy does not have and make `pipeline(...)` ask to run remote code), the evaluation results and the trade-off
plot, and writes a README and SHA256SUMS. The examples are validation images of the same benchmark (never trained on) at spread difficulties. Rerun both commands when the
benchmark or the recipe changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from modeling_ecom2f.data import maze_benchmark_config, render_maze_rooms_sample, render_synthetic_sample
from modeling_ecom2f.data.synthetic_config import depth_benchmark_config
from modeling_ecom2f.experiments.presets import BENCHMARKS, DEFAULT_BENCHMARK

from demo_engine import BETA_SLIDER  # this folder (the script's own) is on sys.path

HERE = Path(__file__).resolve().parent
CODE_FREE = ("config.json", "preprocessor_config.json")
"""Copied without their `auto_map`: this folder holds no code, so an `auto_map` would make transformers prompt for
`trust_remote_code`; `import modeling_ecom2f` registers the classes instead."""
COPIED = ("model.safetensors", "ecom2f_eval_results.json", "pq_gflops_tradeoff.png")
DIFFICULTIES = (0.05, 0.35, 0.65, 0.95)
"""Targets for the shapes examples' drawn difficulty (camouflage and noise grow with it)."""


def main_job(benchmark: str) -> tuple[str, str]:
    """`(command, Hub folder)` of the main job on `benchmark` (the pipeline's naming: a benchmark other than
    the default adds `--benchmark NAME` and its name to the output folder)."""
    suffix = "" if benchmark == DEFAULT_BENCHMARK else f"_{benchmark}"
    command = "python examples/run_eco_m2f.py" + (f" --benchmark {benchmark}" if suffix else "")
    return command, f"outputs/main_job{suffix}/hub_folder"


def copy_model(export: Path, out: Path, *, command: str) -> dict:
    """Copy the export's files the demo needs; returns the model's config as written."""
    missing = [name for name in (*CODE_FREE, COPIED[0]) if not (export / name).is_file()]
    if missing:
        raise SystemExit(f"{export} is not a complete Hub folder (missing {missing}); run the main job first: "
                         f"{command}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in CODE_FREE:
        data = json.loads((export / name).read_text(encoding="utf-8"))
        data.pop("auto_map", None)
        (out / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in COPIED:
        if (export / name).is_file():
            shutil.copy2(export / name, out / name)
    return json.loads((out / "config.json").read_text(encoding="utf-8"))


def render_examples(out: Path, *, benchmark: str, search: int, seed: int) -> list[dict]:
    """Write four validation images of the benchmark (never trained on): on shapes the closest to each target
    difficulty, on maze rooms the one with the most hops for each number of rooms (1-4), among the first `search`."""
    if benchmark == "maze":
        config = maze_benchmark_config(seed=seed)
        samples = [render_maze_rooms_sample(config=config, split="validation", index=i) for i in range(search)]
        rooms = np.array([s.difficulty["rooms"] for s in samples])
        hops = np.array([s.difficulty["hops"] for s in samples])
        picks = []
        for count in np.unique(rooms):  # per number of rooms, the image with the most hops
            candidates = np.flatnonzero(rooms == count)
            picks.append(int(candidates[hops[candidates].argmax()]))
        names = [f"rooms_{rooms[i]}_hops_{hops[i]}_validation_{i:03d}.png" for i in picks]
        described = [{"rooms": int(rooms[i]), "hops": int(hops[i])} for i in picks]
    else:
        config = depth_benchmark_config(seed=seed)
        samples = [render_synthetic_sample(config=config, split="validation", index=i) for i in range(search)]
        drawn = np.array([s.difficulty["difficulty"] for s in samples])
        picks = [int(np.abs(drawn - target).argmin()) for target in DIFFICULTIES]
        names = [f"difficulty_{drawn[i]:.2f}_validation_{i:03d}.png" for i in picks]
        described = [{"difficulty": round(float(drawn[i]), 3)} for i in picks]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for index, name, columns in zip(picks, names, described):
        Image.fromarray(samples[index].image).save(out / name)
        written.append({"file": name, "index": index, **columns})
    return written


def write_checksums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(folder.iterdir()) if p.is_file() and p.name not in ("SHA256SUMS", "README.md")]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def gate_decisions(model_dir: Path, examples_dir: Path, examples: list[dict]) -> list[str]:
    """Per example image: the depth the utility gate picks as beta moves along the page's slider, as readable lines."""
    import torch

    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerImageProcessor
    from modeling_ecom2f.recipe.routing import utility_depths

    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(model_dir).eval()
    if not model.config.gate_trained or model.config.gate_objective != "utility":
        return ["- the model has no trained utility gate: beta does not apply"]
    processor = EcoMask2FormerImageProcessor.from_pretrained(model_dir)
    images = [np.asarray(Image.open(examples_dir / e["file"]).convert("RGB")) for e in examples]
    with torch.inference_mode():
        predicted = model(**processor(images=images, return_tensors="pt"), output_gate_logits=True).gate_logits
    low, high, step = BETA_SLIDER
    betas = np.round(np.arange(low, high + step / 2, step), 6)  # the slider's positions
    lines = []
    for example, gains in zip(examples, predicted.float().numpy()):
        depths = np.array([utility_depths(gains[None], model.config.exit_layers, b)[0] for b in betas])
        changes = [f"exit {depths[0]} from beta 0"] + [f"exit {depths[i]} from beta {betas[i]:.5f}"
                                                       for i in range(1, len(betas)) if depths[i] != depths[i - 1]]
        lines.append(f"- `{example['file']}`: " + ", ".join(changes))
    if len({line.split(": ", 1)[1] for line in lines}) == 1 and len(lines) > 1:
        lines.append("\nThe gate decides the same for every example: on this benchmark its depth depends on beta, not "
                     "on the image (the exits give about the same PQ, see the table above, so it learnt no per-image "
                     "gain).")
    else:
        lines.append("\nThe gate decides per image: at the same beta, examples get different depths.")
    return lines


def write_readme(out: Path, *, benchmark: str, config: dict, export: Path, examples: list[dict],
                 gate_lines: list[str]) -> None:
    results_file = out / "ecom2f_eval_results.json"
    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.is_file() else {}
    rows = [f"| exit {e['depth']} | {e['pq']:.2f} | {e['gflops']:.4f} |" for e in results.get("exits", [])]
    if "gate" in results:
        gate = results["gate"]
        rows.append(f"| utility gate at beta {config.get('gate_beta', 0):g} (mean depth {gate['mean_depth']:.2f}) | "
                    f"{gate['pq']:.2f} | {gate['gflops']:.4f} |")
    example_lines = [f"- `{e['file']}`: validation image {e['index']}, "
                     + ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("file", "index")) for e in examples]
    text = f"""# The demo's model: the main job's utility-gate EcoMask2Former

A small gated EcoMask2Former (Swin `swin-mini` backbone, 6 deformable encoder layers with exits
{config.get('exit_layers')}, a `{config.get('gate_objective')}` gate with `gate_pooling="{config.get('gate_pooling')}"`,
hidden size {config.get('gate_hidden_size')}; 128x128 synthetic images, {len(config.get('id2label', {}))} classes)
so that a fresh clone runs `python demo/app.py` with no training.

How it was made: `{main_job(benchmark)[0]}` (the main job on {BENCHMARKS[benchmark].title}: the shipped parent fine-tuned
for 100 steps, step 2, the utility gate of step 3, evaluation on 600 validation images), then
`python demo/export_demo_model.py --benchmark {benchmark}`, which copied the weights, configuration and image
processor (without `auto_map`: the custom-code files of the Hub folder are not kept, `import modeling_ecom2f`
registers the classes), evaluation results and plot
from `{export}`, rendered the example images (`demo/examples/`) and wrote `SHA256SUMS`
(`sha256sum -c SHA256SUMS` in this folder checks them).

Main job evaluation (600 validation images; GFLOPs per image at 128x128):

| mode | PQ | GFLOPs |
|---|---|---|
{chr(10).join(rows)}

What the gate decides on the example images as beta grows (measured by this script at every position of the demo's
beta slider, {BETA_SLIDER[0]:g} to {BETA_SLIDER[1]:g} in steps of {BETA_SLIDER[2]:g}):

{chr(10).join(gate_lines)}

Example images (`demo/examples/`, the validation split of {BENCHMARKS[benchmark].title}, seed 0, never trained on):

{chr(10).join(example_lines)}
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default=DEFAULT_BENCHMARK,
                        help="whose main job the model comes from, and whose validation images are the examples")
    parser.add_argument("--export", default=None, help="the main job's Hub folder (default: that benchmark's)")
    parser.add_argument("--out", default=str(HERE / "model"))
    parser.add_argument("--examples_out", default=str(HERE / "examples"))
    parser.add_argument("--search", type=int, default=120, help="validation images searched for the examples")
    parser.add_argument("--seed", type=int, default=0, help="the benchmark's seed (the main job's default)")
    args = parser.parse_args()
    command, default_export = main_job(args.benchmark)
    export = Path(args.export or default_export)
    out, examples_out = Path(args.out), Path(args.examples_out)
    config = copy_model(export, out, command=command)
    examples = render_examples(examples_out, benchmark=args.benchmark, search=args.search, seed=args.seed)
    write_readme(out, benchmark=args.benchmark, config=config, export=export, examples=examples,
                 gate_lines=gate_decisions(out, examples_out, examples))
    write_checksums(out)
    write_checksums(examples_out)
    print(f"model -> {out}, {len(examples)} examples -> {examples_out}")


if __name__ == "__main__":
    main()
