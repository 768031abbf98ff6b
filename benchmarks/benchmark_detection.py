"""GFLOPs per encoder exit and latency of EcoDeformableDetr against stock transformers Deformable DETR.

A ResNet-50-sized Deformable DETR (transformers' `ResNetConfig()` backbone, random weights, `--seed`; Deformable DETR
defaults otherwise: 4 levels, 6 encoder and 6 decoder layers, 300 queries, d_model 256). The stock
`transformers.DeformableDetrForObjectDetection` gets the SAME weights (the ecom2f state dict without the gate). Batch
1, `model.eval()`, `torch.inference_mode()`. Variants: stock, ecom2f at every exit (`--msda` sampling cores;
`reference` is the stock grid_sample core), and with `--token-scaling P1 P2 P3 P4` a PRO-SCALE-staged ecom2f model
(random weights; FLOPs and latency only, it shares no weights with stock). Variants are interleaved round-robin.
GFLOPs: `modeling_ecom2f.ecom2f_detr_flops.count_detection_gflops` (fvcore convention: 1 multiply-add = 1 FLOP,
deformable sampling not counted).

    python benchmarks/benchmark_detection.py --sizes 640 --repeats 5 --warmup 1 --out benchmarks/results
    python benchmarks/benchmark_detection.py --tiny --sizes 96 --repeats 1 --warmup 0 --out /tmp/smoke   # smoke

Writes `detection.json` and `detection.md` under `--out` (`detection_<tag>.*` with `--tag`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import bench_common as common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig  # noqa: E402

from modeling_ecom2f import EcoDeformableDetrConfig, EcoDeformableDetrForObjectDetection  # noqa: E402
from modeling_ecom2f.ecom2f_detr_flops import count_detection_gflops  # noqa: E402


def model_kwargs(*, tiny: bool) -> dict:
    """ResNet-50-sized Deformable DETR kwargs, or a tiny one for smoke runs."""
    if tiny:
        backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 32], depths=[1, 1, 1, 1],
                                layer_type="basic", out_features=["stage2", "stage3", "stage4"])
        return dict(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
                    encoder_layers=4, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                    encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=12, num_labels=5)
    backbone = ResNetConfig(out_features=["stage2", "stage3", "stage4"])  # ResNet-50 (bottleneck, [3, 4, 6, 3])
    return dict(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, num_labels=91)


def build_models(*, tiny: bool, seed: int, token_scaling: list[int] | None):
    torch.manual_seed(seed)
    kwargs = model_kwargs(tiny=tiny)
    eco = EcoDeformableDetrForObjectDetection(EcoDeformableDetrConfig(**kwargs)).eval()
    stock = DeformableDetrForObjectDetection(DeformableDetrConfig(**kwargs)).eval()
    missing, unexpected = stock.load_state_dict(
        {k: v for k, v in eco.state_dict().items() if not k.startswith("model.gate.")}, strict=False
    )
    if missing or unexpected:
        raise RuntimeError(f"stock model does not take the ecom2f weights: {missing} {unexpected}")
    staged = None
    if token_scaling:
        staged = EcoDeformableDetrForObjectDetection(
            EcoDeformableDetrConfig(**kwargs, token_scaling_layers=token_scaling, token_recalibration=True)
        ).eval()
    return eco, stock, staged


def set_core(model, core: str) -> None:
    for layer in model.model.encoder.layers:
        layer.self_attn.implementation = core


def variants(eco, staged, cores: list[str]) -> list[dict]:
    out = [{"model": "stock", "core": "reference", "depth": eco.config.encoder_layers}]
    for core in cores:
        out += [{"model": "ecom2f", "core": core, "depth": d} for d in eco.config.exit_layers]
    if staged is not None:
        out += [{"model": "ecom2f+proscale", "core": "auto", "depth": d} for d in staged.config.exit_layers]
    return out


def run(variant: dict, *, eco, stock, staged, x: torch.Tensor) -> None:
    if variant["model"] == "stock":
        stock(pixel_values=x)
        return
    model = eco if variant["model"] == "ecom2f" else staged
    set_core(model, variant["core"])
    model(pixel_values=x, num_encoder_layers=variant["depth"])


def benchmark(*, eco, stock, staged, size: int, cores: list[str], repeats: int, warmup: int, seed: int) -> list[dict]:
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    rows = variants(eco, staged, cores)
    for row in rows:
        model = stock if row["model"] == "stock" else (eco if row["model"] == "ecom2f" else staged)
        kwargs = {} if row["model"] == "stock" else {"num_encoder_layers": row["depth"]}
        flops = count_detection_gflops(model, x, **kwargs)
        row.update(size=size, gflops_total=flops.total, gflops_encoder=flops.encoder, gflops_backbone=flops.backbone,
                   gflops_decoder=flops.decoder, times=[])
    with torch.inference_mode():
        runs = {i: (lambda row=row: run(row, eco=eco, stock=stock, staged=staged, x=x)) for i, row in enumerate(rows)}
        times = common.interleaved(runs, repeats=repeats, warmup=warmup)
    for i, row in enumerate(rows):
        row["times"] = [wall / 1e3 for wall, _ in times[i]]  # seconds
    stock_ms = None
    for row in rows:
        row["latency_ms_median"] = float(np.median(row["times"])) * 1e3 if row["times"] else float("nan")
        if row["model"] == "stock":
            stock_ms = row["latency_ms_median"]
    for row in rows:
        row["speedup_vs_stock"] = stock_ms / row["latency_ms_median"] if stock_ms and row["times"] else float("nan")
    return rows


def write_markdown(path: Path, meta: dict, rows: list[dict]) -> None:
    lines = [
        "# Deformable DETR: GFLOPs per encoder exit and latency, ecom2f vs stock transformers",
        "",
        f"Model: {meta['model']}; batch 1; {meta['repeats']} timed runs (median), {meta['warmup']} warm-up; "
        f"threads {meta['threads']}; torch {meta['torch']}, transformers {meta['transformers']}; {meta['date']}.",
        "GFLOPs in the fvcore convention (1 multiply-add = 1 FLOP, deformable sampling not counted).",
        "",
        "| size | model | MSDA core | encoder layers | total GFLOPs | encoder GFLOPs | latency ms | vs stock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['model']} | {r['core']} | {r['depth']} | {r['gflops_total']:.3f} | "
            f"{r['gflops_encoder']:.3f} | {r['latency_ms_median']:.1f} | {r['speedup_vs_stock']:.2f}x |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[640])
    common.add_timing_arguments(parser, repeats=5, warmup=1)
    parser.add_argument("--msda", nargs="+", default=["reference", "embedding_bag"], help="ecom2f sampling cores")
    parser.add_argument("--token-scaling", type=int, nargs="*", default=None, help="e.g. 2 2 1 1 (coarse to fine)")
    parser.add_argument("--tiny", action="store_true", help="tiny random model (smoke test of the script)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    eco, stock, staged = build_models(tiny=args.tiny, seed=args.seed, token_scaling=args.token_scaling)
    rows = []
    for size in args.sizes:
        rows += benchmark(eco=eco, stock=stock, staged=staged, size=size, cores=args.msda, repeats=args.repeats,
                          warmup=args.warmup, seed=args.seed)
    meta = {
        "model": "tiny Deformable DETR (smoke)" if args.tiny else "Deformable DETR, ResNet-50 backbone, random init",
        "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads, "torch": torch.__version__,
        "transformers": transformers.__version__, "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "token_scaling": args.token_scaling,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"detection_{args.tag}" if args.tag else "detection"
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    write_markdown(args.out / f"{stem}.md", meta, rows)
    print((args.out / f"{stem}.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
