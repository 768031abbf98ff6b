"""Speed protocol: ecom2f at full depth vs stock transformers Mask2Former, every part against this CPU's GEMM rate.

Same weights (stock loads ecom2f's state dict, `bench_common.stock_twin`), same input, batch 1, eager, inference
mode. For each thread count and size: one warm-up round, then `--rounds` rounds interleaved round-robin
(`bench_common.interleaved`), min and median. Measured in the same run: the 2048x2048 float32 GEMM rate (multiply-adds
per second, `torch.mm`, median of 5 after 3 warm-up calls) at the same thread count, and the load average before
and after each cell.
Every part (backbone, deformable encoder, input projections + FPN + mask projection, transformer decoder with the
class head, panoptic post-processing; forward hooks, `benchmark_profile.PartTimer`) is reported as time and as a
fraction of the GEMM rate: its multiply-adds (fvcore convention, `ecom2f_flops.count_gflops`) per second over the
GEMM rate. Logits of the two models are compared (max |diff|) at every size.

Stand-in gains: each ecom2f stand-in module (`STANDINS`) timed inside its part, installed vs swapped back to the
stock class (same module, same captured inputs), interleaved, at `--gain-size` with one thread (`--gain-rounds`).

Extra rows (`--rows`): `batch4` (batch 4 at 512: full depth, and mixed per-image depths), `onnx` (the exported
full-depth graph in onnxruntime vs eager, `ecom2f_export.export_fixed_depth_onnx`), `compile` (`torch.compile` of
both models; not what eager users get).

    python benchmarks/speed_protocol.py                       # the default protocol (about 5 minutes on 2 cores)
    python benchmarks/speed_protocol.py --sizes 800 --threads 1 --rounds 3 --gains none   # a quick look
    python benchmarks/speed_protocol.py --rows batch4 onnx compile --sizes 512             # the extra rows

Writes `<name>.json` and `<name>.md` under `--out` (default `speed_protocol`). Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import bench_common as common
import benchmark_profile as profile
import benchmark_report as report
import torch
from torch import nn
from transformers import SwinConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerMaskPredictor,
)
from transformers.models.swin.modeling_swin import SwinLayer

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.ecom2f_decoder import EcoMaskedCrossAttention, EcoMaskPredictor
from modeling_ecom2f.ecom2f_encoder import EcoMask2FormerPixelDecoderEncoderLayer
from modeling_ecom2f.ecom2f_fast_encoder_layer import EcoFastPixelDecoderEncoderLayer
from modeling_ecom2f.ecom2f_masked_decoder import EcoMaskedAttentionDecoder
from modeling_ecom2f import ecom2f_onednn_linear as onednn_linear
from modeling_ecom2f.ecom2f_onednn_linear import EcoLinear
from modeling_ecom2f.ecom2f_swin_layer import EcoSwinLayer
from modeling_ecom2f.ecom2f_flops import count_gflops
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor

GEMM_N = 2048
# part shown -> count_gflops field (multiply-adds); parts without one have no rate
PART_GFLOPS = {"backbone": "backbone", "deformable encoder": "encoder", "pixel decoder, other": "pixel_decoder_rest",
               "transformer decoder": "transformer_decoder", "forward": "total"}
PART_LABELS = {"pixel decoder, other": "projections + FPN + mask projection",
               "transformer decoder": "transformer decoder", "other": "heads, glue"}
# stand-in name -> (ecom2f class, stock class, part module path); every stand-in is a class swap in place
BACKBONE, ENCODER, DECODER = ("model.pixel_level_module.encoder", "model.pixel_level_module.decoder.encoder",
                              "model.transformer_module")
STANDINS = {
    "Swin block (`ecom2f_swin_layer`)": (EcoSwinLayer, SwinLayer, BACKBONE),
    "deformable encoder layer (`ecom2f_fast_encoder_layer`)": (
        EcoFastPixelDecoderEncoderLayer, EcoMask2FormerPixelDecoderEncoderLayer, ENCODER),
    "oneDNN linear layers (`ecom2f_onednn_linear`; in the encoder: attention projections)": (
        EcoLinear, nn.Linear, ENCODER),
    "masked-attention decoder (`ecom2f_masked_decoder`)": (
        EcoMaskedAttentionDecoder, Mask2FormerMaskedAttentionDecoder, DECODER),
    "decoder masked cross-attention (`ecom2f_decoder`)": (EcoMaskedCrossAttention, nn.MultiheadAttention, DECODER),
    "decoder mask predictor (`ecom2f_decoder`)": (EcoMaskPredictor, Mask2FormerMaskPredictor, DECODER),
}


def build(model: str, *, seed: int) -> dict[str, nn.Module]:
    """`{"stock": ..., "ecom2f": ...}` on the same weights: Swin-T, or a tiny config for tests (`tiny`)."""
    if model == "swin-t":
        eco, stock = common.build_models(seed=seed)
        return {"stock": stock, "ecom2f": eco}
    swin = SwinConfig(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], window_size=7,
                      drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    torch.manual_seed(seed)
    eco = EcoMask2FormerForUniversalSegmentation(EcoMask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, num_attention_heads=4,
        encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=6, decoder_layers=3, num_queries=10,
        num_labels=5)).eval()
    return {"stock": common.stock_twin(eco), "ecom2f": eco}


def _gmacs_per_s(product, repeats: int) -> list[float]:
    for _ in range(3):
        product()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        runs.append(GEMM_N ** 3 / (time.perf_counter() - start) / 1e9)
    return runs


def gemm_rate(threads: int, *, repeats: int = 5) -> dict:
    """G multiply-adds/s of a `GEMM_N` x `GEMM_N` float32 GEMM at `threads` threads, by the two CPU libraries
    PyTorch ships: BLAS (`torch.mm`, MKL) and oneDNN (the inner product the `EcoLinear` stand-in calls). The
    reference rate (`median_gmacs`) is the faster library's median: the machine's GEMM limit, which no part can be
    asked to beat."""
    torch.set_num_threads(threads)
    a, b = (torch.randn(GEMM_N, GEMM_N, generator=torch.Generator().manual_seed(i)) for i in (0, 1))
    by_library = {"blas": _gmacs_per_s(lambda: torch.mm(a, b), repeats)}
    weight = b.t().contiguous()  # (out, in), as nn.Linear stores it
    with torch.no_grad():
        if onednn_linear.onednn_usable(a, weight):
            by_library["onednn"] = _gmacs_per_s(lambda: onednn_linear.linear(a, weight, None), repeats)
    medians = {name: report.median(runs) for name, runs in by_library.items()}
    best = max(medians, key=medians.get)
    return {"median_gmacs": medians[best], "library": best, "best_gmacs": max(by_library[best]),
            "median_gmacs_by_library": medians,
            "runs_gmacs": {name: [round(r, 2) for r in runs] for name, runs in by_library.items()}}


def images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def part_rows(stats: dict, gflops: dict, rate: float) -> dict:
    """Per part: median/min ms, G multiply-adds (of the call: the whole batch) and the fraction of the GEMM rate."""
    rows = {}
    for part, s in stats.items():
        key = PART_GFLOPS.get(part)
        gmacs = gflops[key] if key else None
        rows[part] = {**s, "gmacs": gmacs,
                      "fraction_of_gemm": gmacs / (s["median_ms"] / 1e3) / rate if gmacs else None}
    return rows


def time_cell(models: dict, timers: dict, calls: dict, x: torch.Tensor, size: int, *, rounds: int,
              warmup: int) -> dict:
    """Interleaved rounds of `calls` (name -> (model name, forward kwargs)), parts per call (`timers`: a
    `benchmark_profile.PartTimer` per model); stats per call name."""
    processor = EcoMask2FormerImageProcessor()
    parts: dict[str, list[dict]] = {name: [] for name in calls}

    def call(name: str):
        model_name, kwargs = calls[name]
        return lambda: parts[name].append(
            profile.run_once(models[model_name], timers[model_name], processor, x, size, **kwargs))

    with torch.inference_mode():
        common.interleaved({name: call(name) for name in calls}, repeats=rounds, warmup=warmup)
    return {name: {p: report.stats([r[p] for r in runs[warmup:]]) for p in profile.SHOWN}
            for name, runs in parts.items()}


def logit_diff(models: dict, x: torch.Tensor) -> dict:
    with torch.inference_mode():
        out = {name: model(pixel_values=x) for name, model in models.items()}
    return {k: float((out["stock"][k] - out["ecom2f"][k]).abs().max())
            for k in ("class_queries_logits", "masks_queries_logits")}


def swap(module: nn.Module, source: type, target: type) -> None:
    for sub in module.modules():
        if type(sub) is source:
            sub.__class__ = target


def standin_gains(models: dict, x: torch.Tensor, *, rounds: int, warmup: int) -> dict:
    """Each stand-in's part, installed vs stock class, interleaved on the part's captured inputs."""
    eco, out = models["ecom2f"], {}
    for name, (fast, stock, path) in STANDINS.items():
        part = eco.get_submodule(path)
        if not any(type(m) is fast for m in part.modules()):
            continue
        captured = {}
        handle = part.register_forward_pre_hook(
            lambda _, args, kwargs: captured.update(args=args, kwargs=kwargs), with_kwargs=True)
        with torch.inference_mode():
            eco(pixel_values=x)
        handle.remove()

        def run(cls: type, other: type):
            def go():
                swap(part, other, cls)
                part(*captured["args"], **captured["kwargs"])
            return go

        with torch.inference_mode():
            runs = common.interleaved({"stand-in": run(fast, stock), "stock": run(stock, fast)},
                                      repeats=rounds, warmup=warmup)
        swap(part, stock, fast)
        stats = {k: common.latency_stats(v) for k, v in runs.items()}
        out[name] = {"part": path, "stock_ms": stats["stock"]["median_ms"],
                     "standin_ms": stats["stand-in"]["median_ms"],
                     "saved_ms": stats["stock"]["median_ms"] - stats["stand-in"]["median_ms"],
                     "gain": stats["stock"]["median_ms"] / stats["stand-in"]["median_ms"]}
        print(f"[gain] {name}: {out[name]}", flush=True)
    return out


def onnx_rows(models: dict, x: torch.Tensor, *, threads: list[int], rounds: int, warmup: int) -> list[dict]:
    """The exported full-depth graph in onnxruntime vs eager ecom2f, per thread count (same input)."""
    import onnxruntime as ort

    from modeling_ecom2f.ecom2f_export import export_fixed_depth_onnx

    eco = models["ecom2f"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = export_fixed_depth_onnx(eco, depth=eco.config.encoder_layers, path=Path(folder) / "full.onnx",
                                       image_size=tuple(x.shape[-2:]))
        feed = {"pixel_values": x.numpy()}
        for t in threads:
            torch.set_num_threads(t)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = t, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            with torch.inference_mode():
                runs = common.interleaved({"onnxruntime": lambda: session.run(None, feed),
                                           "eager": lambda: eco(pixel_values=x)}, repeats=rounds, warmup=warmup)
                logits = eco(pixel_values=x).masks_queries_logits
            diff = float(abs(session.run(None, feed)[1] - logits.numpy()).max())
            stats = {k: common.latency_stats(v) for k, v in runs.items()}
            rows.append({"threads": t, "size": x.shape[-1], "batch": x.shape[0], "eager": stats["eager"],
                         "onnxruntime": stats["onnxruntime"], "mask_logits_max_abs_diff": diff,
                         "speedup_vs_eager": stats["eager"]["median_ms"] / stats["onnxruntime"]["median_ms"]})
    return rows


def compile_rows(models: dict, x: torch.Tensor, *, threads: int, rounds: int, warmup: int) -> dict:
    """`torch.compile` of both models (first call compiles), then interleaved rounds of the compiled callables."""
    torch.set_num_threads(threads)
    compiled, compile_s = {}, {}
    with torch.inference_mode():
        for name, model in models.items():
            start = time.perf_counter()
            compiled[name] = torch.compile(model, dynamic=False)
            compiled[name](pixel_values=x)
            compile_s[name] = time.perf_counter() - start
        runs = common.interleaved({n: (lambda f=f: f(pixel_values=x)) for n, f in compiled.items()},
                                  repeats=rounds, warmup=warmup)
    torch._dynamo.reset()
    stats = {k: common.latency_stats(v) for k, v in runs.items()}
    return {"threads": threads, "size": x.shape[-1], "compile_s": compile_s, **stats,
            "speedup": stats["stock"]["median_ms"] / stats["ecom2f"]["median_ms"]}


def run(args: argparse.Namespace) -> dict:
    models = build(args.model, seed=args.seed)
    timers = {name: profile.PartTimer(model) for name, model in models.items()}
    gflops, checks, cells, gemm = {}, {}, [], {}
    for size in args.sizes:
        x = images(1, size, args.seed)
        gflops[size] = {n: count_gflops(m, x).as_dict() for n, m in models.items()}
        checks[size] = logit_diff(models, x)
    for threads in args.threads:
        gemm[threads] = gemm_rate(threads)
        for size in args.sizes:
            load_before = os.getloadavg()
            calls = {"stock": ("stock", {}), "ecom2f": ("ecom2f", {})}
            stats = time_cell(models, timers, calls, images(1, size, args.seed), size, rounds=args.rounds,
                              warmup=args.warmup)
            rate = gemm[threads]["median_gmacs"]
            cell = {"size": size, "threads": threads, "batch": 1, "load_before": load_before,
                    "load_after": os.getloadavg(), "gemm_gmacs": rate,
                    "models": {n: part_rows(s, gflops[size][n], rate) for n, s in stats.items()}}
            fwd = {n: cell["models"][n]["forward"] for n in stats}
            cell["speedup_median"] = fwd["stock"]["median_ms"] / fwd["ecom2f"]["median_ms"]
            cell["speedup_min"] = fwd["stock"]["min_ms"] / fwd["ecom2f"]["min_ms"]
            print(f"[{size}, {threads} thread(s)] stock {fwd['stock']['median_ms']:.0f} ms, ecom2f "
                  f"{fwd['ecom2f']['median_ms']:.0f} ms: {cell['speedup_median']:.2f}x (GEMM {rate:.1f} G/s, load "
                  f"{load_before[0]:.2f})", flush=True)
            cells.append(cell)
    payload = {"cells": cells, "gemm": gemm, "gflops": gflops, "logit_max_abs_diff": checks}
    if args.gains == "all":
        torch.set_num_threads(1)
        payload["standin_gains"] = standin_gains(models, images(1, args.gain_size, args.seed),
                                                 rounds=args.gain_rounds, warmup=args.warmup)
    if "batch4" in args.rows:
        payload["batch4"] = batch4_rows(models, timers, args)
    if "onnx" in args.rows:
        payload["onnx"] = onnx_rows(models, images(1, args.batch_size, args.seed), threads=args.threads,
                                    rounds=args.rounds, warmup=args.warmup)
    if "compile" in args.rows:
        payload["compile"] = compile_rows(models, images(1, args.batch_size, args.seed), threads=args.threads[0],
                                          rounds=args.rounds, warmup=args.warmup)
    return payload


def batch4_rows(models: dict, timers: dict, args: argparse.Namespace) -> list[dict]:
    """Batch 4 at `--batch-size`: stock, ecom2f at full depth, ecom2f with mixed per-image depths (spread over the
    exits, as the gate returns them: one depth per image)."""
    exits = list(models["ecom2f"].config.exit_layers)
    mixed = torch.tensor([exits[round(i * (len(exits) - 1) / 3)] for i in range(4)])
    x = images(4, args.batch_size, args.seed)
    gflops = {"stock": count_gflops(models["stock"], x).as_dict(),
              "ecom2f": count_gflops(models["ecom2f"], x).as_dict(),
              "ecom2f mixed": count_gflops(models["ecom2f"], x, num_encoder_layers=mixed).as_dict()}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        calls = {"stock": ("stock", {}), "ecom2f": ("ecom2f", {}),
                 "ecom2f mixed": ("ecom2f", {"num_encoder_layers": mixed})}
        stats = time_cell(models, timers, calls, x, args.batch_size, rounds=args.rounds, warmup=args.warmup)
        rate = gemm_rate(threads)["median_gmacs"]
        rows.append({"threads": threads, "size": args.batch_size, "batch": 4, "mixed_depths": mixed.tolist(),
                     "gemm_gmacs": rate, "load": os.getloadavg(),
                     "models": {n: part_rows(s, gflops[n], rate) for n, s in stats.items()}})
    return rows


def _ms(s: dict) -> str:
    return f"{s['median_ms']:.0f} ({s['min_ms']:.0f})"


def _frac(row: dict) -> str:
    return "-" if row.get("fraction_of_gemm") is None else f"{row['fraction_of_gemm']:.2f}"


def markdown(payload: dict) -> list[str]:
    meta, env = payload["meta"], payload["meta"]["env"]
    lines = ["# Speed protocol: ecom2f at full depth vs stock Mask2Former", "",
             f"{common.machine_line(env, threads=False)}; model `{meta['model']}`, random weights shared by both "
             f"models, eager, inference mode; {meta['rounds']} interleaved rounds after {meta['warmup']} warm-up. "
             f"Times: median (min) ms. Fraction = G multiply-adds (fvcore convention) per second over the "
             f"{GEMM_N}x{GEMM_N} float32 GEMM rate at the same thread count, measured in this run (the faster of "
             f"BLAS `torch.mm` and oneDNN; both in the JSON). "
             f"Command: `{meta['command']}`; run took {meta['wall_s']:.0f} s. {meta['note']}", "",
             "| size | threads | load avg (1 min) | GEMM G/s | stock ms | ecom2f ms | speed-up (median) "
             "| speed-up (min) | stock fraction | ecom2f fraction |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in payload["cells"]:
        s, e = c["models"]["stock"]["forward"], c["models"]["ecom2f"]["forward"]
        lines.append(f"| {c['size']} | {c['threads']} | {c['load_before'][0]:.2f} -> {c['load_after'][0]:.2f} | "
                     f"{c['gemm_gmacs']:.1f} | {_ms(s)} | {_ms(e)} | {c['speedup_median']:.2f} | "
                     f"{c['speedup_min']:.2f} | {_frac(s)} | {_frac(e)} |")
    diffs = ", ".join(f"{size}: class {d['class_queries_logits']:.1e}, mask {d['masks_queries_logits']:.1e}"
                      for size, d in payload["logit_max_abs_diff"].items())
    lines += ["", f"Logits, max |stock - ecom2f|: {diffs}.", ""]
    for c in payload["cells"]:
        lines += _part_table(f"{c['size']}x{c['size']}, {c['threads']} thread(s), batch 1", c["models"])
    if payload.get("standin_gains"):
        lines += [f"## Stand-in gains ({payload['meta']['gain_size']}x{payload['meta']['gain_size']}, 1 thread)", "",
                  f"Each stand-in timed inside its part, installed vs the stock class swapped back (same inputs), "
                  f"{payload['meta']['gain_rounds']} interleaved rounds; median ms.", "",
                  "| stand-in | part | stock ms | stand-in ms | saved ms | gain |", "|---|---|---|---|---|---|"]
        for name, g in payload["standin_gains"].items():
            lines.append(f"| {name} | `{g['part']}` | {g['stock_ms']:.0f} | {g['standin_ms']:.0f} | "
                         f"{g['saved_ms']:.0f} | {g['gain']:.2f}x |")
        lines.append("")
    for row in payload.get("batch4", []):
        lines += _part_table(f"batch 4 at {row['size']}x{row['size']}, {row['threads']} thread(s) (mixed depths "
                             f"{row['mixed_depths']}; GEMM {row['gemm_gmacs']:.1f} G/s)", row["models"])
    if payload.get("onnx"):
        lines += ["## Exported full-depth graph: onnxruntime vs eager", "",
                  "| size | threads | eager ms | onnxruntime ms | onnxruntime speed-up | mask logits max diff |",
                  "|---|---|---|---|---|---|"]
        for r in payload["onnx"]:
            lines.append(f"| {r['size']} | {r['threads']} | {_ms(r['eager'])} | {_ms(r['onnxruntime'])} | "
                         f"{r['speedup_vs_eager']:.2f} | {r['mask_logits_max_abs_diff']:.1e} |")
        lines.append("")
    if payload.get("compile"):
        c = payload["compile"]
        lines += ["## torch.compile (not what eager users get)", "",
                  f"{c['size']}x{c['size']}, {c['threads']} thread(s): stock {_ms(c['stock'])} ms, ecom2f "
                  f"{_ms(c['ecom2f'])} ms, {c['speedup']:.2f}x (compile s: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in c["compile_s"].items()) + ").", ""]
    return lines


def _part_table(title: str, models: dict) -> list[str]:
    names = list(models)
    lines = [f"## {title}", "", "| part | G mult-adds | " + " | ".join(f"{n} ms | {n} fraction" for n in names) + " |",
             "|---|---|" + "---|---|" * len(names)]
    for part in profile.SHOWN:
        first = models[names[0]][part]
        gmacs = "-" if first["gmacs"] is None else f"{first['gmacs']:.1f}"
        cells = " | ".join(f"{_ms(models[n][part])} | {_frac(models[n][part])}" for n in names)
        lines.append(f"| {PART_LABELS.get(part, part)} | {gmacs} | {cells} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds after the warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--model", choices=("swin-t", "tiny"), default="swin-t")
    parser.add_argument("--gains", choices=("all", "none"), default="all", help="time the stand-in gains")
    parser.add_argument("--gain-size", type=int, default=800)
    parser.add_argument("--gain-rounds", type=int, default=5, help="timed rounds of each stand-in gain")
    parser.add_argument("--rows", nargs="*", choices=("batch4", "onnx", "compile"), default=[])
    parser.add_argument("--batch-size", type=int, default=512, help="image size of the batch-4, ONNX, compile rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran on the machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="speed_protocol")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    payload = run(args)
    payload["meta"] = {
        "env": common.environment(torch.get_num_threads()), "wall_s": time.perf_counter() - started,
        "command": " ".join(["python benchmarks/speed_protocol.py", *(argv if argv is not None else sys.argv[1:])]),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    common.write_results(args.out, args.name, payload, markdown(payload))
    return payload


if __name__ == "__main__":
    main()
