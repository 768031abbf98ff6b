"""One optimizer step of the whole model, stock transformers Mask2Former against ecom2f at full depth, same run.

A step is what step 1 of the recipe does per batch: forward with labels (Hungarian matching, mask and class
losses), backward, `AdamW.step()`, `zero_grad()`. Settings:
- `recipe`: the shipped parent (`examples/parents/depth_benchmark/`: Swin-mini backbone, 64-d pixel decoder with
  4 heads, 4 decoder layers, 20 queries) at its training size, 128x128, batch 8 (the main job's), images and labels
  of the depth benchmark's generator;
- `swin-t-512`: Swin-T Mask2Former (`bench_common.swin_t_kwargs`, random init, 133 classes) at 512x512, batch 2,
  images and labels of the default synthetic generator.
Variants (same weights, same batch; each has its own optimizer): `stock` (transformers'
`Mask2FormerForUniversalSegmentation`, `bench_common.stock_twin`), `ecom2f` (full depth, `auto` core) and
`ecom2f[reference]` (full depth, the reference core). ecom2f uses the uniform exit-loss weighting here, so its loss
is the stock loss; a check step before the timing compares the losses and gradients of all three.

Each round times one step of every variant (forward + loss, backward, optimizer step timed apart), round-robin
with the starting variant rotated; `--repeats` rounds after `--warmup`. Writes `train_step.json` and `.md`.

    python benchmarks/benchmark_train_step.py --threads 1             # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import bench_common as common  # noqa: E402
import benchmark_report as report  # noqa: E402
import torch  # noqa: E402

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.data import EcoMask2FormerCollator, make_synthetic_panoptic_dataset  # noqa: E402
from modeling_ecom2f.data.synthetic_config import SyntheticPanopticConfig, depth_benchmark_config  # noqa: E402
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor  # noqa: E402

PARENT = Path(__file__).resolve().parents[1] / "examples" / "parents" / "depth_benchmark"
SETTINGS = {"recipe": {"size": 128, "batch": 8}, "swin-t-512": {"size": 512, "batch": 2}}


def build_setting(name: str, *, seed: int) -> tuple[EcoMask2FormerForUniversalSegmentation, dict]:
    """The ecom2f model of a setting (uniform exit-loss weighting) and one collated training batch."""
    size, batch = SETTINGS[name]["size"], SETTINGS[name]["batch"]
    torch.manual_seed(seed)
    if name == "recipe":
        eco = EcoMask2FormerForUniversalSegmentation.from_pretrained(PARENT)
        data_config = depth_benchmark_config(num_train_images=batch, num_validation_images=0, seed=seed)
    else:
        eco = EcoMask2FormerForUniversalSegmentation(EcoMask2FormerConfig(**common.swin_t_kwargs()))
        data_config = SyntheticPanopticConfig(height=size, width=size, num_train_images=batch,
                                              num_validation_images=0, seed=seed)
    eco.config.exit_loss_weighting = "uniform"
    dataset, label_info = make_synthetic_panoptic_dataset(config=data_config)
    processor = EcoMask2FormerImageProcessor(size={"height": size, "width": size}, ignore_index=255,
                                             do_reduce_labels=False)
    collator = EcoMask2FormerCollator(image_processor=processor, label_info=label_info)
    rows = [dataset["train"][i] for i in range(batch)]
    collated = collator(rows)
    inputs = {"pixel_values": collated["pixel_values"], "pixel_mask": collated["pixel_mask"],
              "mask_labels": list(collated["mask_labels"]), "class_labels": list(collated["class_labels"])}
    return eco, inputs


def set_core(model: torch.nn.Module, core: str) -> None:
    for module in model.modules():
        if hasattr(module, "implementation"):
            module.implementation = core


class Stepper:
    """One model with its optimizer; `__call__` runs one timed training step (the loss sampling is seeded)."""

    def __init__(self, model: torch.nn.Module, inputs: dict, *, core: str | None, seed: int) -> None:
        self.model, self.inputs, self.core, self.seed = model.train(), inputs, core, seed
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        self.parts: list[dict] = []

    def loss(self) -> torch.Tensor:
        if self.core is not None:
            set_core(self.model, self.core)
        torch.manual_seed(self.seed)  # the losses sample points at random
        return self.model(**self.inputs).loss

    def __call__(self) -> None:
        start = time.perf_counter()
        loss = self.loss()
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        self.parts.append({"forward_ms": (forward - start) * 1e3, "backward_ms": (backward - forward) * 1e3,
                           "optimizer_ms": (end - backward) * 1e3})


def check_equivalence(steppers: dict[str, Stepper]) -> dict:
    """Loss and gradients of every variant against stock before any optimizer step (same weights, same batch)."""
    out, grads = {}, {}
    for name, stepper in steppers.items():
        loss = stepper.loss()
        loss.backward()
        grads[name] = {k: p.grad.clone() for k, p in stepper.model.named_parameters() if p.grad is not None}
        out[name] = {"loss": loss.item()}
        stepper.optimizer.zero_grad(set_to_none=True)
    for name in steppers:
        common_keys = grads[name].keys() & grads["stock"].keys()
        out[name]["loss_difference_to_stock"] = abs(out[name]["loss"] - out["stock"]["loss"])
        # Over all parameters at once: some gradients are exactly zero in math (a key projection's bias) and
        # rounding noise in practice, so a per-parameter ratio would mean nothing there.
        difference = torch.cat([(grads[name][k] - grads["stock"][k]).flatten() for k in sorted(common_keys)])
        reference = torch.cat([grads["stock"][k].flatten() for k in sorted(common_keys)])
        out[name]["relative_gradient_difference_to_stock"] = (difference.norm() / reference.norm()).item()
        out[name]["parameters_with_gradient"] = len(grads[name])
    return out


def measure(name: str, args: argparse.Namespace) -> dict:
    eco, inputs = build_setting(name, seed=args.seed)
    stock = common.stock_twin(eco)
    reference = EcoMask2FormerForUniversalSegmentation(eco.config)  # a second ecom2f with the same weights
    reference.load_state_dict(eco.state_dict())
    steppers = {"stock": Stepper(stock, inputs, core=None, seed=args.seed),
                "ecom2f": Stepper(eco, inputs, core="auto", seed=args.seed),
                "ecom2f[reference]": Stepper(reference, inputs, core="reference", seed=args.seed)}
    checks = check_equivalence(steppers)
    print(f"[{name}] equivalence: {checks}", flush=True)
    times = common.interleaved(steppers, repeats=args.repeats, warmup=args.warmup,
                               after_round=lambda r, t: print(f"[{name}] round {r + 1}: " + " ".join(
                                   f"{k}={v[0]:.0f}" for k, v in t.items()), flush=True))
    rows = []
    for variant, runs in times.items():
        parts = steppers[variant].parts[args.warmup:]
        rows.append({"setting": name, **SETTINGS[name], "variant": variant,
                     "step": report.stats([w for w, _ in runs]), "cpu_median_ms": report.median([c for _, c in runs]),
                     **{part: report.stats([p[part] for p in parts]) for part in parts[0]}})
    stock_ms = rows[0]["step"]["median_ms"]
    for row in rows:
        row["speedup_vs_stock"] = stock_ms / row["step"]["median_ms"]
    return {"rows": rows, "checks": checks,
            "encoder_head_dim": eco.config.feature_size // eco.config.num_attention_heads}


def markdown(payload: dict, args: argparse.Namespace) -> list[str]:
    env = payload["meta"]["env"]
    lines = [
        "# Training step: stock Mask2Former vs ecom2f at full depth", "",
        f"CPU {env['cpu_model']}, {env['threads']} thread(s), torch {env['torch']}, transformers "
        f"{env['transformers']}; {env['date_utc']}. One optimizer step (forward + loss, backward, AdamW step); "
        f"{args.repeats} timed rounds after {args.warmup} warm-up, variants interleaved. Median ms (IQR). "
        f"{payload['meta']['note']}", "",
        "| setting | variant | step ms (IQR) | forward + loss | backward | optimizer | speed-up vs stock |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in payload["settings"].values():
        for r in setting["rows"]:
            lines.append(
                f"| {r['setting']} ({r['size']} px, batch {r['batch']}) | {r['variant']} | "
                f"{r['step']['median_ms']:.0f} ({r['step']['iqr_ms']:.0f}) | {r['forward_ms']['median_ms']:.0f} | "
                f"{r['backward_ms']['median_ms']:.0f} | {r['optimizer_ms']['median_ms']:.0f} | "
                f"{r['speedup_vs_stock']:.2f} |")
    lines += ["", "Before the timing, one loss and backward of each variant on the same batch and weights:"]
    for name, setting in payload["settings"].items():
        lines.append(f"- {name} (encoder heads of {setting['encoder_head_dim']} channels): " + "; ".join(
            f"{v}: loss {c['loss']:.4f}, |loss - stock| {c['loss_difference_to_stock']:.1e}, gradient difference "
            f"(L2 over all parameters, relative) {c['relative_gradient_difference_to_stock']:.1e}" for v, c in setting["checks"].items()))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran on the machine)")
    common.add_timing_arguments(parser, repeats=5, warmup=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    settings = {name: measure(name, args) for name in args.settings}
    meta = {"env": common.environment(torch.get_num_threads()), "wall_s": time.perf_counter() - started,
            "command": " ".join(["benchmarks/benchmark_train_step.py", *(argv if argv is not None else sys.argv[1:])]),
            **{k: v for k, v in vars(args).items() if k != "out"}}
    payload = {"meta": meta, "settings": settings}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = markdown(payload, args)
    (args.out / "train_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
