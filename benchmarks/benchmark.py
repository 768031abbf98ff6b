"""One benchmark of everything against stock transformers Mask2Former, measured in the same run.

Variants (Swin-T-sized, random weights; `bench_common.swin_t_kwargs`):
- `stock`: transformers' `Mask2FormerForUniversalSegmentation` (its grid_sample deformable attention);
- `ecom2f`: EcoMask2Former holding the SAME weights as stock, at every exit, with the fast core (`auto`: the fused
  embedding-bag core on CPU) and, at full depth, with the reference core too, and with the stock decoder modules
  (`[stock decoder]`: the masked cross-attention and mask predictor of transformers instead of the
  `ecom2f_decoder` stand-ins), so that each gain is measured apart;
- `proscale`: PRO-SCALE token-length configurations (1,1,1), (2,2,2), (1,1,4) with TRC+LPE at full depth;
- `combined`: PRO-SCALE (3,3,3)+TRC+LPE with early exit at every exit (its last exit is the (3,3,3) model), fast
  core, and at full depth the reference core too.
PRO-SCALE models have their own random init (their shapes differ; FLOPs and latency do not depend on weight values).

For each variant and input size: GFLOPs by part (fvcore convention, `ecom2f_flops.count_gflops`); latency median and
spread (IQR) over `--repeats` runs after `--warmup` rounds, variants interleaved round-robin with the starting
variant rotated each round; the deformable encoder's own time (forward hooks on the encoder module); process CPU
time (a contention check); and peak memory of one forward, weights included (torch's `MemTracker` on CPU, the
allocator's peak on CUDA). Batch 1 for every variant; batch 4 for `--batch4` variants (all with `--batch4 all`); `torch.compile` for
`--compile` variants at batch 1, each timed alone right after its compile (not interleaved). Full-depth outputs of the fast ecom2f model are compared with stock (max abs diff).

    python benchmarks/benchmark.py                      # the full run (about 35 minutes on 2 CPU cores)
    python benchmarks/benchmark.py --device cuda        # the same on a GPU
    python benchmarks/benchmark.py --sizes 800 --batch4 none --compile none   # batch-1 eager only
    python benchmarks/benchmark.py --variants stock ecom2f@6 --name full_depth  # a subset, to full_depth.*

Writes `benchmark.json`, `benchmark.md` and `benchmark.png` under `--out` (`--name` replaces `benchmark`). Not a
test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import bench_common as common  # noqa: E402
import benchmark_report as report  # noqa: E402
import torch  # noqa: E402

from torch import nn  # noqa: E402
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskPredictor  # noqa: E402

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.ecom2f_decoder import EcoMaskedCrossAttention, EcoMaskPredictor  # noqa: E402
from modeling_ecom2f.ecom2f_flops import count_gflops  # noqa: E402

PROSCALE_STAGES = [(1, 1, 1), (2, 2, 2), (1, 1, 4)]
COMBINED_STAGES = (3, 3, 3)
DEFAULT_BATCH4 = ["stock", "ecom2f@2", "ecom2f@6", "combined@2", "combined@9"]
DEFAULT_COMPILE = ["stock", "ecom2f@6"]


@dataclass(frozen=True)
class Variant:
    family: str  # stock | ecom2f | proscale | combined
    model: str  # key into the model dict
    depth: int
    core: str  # deformable attention core: reference | fast
    stages: tuple[int, ...] | None = None
    decoder: str = "fast"  # transformer decoder modules: fast (ecom2f_decoder stand-ins) | stock

    @property
    def name(self) -> str:
        if self.family == "stock":
            return "stock"
        core = "" if self.core == "fast" else f"[{self.core}]"
        decoder = "" if self.decoder == "fast" else f"[{self.decoder} decoder]"
        return f"{self.model}@{self.depth}{core}{decoder}"


def build_models(*, seed: int) -> tuple[dict[str, torch.nn.Module], list[Variant]]:
    eco, stock = common.build_models(seed=seed)
    models: dict[str, torch.nn.Module] = {"stock": stock, "ecom2f": eco}
    variants = [Variant("stock", "stock", stock.config.encoder_layers, "reference")]
    variants += [Variant("ecom2f", "ecom2f", k, "fast") for k in eco.config.exit_layers]
    variants.append(Variant("ecom2f", "ecom2f", eco.config.encoder_layers, "reference"))
    variants.append(Variant("ecom2f", "ecom2f", eco.config.encoder_layers, "fast", decoder="stock"))
    variants.append(Variant("ecom2f", "ecom2f", eco.config.encoder_layers, "reference", decoder="stock"))
    options = {"token_recalibration": True, "light_pixel_embedding": True}
    for stages in [*PROSCALE_STAGES, COMBINED_STAGES]:
        torch.manual_seed(seed)
        config = EcoMask2FormerConfig(**common.swin_t_kwargs(), encoder_layers=sum(stages),
                                      token_scaling_layers=list(stages), **options)
        model = EcoMask2FormerForUniversalSegmentation(config).eval()
        if stages == COMBINED_STAGES:
            models["combined"] = model
            variants += [Variant("combined", "combined", k, "fast", stages) for k in config.exit_layers]
            variants.append(Variant("combined", "combined", sum(stages), "reference", stages))
        else:
            key = "proscale" + "".join(map(str, stages))
            models[key] = model
            variants.append(Variant("proscale", key, sum(stages), "fast", stages))
    return models, variants


def select(variants: list[Variant], names: list[str]) -> list[Variant]:
    if names == ["all"]:
        return list(variants)
    if names == ["none"]:
        return []
    known = {v.name: v for v in variants}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def set_core(model: torch.nn.Module, core: str, decoder: str = "fast") -> None:
    """Select the sampling core of every ecom2f deformable attention (`fast` = the config's `auto`) and the decoder
    modules (`fast`: the ecom2f stand-ins; `stock`: transformers' classes, swapped back in place)."""
    for module in model.modules():
        if hasattr(module, "implementation"):
            module.implementation = "auto" if core == "fast" else core
    if not isinstance(model, EcoMask2FormerForUniversalSegmentation):
        return
    transformer_decoder = model.model.transformer_module.decoder
    stock = decoder == "stock"
    for layer in transformer_decoder.layers:
        layer.cross_attn.__class__ = nn.MultiheadAttention if stock else EcoMaskedCrossAttention
    transformer_decoder.mask_predictor.__class__ = Mask2FormerMaskPredictor if stock else EcoMaskPredictor


def forward_fn(models: dict, variant: Variant, callables: dict | None = None):
    model = (callables or {}).get(variant.model, models[variant.model])
    if variant.family == "stock":
        return lambda x: model(pixel_values=x)
    return lambda x: model(pixel_values=x, num_encoder_layers=variant.depth)


class EncoderTimer:
    """Wall time spent inside the deformable encoder modules (forward pre/post hooks), synchronised on CUDA."""

    def __init__(self, models: dict[str, torch.nn.Module], device: torch.device) -> None:
        self.device, self.elapsed, self._start, self.handles = device, 0.0, 0.0, []
        for model in models.values():
            encoder = model.model.pixel_level_module.decoder.encoder
            self.handles += [encoder.register_forward_pre_hook(self._pre), encoder.register_forward_hook(self._post)]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, *args) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _post(self, *args) -> None:
        self._sync()
        self.elapsed += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def time_forward(fn, x: torch.Tensor, device: torch.device, timer: EncoderTimer | None) -> dict:
    gc.collect()
    if timer is not None:
        timer.elapsed = 0.0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"wall_ms": (time.perf_counter() - start) * 1e3, "cpu_ms": (time.process_time() - cpu_start) * 1e3,
            "encoder_ms": timer.elapsed * 1e3 if timer is not None else None}


