"""Segment images at every encoder exit and with the gate, and write overlays that show the segments fill in exit by
exit.

    python examples/segment_image.py                                    # the shipped gated model on its examples
    python examples/segment_image.py --model_dir DIR --image photo.jpg  # another model folder or image

By default the model is the demo's shipped gated EcoMask2Former (`demo/model`, trained by the main job on the
maze-rooms benchmark) and the images are its examples (`demo/examples/`, validation mazes of one to four rooms, never
trained on). For each image the script writes `exits_<image>.png` (the image above the segmentation of every exit,
side by side, then the depth the gate chose) and `gate_<image>.png` (the gate's segmentation blended over the image),
and `summary.json` with each variant's encoder depth, segment count and latency.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerImageProcessor
from modeling_ecom2f.data import draw_panoptic_grid, draw_panoptic_overlay

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "demo" / "model"
DEFAULT_IMAGES = REPO / "demo" / "examples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def segment_at_every_exit(*, model, processor, image: np.ndarray, threshold: float) -> list[dict]:
    """One entry per exit of `model` and one for the gate (`depth` None): the panoptic segmentation of `image`,
    the encoder depth used and the forward's latency."""
    inputs = processor(images=[image], return_tensors="pt")
    variants = []
    for depth in [*model.config.exit_layers, None]:  # None: the gate (or, untrained, the deepest exit) decides
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"],
                            num_encoder_layers=depth)
        seconds = time.perf_counter() - start
        result = processor.post_process_panoptic_segmentation(outputs, threshold=threshold, label_ids_to_fuse=set(),
                                                              target_sizes=[image.shape[:2]])[0]
        variants.append({"variant": "gate" if depth is None else f"exit {depth}",
                         "encoder_layers": int(outputs.encoder_layers_used[0]),
                         "segmentation": result["segmentation"], "segments_info": result["segments_info"],
                         "latency_ms": round(1000 * seconds, 1)})
    return variants


def image_files(path: Path) -> list[Path]:
    """`path` itself, or the images of the folder `path`."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [path]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=str(DEFAULT_MODEL),
                        help="a saved EcoMask2Former or stock Mask2Former folder with its image processor "
                             "(default: the shipped demo model)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGES),
                        help="an image file or a folder of images (default: the demo's example mazes)")
    parser.add_argument("--output_dir", default="outputs/segment_image")
    parser.add_argument("--threshold", type=float, default=0.5, help="segment score threshold")
    args = parser.parse_args(argv)

    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(args.model_dir).eval()
    processor = EcoMask2FormerImageProcessor.from_pretrained(args.model_dir)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for path in image_files(Path(args.image)):
        image = np.asarray(Image.open(path).convert("RGB"))
        variants = segment_at_every_exit(model=model, processor=processor, image=image, threshold=args.threshold)
        captions = [f"{v['variant']}" + (f" (depth {v['encoder_layers']})" if v["variant"] == "gate" else "")
                    + f": {len(v['segments_info'])} segments" for v in variants]
        draw_panoptic_grid(samples=[(image, v["segmentation"], v["segments_info"], caption)
                                    for v, caption in zip(variants, captions)],
                           id2label=model.config.id2label, columns=len(variants),
                           output_path=out_dir / f"exits_{path.stem}.png")
        gate = variants[-1]
        draw_panoptic_overlay(image=image, segmentation=gate["segmentation"], segments_info=gate["segments_info"],
                              id2label=model.config.id2label, output_path=out_dir / f"gate_{path.stem}.png",
                              title=f"gate: {gate['encoder_layers']} of {model.config.max_exit} encoder layers")
        for v in variants:
            summary.append({"image": path.name, "variant": v["variant"], "encoder_layers": v["encoder_layers"],
                            "segments": len(v["segments_info"]), "latency_ms": v["latency_ms"]})
        print(f"{path.name}: " + ", ".join(captions))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"overlays and summary.json written to {out_dir}/")
    return summary


if __name__ == "__main__":
    main()
