"""Shared pieces of the benchmarks: the Swin-T Mask2Former config, the stock/ecom2f pair on the same weights,
interleaved round-robin timing, latency statistics, the machine description and the common command-line options.
Not a benchmark itself; the scripts next to it import it (`import bench_common as common`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig  # noqa: E402

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation  # noqa: E402

Timing = tuple[float, float]  # (wall ms, process-CPU ms) of one call


def swin_t_kwargs() -> dict:
    """Mask2Former config kwargs with a Swin-T backbone (facebookresearch/Mask2Former
    `configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml`) and drop path off for inference."""
    swin = SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return {"backbone_config": swin, "num_labels": 133}


def build_models(*, seed: int) -> tuple[EcoMask2FormerForUniversalSegmentation, Mask2FormerForUniversalSegmentation]:
    """The Swin-T ecom2f model (random init) and the stock model holding the same weights."""
    torch.manual_seed(seed)
    eco = EcoMask2FormerForUniversalSegmentation(EcoMask2FormerConfig(**swin_t_kwargs())).eval()
    return eco, stock_twin(eco)


def stock_twin(eco: EcoMask2FormerForUniversalSegmentation) -> Mask2FormerForUniversalSegmentation:
    """The stock transformers Mask2Former of `eco`'s config holding `eco`'s weights (`eval()` mode). The ecom2f-only
    weights left out must be the gate's: a model with PRO-SCALE modules (TRC, staged layers) has no stock twin."""
    data = {k: v for k, v in eco.config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    stock = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**{
        k: v for k, v in data.items() if k in Mask2FormerConfig.__dataclass_fields__ or k in ("id2label", "label2id")
    })).eval()
    stock_keys = set(stock.state_dict())
    stock.load_state_dict({k: v for k, v in eco.state_dict().items() if k in stock_keys}, strict=True)
    extra = sorted(set(eco.state_dict()) - stock_keys)
    assert all(".gate." in k for k in extra), extra  # the only ecom2f-only weights are the gate's
    return stock


def timed(fn: Callable[[], object]) -> Timing:
    """Wall and process-CPU milliseconds of one call of `fn` (garbage collected first, outside the timing)."""
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - start) * 1e3, (time.process_time() - cpu_start) * 1e3


def interleaved(
    runs: dict[Hashable, Callable[[], object]], *, repeats: int, warmup: int,
    after_round: Callable[[int, dict[Hashable, Timing]], None] | None = None,
) -> dict[Hashable, list[Timing]]:
    """Time every entry of `runs` once per round, round-robin, the starting entry rotated every round (so machine
    drift hits all of them equally); `warmup` rounds first, then `repeats` kept rounds. `after_round(round, times)`
    sees each round's timings (for progress output). Wrap the call in `torch.inference_mode()` where it applies."""
    names = list(runs)
    kept: dict[Hashable, list[Timing]] = {name: [] for name in names}
    for rep in range(warmup + repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        this_round = {name: timed(runs[name]) for name in order}
        if rep >= warmup:
            for name, timing in this_round.items():
                kept[name].append(timing)
        if after_round is not None:
            after_round(rep, this_round)
    return kept


def latency_stats(runs: list[Timing]) -> dict:
    """Median, quartiles, minimum of the wall times and the median CPU time, with every run, of `(wall, cpu)` pairs."""
    wall, cpu = [w for w, _ in runs], [c for _, c in runs]
    q25, median, q75 = np.percentile(wall, [25, 50, 75])
    return {
        "median_ms": float(median), "q25_ms": float(q25), "q75_ms": float(q75), "iqr_ms": float(q75 - q25),
        "min_ms": float(min(wall)), "cpu_median_ms": float(np.median(cpu)),
        "runs_ms": [round(w, 2) for w in wall], "runs_cpu_ms": [round(c, 2) for c in cpu],
    }


def environment(threads: int) -> dict:
    """Versions, CPU model, thread counts and the UTC date of the run."""
    cpu_model = platform.processor()
    try:
        cpu_model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "cpu_model": cpu_model, "platform_processor": platform.processor(), "os_cpu_count": os.cpu_count(),
        "threads": threads, "interop_threads": torch.get_num_interop_threads(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(env: dict, *, threads: bool = True) -> str:
    """The first words of a results page: CPU, core (or thread) count, versions and date of `environment()`."""
    count = f"{env['threads']} thread(s)" if threads else f"{env['os_cpu_count']} cores"
    return (f"CPU {env['cpu_model']} ({count}), torch {env['torch']}, transformers {env['transformers']}; "
            f"{env['date_utc']}")


def add_timing_arguments(parser: argparse.ArgumentParser, *, repeats: int, warmup: int) -> None:
    """The options every timing benchmark has: `--repeats`, `--warmup`, `--threads`, `--seed`, `--out`."""
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def write_results(out: Path, stem: str, payload: dict, lines: list[str]) -> None:
    """`<stem>.json` (the payload) and `<stem>.md` (the lines) under `out`; the Markdown is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