def peak_memory_mib(model: torch.nn.Module, fn, x: torch.Tensor, device: torch.device) -> float:
    """Peak memory of one forward, weights included: the CUDA allocator's peak, or on CPU the peak of live tensor
    storage tracked op by op by torch's `MemTracker` (process RSS cannot show it: freed blocks stay mapped)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn(x)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(model, x)
    with tracker:
        fn(x)
    return tracker.get_tracker_snapshot("peak")[device]["Total"] / 2**20


def measure(models: dict, variants: list[Variant], *, size: int, batch: int, device: torch.device, repeats: int,
            warmup: int, seed: int, compiled: dict | None = None) -> list[dict]:
    """Interleaved timing of `variants` at one (size, batch, eager|compiled) setting."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    mode = "compile" if compiled else "eager"
    fns = {v: forward_fn(models, v, compiled) for v in variants}
    timer = None if compiled else EncoderTimer(models, device)
    runs: dict[Variant, list[dict]] = {v: [] for v in variants}
    with torch.inference_mode():
        for rep in range(warmup + repeats):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            this_round = {}
            for v in order:
                set_core(models[v.model], v.core, v.decoder)
                this_round[v] = time_forward(fns[v], x, device, timer)
            if rep >= warmup:
                for v, r in this_round.items():
                    runs[v].append(r)
            print(f"[{size} b{batch} {mode}] round {rep + 1}/{warmup + repeats}: "
                  + " ".join(f"{v.name}={this_round[v]['wall_ms']:.0f}" for v in variants)
                  + f" | load {os.getloadavg()[0]:.2f}", flush=True)
        memory = {}
        for v in variants:  # eager only: a dispatch-mode tracker around a compiled graph would not measure it
            set_core(models[v.model], v.core, v.decoder)
            memory[v] = None if compiled else peak_memory_mib(models[v.model], fns[v], x, device)
    if timer is not None:
        timer.remove()
    return [{"variant": v.name, **asdict(v), "size": size, "batch": batch, "mode": mode,
             "latency": report.stats([r["wall_ms"] for r in runs[v]]),
             "cpu_median_ms": float(report.median([r["cpu_ms"] for r in runs[v]])),
             "encoder_latency": None if compiled else report.stats([r["encoder_ms"] for r in runs[v]]),
             "peak_memory_mib": memory[v]} for v in variants]


