"""`ecom2f-convert`: a detectron2 Mask2Former / ECO-M2F / PRO-SCALE checkpoint -> an EcoMask2Former folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .converter import convert_checkpoint
from .presets import PRESETS, RELEASES
from .reading import ConversionError

_EPILOG = """presets (classes, test size):
{presets}

releases (--release; the card quotes their authors' figures):
{releases}

examples:
  ecom2f-convert eco_m2f_coco.pth runs/eco-m2f-coco --release eco-m2f-swin-tiny-coco-beta0.0005
  ecom2f-convert model_final.pkl runs/m2f-cityscapes --preset cityscapes-panoptic
  ecom2f-convert my_model.pth runs/mine --id2label labels.json --overwrite

Nothing is downloaded: get the files from the authors' pages first. A pickle with anything but tensors, arrays and
containers is refused unless --trust-pickle is given. The output folder appears only when everything succeeded."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecom2f-convert", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a detectron2 checkpoint of Mask2Former, ECO-M2F or PRO-SCALE (Swin or ResNet backbone) "
                    "into an EcoMask2Former from_pretrained folder: model.safetensors, config.json, "
                    "preprocessor_config.json, README.md (model card) and conversion.json (key accounting).",
        epilog=_EPILOG.format(
            presets="\n".join(f"  {p.name:22s} {p.description}, test size {p.shortest_edge}/{p.longest_edge}"
                              for p in PRESETS.values()),
            releases="\n".join(f"  {r.name:38s} {r.page}" for r in RELEASES.values())),
    )
    parser.add_argument("checkpoint", type=Path, help="detectron2 .pth (torch.save) or .pkl (pickled NumPy arrays)")
    parser.add_argument("output_dir", type=Path, help="folder to write (must not exist or be empty, see --overwrite)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="data set: classes, task and test-time size")
    parser.add_argument("--release", choices=sorted(RELEASES),
                        help="a known release: checks the file against it (implies its preset)")
    parser.add_argument("--id2label", type=Path,
                        help="JSON file {index: name} for a data set without a preset (test size: --preset's, else "
                             "800/1333)")
    parser.add_argument("--num_attention_heads", type=int, default=8,
                        help="MASK_FORMER.NHEADS of the checkpoint's config (default: 8, as in every release)")
    parser.add_argument("--trust-pickle", dest="trust_pickle", action="store_true",
                        help="allow arbitrary pickled objects (can run code: only for files you trust)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reloading the written folder and the test forward")
    return parser


def _read_id2label(path: Path | None) -> dict[int, str] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        id2label = {int(k): str(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError) as error:
        raise ConversionError(f"{path}: not a JSON object of index -> class name ({error})") from error
    if sorted(id2label) != list(range(len(id2label))):
        raise ConversionError(f"{path}: class indices must be 0..{len(id2label) - 1}")
    return id2label


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = convert_checkpoint(
            args.checkpoint, args.output_dir, preset=args.preset, id2label=_read_id2label(args.id2label),
            release=args.release, num_attention_heads=args.num_attention_heads, trust_pickle=args.trust_pickle,
            overwrite=args.overwrite, verify=args.verify,
        )
    except ConversionError as error:
        print(f"ecom2f-convert: error: {error}", file=sys.stderr)
        return 2
    summary = result.report.summary()
    print(f"wrote {result.output_dir} ({result.architecture.family}, {result.architecture.backbone.kind}; "
          f"{summary['source_keys_converted']} weights converted, {summary['source_keys_checked_not_stored']} buffers "
          f"checked, {summary['target_keys_new']} new)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
