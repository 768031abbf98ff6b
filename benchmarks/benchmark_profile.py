"""Where the inference time goes: stock transformers Mask2Former vs ecom2f at full depth, part by part, same run.

Swin-T Mask2Former (`bench_common.swin_t_kwargs`, random weights) and ecom2f holding the same weights, batch 1,
eager, no autograd. Each forward is split with forward hooks into the backbone, the deformable encoder, the rest of
the pixel decoder (input projections, position embeddings, FPN, mask projection), the masked-attention transformer
decoder and the remainder (heads, glue); panoptic post-processing (the image processor's
`post_process_panoptic_segmentation`, the same code for both) is timed after each forward. Rounds interleave the
two models, `--repeats` after `--warmup`; median and IQR per part. Also the fvcore GFLOPs of each part
(`ecom2f_flops.count_gflops`) and what a 2x end-to-end speed-up would require of the parts ecom2f has not changed.

    python benchmarks/benchmark_profile.py --sizes 512 800

Writes `profile.json` and `profile.md` under `--out`. Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import bench_common as common  # noqa: E402
import benchmark_report as report  # noqa: E402
import torch  # noqa: E402

from modeling_ecom2f.ecom2f_flops import count_gflops  # noqa: E402
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor  # noqa: E402

PARTS = {  # part -> module path (inclusive time); "pixel decoder, other" and "other" are differences
    "backbone": "model.pixel_level_module.encoder",
    "pixel decoder": "model.pixel_level_module.decoder",
    "deformable encoder": "model.pixel_level_module.decoder.encoder",
    "transformer decoder": "model.transformer_module",
}
SHOWN = ("backbone", "deformable encoder", "pixel decoder, other", "transformer decoder", "other", "forward",
         "post-processing")


class PartTimer:
    """Inclusive wall time of the `PARTS` modules of one model (pre/post forward hooks)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.elapsed: dict[str, float] = {}
        self._start: dict[str, float] = {}
        for part, path in PARTS.items():
            module = model.get_submodule(path)
            module.register_forward_pre_hook(lambda *_, p=part: self._start.__setitem__(p, time.perf_counter()))
            module.register_forward_hook(lambda *_, p=part: self.elapsed.__setitem__(
                p, self.elapsed.get(p, 0.0) + time.perf_counter() - self._start[p]))


def run_once(model, timer: PartTimer, processor, x: torch.Tensor, size: int, **forward_kwargs) -> dict[str, float]:
    """One forward `model(pixel_values=x, **forward_kwargs)` and its panoptic post-processing: ms per `SHOWN` part."""
    timer.elapsed.clear()
    start = time.perf_counter()
    outputs = model(pixel_values=x, **forward_kwargs)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    processor.post_process_panoptic_segmentation(outputs, target_sizes=[(size, size)] * x.shape[0])
    post = time.perf_counter() - start
    e = timer.elapsed
    parts = {
        "backbone": e["backbone"], "deformable encoder": e["deformable encoder"],
        "pixel decoder, other": e["pixel decoder"] - e["deformable encoder"],
        "transformer decoder": e["transformer decoder"],
        "other": forward - e["backbone"] - e["pixel decoder"] - e["transformer decoder"],
        "forward": forward, "post-processing": post,
    }
    return {k: v * 1e3 for k, v in parts.items()}


def measure(size: int, models: dict, timers: dict, processor, args: argparse.Namespace) -> dict:
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(args.seed))
    runs = {name: [] for name in models}
    with torch.inference_mode():
        for rep in range(args.warmup + args.repeats):
            names = list(models)[rep % 2:] + list(models)[: rep % 2]
            this = {n: run_once(models[n], timers[n], processor, x, size) for n in names}
            print(f"[{size}] round {rep + 1}: " + " ".join(f"{n}={t['forward']:.0f}" for n, t in this.items()),
                  flush=True)
            if rep >= args.warmup:
                for n, t in this.items():
                    runs[n].append(t)
    out = {}
    for name, rows in runs.items():
        gflops = count_gflops(models[name], x).as_dict()
        out[name] = {"parts": {p: report.stats([r[p] for r in rows]) for p in SHOWN}, "gflops": gflops}
    stock, eco = (out[n]["parts"] for n in ("stock", "ecom2f"))
    unchanged = sum(eco[p]["median_ms"] for p in ("backbone", "pixel decoder, other", "transformer decoder", "other"))
    out["speedup"] = stock["forward"]["median_ms"] / eco["forward"]["median_ms"]
    # 2x needs ecom2f's forward at half of stock's; with its encoder as measured, the other parts must fit in the rest.
    out["budget_for_other_parts_at_2x_ms"] = stock["forward"]["median_ms"] / 2 - eco["deformable encoder"]["median_ms"]
    out["other_parts_ms"] = unchanged
    return out


def markdown(payload: dict) -> list[str]:
    meta, env = payload["meta"], payload["meta"]["env"]
    lines = ["# Where the inference time goes: stock Mask2Former vs ecom2f at full depth", "",
             f"{common.machine_line(env)}. Swin-T, random weights, batch 1, eager, inference mode; "
             f"{meta['repeats']} timed rounds after {meta['warmup']} warm-up, the two models interleaved. Median ms "
             f"(IQR); GFLOPs in the fvcore convention. {meta['note']}", ""]
    for size, res in payload["sizes"].items():
        lines += [f"## {size}x{size}", "", "| part | stock ms | ecom2f ms | speed-up | stock GFLOPs | ecom2f GFLOPs |",
                  "|---|---|---|---|---|---|"]
        for part in SHOWN:
            s, e = res["stock"]["parts"][part], res["ecom2f"]["parts"][part]
            g_key = {"backbone": "backbone", "deformable encoder": "encoder", "pixel decoder, other": "pixel_decoder_rest",
                     "transformer decoder": "transformer_decoder", "forward": "total"}.get(part)
            g = (f"{res['stock']['gflops'][g_key]:.1f} | {res['ecom2f']['gflops'][g_key]:.1f}" if g_key
                 else "- | -")
            lines.append(f"| {part} | {s['median_ms']:.0f} ({s['iqr_ms']:.0f}) | {e['median_ms']:.0f} "
                         f"({e['iqr_ms']:.0f}) | {s['median_ms'] / e['median_ms']:.2f} | {g} |")
        lines += ["", f"End to end (forward) {res['speedup']:.2f}x. For 2x, ecom2f's forward must take at most half of "
                  f"stock's: with its encoder as measured, the other parts would have to fit in "
                  f"{res['budget_for_other_parts_at_2x_ms']:.0f} ms; they take {res['other_parts_ms']:.0f} ms.", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran on the machine)")
    common.add_timing_arguments(parser, repeats=5, warmup=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    eco, stock = common.build_models(seed=args.seed)
    models = {"stock": stock, "ecom2f": eco}
    timers = {name: PartTimer(model) for name, model in models.items()}
    processor = EcoMask2FormerImageProcessor()
    started = time.perf_counter()
    sizes = {size: measure(size, models, timers, processor, args) for size in args.sizes}
    meta = {"env": common.environment(torch.get_num_threads()), "wall_s": time.perf_counter() - started,
            "command": " ".join(["benchmarks/benchmark_profile.py", *(argv if argv is not None else sys.argv[1:])]),
            **{k: v for k, v in vars(args).items() if k != "out"}}
    payload = {"meta": meta, "sizes": sizes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown(payload)
    (args.out / "profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