def gflops_rows(models: dict, variants: list[Variant], *, size: int, device: torch.device) -> dict[str, dict]:
    x = torch.randn(1, 3, size, size).to(device)
    out = {}
    for v in variants:
        kwargs = {} if v.family == "stock" else {"num_encoder_layers": v.depth}
        out[v.name] = count_gflops(models[v.model], x, **kwargs).as_dict()
    return out


def output_check(models: dict, *, size: int, device: torch.device, seed: int) -> dict:
    """Max abs difference of the full-depth ecom2f model (each core) from stock, same weights and input."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    eco, stock = models["ecom2f"], models["stock"]
    with torch.inference_mode():
        ref = stock(pixel_values=x)
        out = {}
        for core in ("fast", "reference"):
            set_core(eco, core)
            got = eco(pixel_values=x, num_encoder_layers=eco.config.encoder_layers)
            out[core] = {
                "masks_queries_logits": (got.masks_queries_logits - ref.masks_queries_logits).abs().max().item(),
                "class_queries_logits": (got.class_queries_logits - ref.class_queries_logits).abs().max().item(),
            }
    return out


def compile_models(models: dict, variants: list[Variant], *, size: int, device: torch.device) -> tuple[dict, dict]:
    """`torch.compile` the variants' models (first call compiles); returns the callables and compile time or error.
    The core is fixed before compiling, as a later switch would recompile inside the timing."""
    compiled, info = {}, {}
    x = torch.randn(1, 3, size, size).to(device)
    for v in variants:
        set_core(models[v.model], v.core, v.decoder)
        start = time.perf_counter()
        try:
            fn = torch.compile(models[v.model], dynamic=False)
            with torch.inference_mode():
                forward_fn({v.model: fn}, v)(x)
            compiled[v.model] = fn
            info[v.name] = {"compile_s": time.perf_counter() - start, "error": None}
        except Exception as error:  # noqa: BLE001 - "where it works": report what failed and go on
            info[v.name] = {"compile_s": time.perf_counter() - start, "error": f"{type(error).__name__}: {error}"[:500]}
        print(f"[{size}] compile {v.name}: {info[v.name]}", flush=True)
    return compiled, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["all"], help="variants timed at batch 1 (default: all)")
    parser.add_argument("--batch4", nargs="+", default=DEFAULT_BATCH4, help="variants timed at batch 4 (all|none)")
    parser.add_argument("--compile", nargs="+", default=DEFAULT_COMPILE, help="variants timed compiled (all|none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="benchmark", help="file stem of the results")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (median and spread)")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models, variants = build_models(seed=args.seed)
    models = {k: m.to(device) for k, m in models.items()}
    batch4, to_compile = select(variants, args.batch4), select(variants, args.compile)
    variants = select(variants, args.variants)
    used = {v.model for v in [*variants, *batch4, *to_compile]} | {"stock", "ecom2f"}
    models = {k: m for k, m in models.items() if k in used}
    meta = {"env": common.environment(torch.get_num_threads()), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "command": " ".join(["benchmarks/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
            **{k: v for k, v in vars(args).items() if k not in ("out", "device")}}
    started = time.perf_counter()
    rows, gflops, checks, compile_info = [], {}, {}, {}
    for size in args.sizes:
        checks[size] = output_check(models, size=size, device=device, seed=args.seed)
        print(f"[{size}] full depth vs stock, max abs diff: {checks[size]}", flush=True)
        gflops[size] = gflops_rows(models, variants, size=size, device=device)
        rows += measure(models, variants, size=size, batch=1, device=device, repeats=args.repeats,
                        warmup=args.warmup, seed=args.seed)
        if batch4:
            rows += measure(models, batch4, size=size, batch=4, device=device, repeats=args.repeats,
                            warmup=args.warmup, seed=args.seed)
        # Compiled models are timed one at a time, each right after its compile, with dynamo reset in between:
        # interleaving compiled models that share submodule code makes dynamo re-check guards and recompile.
        for v in to_compile:
            torch._dynamo.reset()
            compiled, info = compile_models(models, [v], size=size, device=device)
            compile_info.setdefault(size, {}).update(info)
            if compiled:
                rows += measure(models, [v], size=size, batch=1, device=device, repeats=args.repeats,
                                warmup=args.warmup, seed=args.seed, compiled=compiled)
        torch._dynamo.reset()
    meta["wall_s"] = time.perf_counter() - started
    report.add_ratios(rows, gflops)
    payload = {"meta": meta, "output_check": checks, "gflops": gflops, "compile": compile_info, "results": rows,
               "acceptance": report.acceptance(rows, checks)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    report.write_markdown(args.out / f"{args.name}.md", payload)
    report.plot(args.out / f"{args.name}.png", payload)
    print((args.out / f"{args.name}.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
