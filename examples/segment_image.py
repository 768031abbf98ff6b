"""Segment one image at every encoder exit (and with the gate) and write panoptic overlays.

    python examples/segment_image.py                         # a small random-init model on a bundled synthetic image
    python examples/segment_image.py --model_dir DIR --image photo.jpg

Without `--model_dir` the model is a small random-init EcoMask2Former (no pretrained weights exist offline), so the
segments are meaningless: the run shows the machinery (exits, gate, overlays, timings). Train one with
`examples/run_eco_m2f.py` for real segments.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import SwinConfig

from modeling_ecom2f import EcoMask2FormerConfig, EcoMask2FormerForUniversalSegmentation
from modeling_ecom2f.data import SyntheticPanopticConfig, draw_panoptic_overlay, render_synthetic_sample

try:  # the project's processor when present, else the stock one
    from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor as Processor
except ImportError:  # pragma: no cover
    from transformers import Mask2FormerImageProcessor as Processor


def small_random_model(*, id2label: dict[int, str], seed: int) -> EcoMask2FormerForUniversalSegmentation:
    torch.manual_seed(seed)
    backbone = SwinConfig(
        embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=7, drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = EcoMask2FormerConfig(
        backbone_config=backbone, feature_size=64, mask_feature_size=64, hidden_dim=64, num_attention_heads=4,
        encoder_feedforward_dim=128, dim_feedforward=128, encoder_layers=6, decoder_layers=4, num_queries=20,
        id2label=id2label, label2id={v: k for k, v in id2label.items()}, gate_trained=True,
    )
    return EcoMask2FormerForUniversalSegmentation(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", help="a saved EcoMask2Former or stock Mask2Former folder")
    parser.add_argument("--image", help="an image file (default: a bundled synthetic scene)")
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--size", type=int, default=256, help="shorter side fed to the model")
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="segment score threshold (default 0.5 for a loaded model, 0.0 for the random-init demo)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    synthetic = SyntheticPanopticConfig(height=256, width=256, seed=args.seed)
    if args.image:
        image = np.asarray(Image.open(args.image).convert("RGB"))
    else:
        image = render_synthetic_sample(config=synthetic, split="validation", index=7).image
    if args.model_dir:
        model = EcoMask2FormerForUniversalSegmentation.from_pretrained(args.model_dir).eval()
    else:
        model = small_random_model(id2label=dict(synthetic.id2label), seed=args.seed)
    threshold = args.threshold if args.threshold is not None else (0.5 if args.model_dir else 0.0)
    processor = Processor(size={"shortest_edge": args.size, "longest_edge": 4 * args.size})
    inputs = processor(images=[image], return_tensors="pt")
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = [image.shape[:2]]
    depths = list(model.config.exit_layers) + [None]  # None: the gate decides
    summary = []
    for depth in depths:
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"], num_encoder_layers=depth)
        seconds = time.perf_counter() - start
        result = processor.post_process_panoptic_segmentation(
            outputs, threshold=threshold, label_ids_to_fuse=set(), target_sizes=target
        )[0]
        used = int(outputs.encoder_layers_used[0])
        name = "gate" if depth is None else f"exit{depth}"
        segmentation, segments_info, kind = result["segmentation"], result["segments_info"], "panoptic"
        if not segments_info:  # no query passed the threshold (random weights): show the semantic map instead
            semantic = processor.post_process_semantic_segmentation(outputs, target_sizes=target)[0]
            segmentation, kind = semantic + 1, "semantic"
            segments_info = [{"id": int(c) + 1, "label_id": int(c)} for c in semantic.unique()]
        draw_panoptic_overlay(
            image=image, segmentation=segmentation, segments_info=segments_info, id2label=model.config.id2label,
            title=f"{name} ({kind}): {used} encoder layers, {1000 * seconds:.0f} ms",
            output_path=out_dir / f"overlay_{name}.png",
        )
        summary.append({"variant": name, "encoder_layers": used, "drawn": kind, "segments": len(segments_info),
                        "latency_ms": round(1000 * seconds, 1)})
        print(f"{name:>6}: {used} encoder layers, {len(segments_info)} {kind} segments, {1000 * seconds:.0f} ms")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"overlays and summary.json written to {out_dir}/")


if __name__ == "__main__":
    main()
