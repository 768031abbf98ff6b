"""Cost of "a batch gives every image what it gets alone" (`modeling_ecom2f.ecom2f_size_groups`).

A Swin-T EcoMask2Former (random weights, `--seed`; full encoder depth) and the stock transformers Mask2Former with the
same weights, `eval()`, `torch.inference_mode()`, every variant interleaved round-robin (`bench_common.interleaved`):

* **same-size batch** (`--batch` images of `--size`, `pixel_mask` all ones, as the image processor gives it):
  `after` = the model as it is (it reads the mask's per-image extents once, finds no padding and takes the one-pass
  path); `before` = the same model with the size check switched off (`size_groups` patched to "no groups"), which is
  the previous code path exactly; `stock` = stock Mask2Former on the same batch.
* **mixed-size batch** (the `--mixed` sizes padded into one batch with its `pixel_mask`): `per size group` = the model
  as it is (each size group runs cropped, outputs padded back); `one by one` = each image alone (batch 1); `padded
  one pass` = the previous behaviour (one pass over the padded batch, padding only masked: per-image results depend on
  the batch, shown for its cost only).

    python benchmarks/benchmark_batching.py --threads 1 --repeats 5 --warmup 1 --size 192x192 \
        --mixed 192x192 192x256 128x224 224x160

Writes `batching.json` and `batching.md` under `--out`. The machine's load average (`os.getloadavg`) is recorded
before and after: on a shared machine wall times include other processes' work. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import bench_common as common
import torch

import modeling_ecom2f.modeling_ecom2f as modeling
from modeling_ecom2f.ecom2f_size_groups import pad_images

DEFAULT_MIXED = ["256x256", "256x384", "192x320", "320x224"]


@contextlib.contextmanager
def size_check_off():
    """The previous code path: no size groups (the forward looks the name up in its module at call time)."""
    original = modeling.size_groups
    modeling.size_groups = lambda pixel_mask, pixel_values: None
    try:
        yield
    finally:
        modeling.size_groups = original


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_timing_arguments(parser, repeats=5, warmup=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=parse_size, default=(256, 256), help="same-size batch images, HxW")
    parser.add_argument("--mixed", nargs="+", default=DEFAULT_MIXED, help="mixed-size batch images, HxW each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    eco, stock = common.build_models(seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    same = torch.randn(args.batch, 3, *args.size, generator=generator)
    ones = torch.ones(args.batch, *args.size, dtype=torch.long)
    mixed_sizes = [parse_size(s) for s in args.mixed]
    images = [torch.randn(3, h, w, generator=generator) for h, w in mixed_sizes]
    mixed, mixed_mask = pad_images(images)
    singles = [(image[None], torch.ones(1, *image.shape[1:], dtype=torch.long)) for image in images]

    def before_same():
        with size_check_off():
            return eco(pixel_values=same, pixel_mask=ones)

    def padded_one_pass():
        with size_check_off():
            return eco(pixel_values=mixed, pixel_mask=mixed_mask)

    runs = {
        ("same-size", "after"): lambda: eco(pixel_values=same, pixel_mask=ones),
        ("same-size", "before"): before_same,
        ("same-size", "stock"): lambda: stock(pixel_values=same, pixel_mask=ones),
        ("mixed-size", "per size group"): lambda: eco(pixel_values=mixed, pixel_mask=mixed_mask),
        ("mixed-size", "one by one"): lambda: [eco(pixel_values=x, pixel_mask=m) for x, m in singles],
        ("mixed-size", "padded one pass"): padded_one_pass,
    }

    def progress(rep, times):
        print(f"round {rep}: " + ", ".join(f"{'/'.join(k)} {w:.0f} ms" for k, (w, _) in times.items()), flush=True)

    with torch.inference_mode():
        timings = common.interleaved(runs, repeats=args.repeats, warmup=args.warmup, after_round=progress)
    load_after = os.getloadavg()

    rows = [{"batch": kind, "variant": variant, **common.latency_stats(timings[(kind, variant)])}
            for kind, variant in runs]
    baseline = {"same-size": "before", "mixed-size": "one by one"}
    for row in rows:
        reference = next(r for r in rows if r["batch"] == row["batch"] and r["variant"] == baseline[row["batch"]])
        row["vs_reference"] = row["median_ms"] / reference["median_ms"]
        row["cpu_vs_reference"] = row["cpu_median_ms"] / reference["cpu_median_ms"]
    result = {
        "model": "Swin-T EcoMask2Former (random weights), full encoder depth; stock Mask2Former with the same weights",
        "same_size": {"batch": args.batch, "size": list(args.size)},
        "mixed_size": {"sizes": [list(s) for s in mixed_sizes], "padded_to": list(mixed.shape[-2:])},
        "repeats": args.repeats, "warmup": args.warmup,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "environment": common.environment(args.threads), "rows": rows,
        "command": "python benchmarks/benchmark_batching.py " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batching.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "batching.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    same, mixed = result["same_size"], result["mixed_size"]
    lines = [
        "# Batches and padding: cost of per-image results",
        "",
        f"{result['model']}; `{result['command']}`; {result['environment']['cpu_model']}, "
        f"{result['environment']['threads']} threads, torch {result['environment']['torch']}, "
        f"{result['environment']['date_utc']}. {result['repeats']} interleaved rounds after {result['warmup']} warm-up.",
        "",
        f"Load average (1, 5, 15 min) before {result['load_average_before']}, after {result['load_average_after']}: "
        "the machine is shared, wall times include other processes' work; compare rows of one table only. With "
        "`--threads 1` the process CPU time is the model's own work, the steadier measure under contention.",
        "",
        f"- same-size: batch {same['batch']} of {same['size'][0]}x{same['size'][1]}, `pixel_mask` all ones; reference "
        "`before` (the size check switched off: the previous code path).",
        f"- mixed-size: {', '.join(f'{h}x{w}' for h, w in mixed['sizes'])} padded to "
        f"{mixed['padded_to'][0]}x{mixed['padded_to'][1]}; reference `one by one` (each image alone). `padded one "
        "pass` is the previous behaviour, whose per-image results depend on the batch.",
        "",
        "| batch | variant | median ms | IQR ms | wall / reference | CPU median ms | CPU / reference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['batch']} | {row['variant']} | {row['median_ms']:.0f} | {row['iqr_ms']:.0f} | "
            f"{row['vs_reference']:.3f} | {row['cpu_median_ms']:.0f} | {row['cpu_vs_reference']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
