"""ECO-M2F step 2 (the per-image quality at every exit) from one pass per batch vs one forward per exit.

The one pass (`EcoMask2FormerForUniversalSegmentation.forward_exits`) runs the backbone, input projections and
encoder layers 1..k once and the FPN + transformer decoder per exit; the baseline runs a full forward per exit, as
step 2 did before. Both feed the same post-processing and per-image PQ (`evaluation.BatchEvaluator`), so the table
shows the model time and the whole step's time. Per-image PQ must be identical between the two (checked). The two
are interleaved round-robin over `--repeats` rounds; medians are reported. Not a test.

    python benchmarks/benchmark_step2.py --model examples/parents/depth_benchmark --images 96

Writes `step2_one_pass.json` and `step2_one_pass.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


from modeling_ecom2f.data import depth_benchmark_config, make_synthetic_panoptic_dataset  # noqa: E402
from modeling_ecom2f.recipe.arguments import build_evaluate_parser  # noqa: E402
from modeling_ecom2f.recipe.data import inference_dataloader  # noqa: E402
from modeling_ecom2f.recipe.segmentation_evaluation import BatchEvaluator, forward_at_depth  # noqa: E402
from modeling_ecom2f.recipe.runtime import make_accelerator  # noqa: E402
from modeling_ecom2f.recipe.tasks import get_task  # noqa: E402


def run(model, batches, evaluator, accelerator, exits, *, one_pass: bool) -> tuple[float, float, list]:
    """(model seconds, total seconds, per-image PQ rows) of step 2's work on `batches`."""
    model_s = total_s = 0.0
    rows = []
    for batch in batches:
        start = time.perf_counter()
        if one_pass:
            with torch.no_grad():
                outputs = list(model.forward_exits(batch["pixel_values"], pixel_mask=batch["pixel_mask"], exits=exits))
        else:
            outputs = [(k, forward_at_depth(model, batch, accelerator, k)) for k in exits]
        model_s += time.perf_counter() - start
        per_exit = [[r.pq for r in evaluator.records(out, batch, gate=False)] for _, out in outputs]
        total_s += time.perf_counter() - start
        rows.extend(zip(*per_exit))
    return model_s, total_s, rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="examples/parents/depth_benchmark")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--image_size", type=int, default=128, help="the benchmark's image size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task("segmentation")
    model = task.load_trained_model(args.model)
    size = args.image_size
    splits, label_info = make_synthetic_panoptic_dataset(config=depth_benchmark_config(
        height=size, width=size, num_train_images=args.images, num_validation_images=0, seed=0))
    eargs = build_evaluate_parser().parse_args(["--model_name_or_path", args.model, "--output_dir", str(args.out)])
    accelerator = make_accelerator(eargs, project_name="bench_step2")
    processor = task.build_image_processor(image_size=size, model_dir=args.model)
    evaluator = BatchEvaluator(model=model, processor=processor, label_info=label_info, args=eargs, with_ap=False,
                               with_miou=False, with_gflops=False)
    batches = list(inference_dataloader(splits["train"], label_info, processor, indices=list(range(args.images)),
                                        batch_size=args.batch))
    exits = list(model.config.exit_layers)
    run(model, batches[:1], evaluator, accelerator, exits, one_pass=True)  # warm-up
    times = {"one pass": ([], []), "one forward per exit": ([], [])}
    reference = None
    for _ in range(args.repeats):
        for name, one_pass in (("one pass", True), ("one forward per exit", False)):
            model_s, total_s, rows = run(model, batches, evaluator, accelerator, exits, one_pass=one_pass)
            times[name][0].append(model_s)
            times[name][1].append(total_s)
            if reference is None:
                reference = rows
            elif rows != reference:
                raise SystemExit(f"{name}: per-image PQ differs from the other method")
    medians = {name: (statistics.median(m), statistics.median(t)) for name, (m, t) in times.items()}
    base_model, base_total = medians["one forward per exit"]
    result = {
        "command": "python benchmarks/benchmark_step2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model, "images": args.images, "image_size": size, "exits": exits, "batch": args.batch,
        "threads": args.threads, "repeats": args.repeats, "per_image_pq_identical": True,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "rows": [{"method": name, "model_s_per_image": m / args.images, "step_s_per_image": t / args.images,
                  "model_speedup": base_model / m, "step_speedup": base_total / t}
                 for name, (m, t) in medians.items()],
    }
    lines = [f"# Step 2 from one pass vs one forward per exit ({args.images} images {size}x{size}, exits {exits}, "
             f"batch {args.batch}, {args.threads} thread(s), median of {args.repeats})", "",
             "Per-image PQ identical between the two: yes.", "",
             "| method | model s / image | step 2 s / image (model + post-processing + PQ) | model speed-up | "
             "step speed-up |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['model_s_per_image']:.4f} | {row['step_s_per_image']:.4f} | "
                     f"{row['model_speedup']:.2f}x | {row['step_speedup']:.2f}x |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step2_one_pass.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (args.out / "step2_one_pass.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
