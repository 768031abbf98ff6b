"""Export an EcoMask2Former model to ONNX: the gated folder (stem, one segment per exit, tail, manifest.json) and,
optionally, single fixed-depth graphs; then check onnxruntime against PyTorch and time both.

    python examples/export_model.py --model_dir path/to/checkpoint --out exported/ --image_size 512 512
    python examples/export_model.py --tiny_random --out /tmp/ecom2f_onnx            # a seconds-long demo
    python examples/export_model.py --preset swin-t --out /tmp/swin_t --exits 2 6 --benchmark 5

Needs the `export` extra (onnx, onnxruntime, onnxscript). See docs/export.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from transformers import SwinConfig  # noqa: E402

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.ecom2f_export import (  # noqa: E402
    DEFAULT_OPSET,
    export_fixed_depth_onnx,
    export_gated_onnx,
    run_exported,
)

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="a saved EcoMask2Former checkpoint (from_pretrained)")
    source.add_argument("--tiny_random", action="store_true", help="a tiny random model with PRO-SCALE on")
    source.add_argument("--preset", choices=["swin-t"], help="a random-weight Swin-T Mask2Former (133 labels)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--exits", type=int, nargs="+", help="exits to export (default: config.exit_layers)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), help="default 512 512 (tiny: 96 128)")
    parser.add_argument("--fixed_depth", type=int, nargs="*", default=[], help="also write depth_{k}.onnx graphs")
    parser.add_argument("--batch", type=int, default=2, help="images in the PyTorch-vs-onnxruntime check")
    parser.add_argument("--fp64_check", action="store_true",
                        help="also compare PyTorch and onnxruntime with a float64 PyTorch run (the ground truth)")
    parser.add_argument("--raw_random", action="store_true", help="skip condition_random_model for random models")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N",
                        help="time N runs (batch 1) per exported exit, onnxruntime and PyTorch; print the medians")
    return parser.parse_args()


def build_model(args: argparse.Namespace) -> EcoMask2FormerForUniversalSegmentation:
    if args.model_dir:
        return EcoMask2FormerForUniversalSegmentation.from_pretrained(args.model_dir).eval()
    torch.manual_seed(0)
    if args.tiny_random:
        swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                          out_features=STAGES)
        config = EcoMask2FormerConfig(
            backbone_config=swin, feature_size=64, mask_feature_size=32, hidden_dim=32, num_attention_heads=4,
            encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=4, decoder_layers=3, num_queries=10,
            num_labels=5, token_scaling_layers=[1, 1, 2], token_recalibration=True, light_pixel_embedding=True,
            gate_trained=True,  # a random gate, so that the demo shows per-image depths
        )
    else:  # swin-t: Mask2Former defaults otherwise (6 encoder layers, exits 2..6, 9 decoder layers, 100 queries)
        swin = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                          out_features=STAGES)
        config = EcoMask2FormerConfig(backbone_config=swin, num_labels=133, gate_trained=True)
    model = EcoMask2FormerForUniversalSegmentation(config).eval()
    return model if args.raw_random else condition_random_model(model)


def condition_random_model(model: EcoMask2FormerForUniversalSegmentation) -> EcoMask2FormerForUniversalSegmentation:
    """Make a random model's comparison about the export rather than about float noise.

    At random init the mask logits sit within ~1e-4 of 0, where the transformer decoder's `sigmoid < 0.5` attention
    mask flips on float rounding (about 1 image in 150 in a tiny model), so PyTorch and onnxruntime then differ by
    ~1e-3; the gate's logits are near ties too. Larger last mask-embedding weights and a wider gate fix both (trained
    models have O(1) logits).
    """
    with torch.no_grad():
        mask_embedder = model.model.transformer_module.decoder.mask_predictor.mask_embedder
        [layer for layer in mask_embedder.modules() if isinstance(layer, torch.nn.Linear)][-1].weight.mul_(300.0)
        for layer in model.model.pixel_level_module.decoder.gate.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 3.0)
    return model


def quiet_session(path: Path) -> ort.InferenceSession:
    """A CPU session whose threads sleep between runs (spinning threads would slow the PyTorch timings after it)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up (session creation, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def main() -> None:
    args = parse_args()
    model = build_model(args)
    image_size = tuple(args.image_size or ((96, 128) if args.tiny_random else (512, 512)))
    out = Path(args.out)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {params:.1f} M parameters, exits {model.config.exit_layers}, image {image_size}")

    start = time.perf_counter()
    manifest = export_gated_onnx(model, folder=out, image_size=image_size, exits=args.exits, opset=args.opset)
    print(f"gated export: {time.perf_counter() - start:.1f} s ({manifest['export_seconds']})")
    for depth in args.fixed_depth:
        start = time.perf_counter()
        export_fixed_depth_onnx(model, depth=depth, path=out / f"depth_{depth}.onnx", image_size=image_size,
                                opset=args.opset)
        print(f"depth_{depth}.onnx export: {time.perf_counter() - start:.1f} s")

    print("files:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name:<28} {path.stat().st_size / 2**20:9.2f} MiB")

    pixel_values = torch.randn(args.batch, 3, *image_size, generator=torch.Generator().manual_seed(1))
    graphs = [manifest["stem"], *manifest["segments"], manifest["tail"]]
    sessions = {graph["file"]: quiet_session(out / graph["file"]) for graph in graphs}  # reused by run_exported
    with torch.no_grad():
        expected = model(pixel_values=pixel_values, output_gate_logits=True)
    got = run_exported(out, pixel_values, sessions=sessions)
    print(f"gated, batch {args.batch}: depths onnxruntime {got['encoder_layers_used'].tolist()} "
          f"pytorch {expected.encoder_layers_used.tolist()}; max |diff| class "
          f"{max_diff(got['class_queries_logits'], expected.class_queries_logits):.2e}, masks "
          f"{max_diff(got['masks_queries_logits'], expected.masks_queries_logits):.2e}, gate "
          f"{max_diff(got['gate_logits'], expected.gate_logits):.2e}")
    model64 = copy.deepcopy(model).double() if args.fp64_check else None
    for depth in manifest["exported_exits"]:
        with torch.no_grad():
            expected = model(pixel_values=pixel_values, num_encoder_layers=depth)
        got = run_exported(out, pixel_values, depth=depth, sessions=sessions)
        print(f"depth {depth}: max |diff| class "
              f"{max_diff(got['class_queries_logits'], expected.class_queries_logits):.2e}, masks "
              f"{max_diff(got['masks_queries_logits'], expected.masks_queries_logits):.2e}"
              f" (|mask logits| median {expected.masks_queries_logits.abs().median():.1e})")
        if model64 is not None:
            with torch.no_grad():
                gold = model64(pixel_values=pixel_values.double(), num_encoder_layers=depth)
            for name, ours in (("pytorch fp32", expected), ("onnxruntime", got)):
                print(f"  {name} vs float64 pytorch: class "
                      f"{max_diff(ours['class_queries_logits'], gold.class_queries_logits):.2e}, masks "
                      f"{max_diff(ours['masks_queries_logits'], gold.masks_queries_logits):.2e}")

    fixed = {depth: quiet_session(out / f"depth_{depth}.onnx") for depth in args.fixed_depth}
    for depth, session in fixed.items():
        with torch.no_grad():
            expected = model(pixel_values=pixel_values, num_encoder_layers=depth)
        class_logits, mask_logits = session.run(None, {"pixel_values": pixel_values.numpy()})
        print(f"depth_{depth}.onnx: max |diff| class {max_diff(class_logits, expected.class_queries_logits):.2e}, "
              f"masks {max_diff(mask_logits, expected.masks_queries_logits):.2e}")

    if args.benchmark:
        image = pixel_values[:1]
        print(f"latency, batch 1, median of {args.benchmark} ({torch.get_num_threads()} torch threads, pytorch eager "
              f"with deformable core {model.config.deformable_attention_implementation!r}, load average "
              f"{os.getloadavg()[0]:.1f}):")
        for depth in manifest["exported_exits"]:
            onnx_s = median_seconds(lambda: run_exported(out, image, depth=depth, sessions=sessions), args.benchmark)
            with torch.no_grad():
                torch_s = median_seconds(lambda: model(pixel_values=image, num_encoder_layers=depth), args.benchmark)
            line = f"  depth {depth}: onnxruntime gated {onnx_s * 1e3:8.1f} ms   pytorch {torch_s * 1e3:8.1f} ms"
            if depth in fixed:
                feed = {"pixel_values": image.numpy()}
                single_s = median_seconds(lambda: fixed[depth].run(None, feed), args.benchmark)
                line += f"   depth_{depth}.onnx {single_s * 1e3:8.1f} ms"
            print(line)


if __name__ == "__main__":
    main()
