"""Fresh-process client: load an exported EcoMask2Former (a folder or a Hub repo id) with the project NOT importable.

    python _hub_load_client.py SOURCE OUT.pt IMAGE [IMAGE ...] [--revision REV] [--threads N] [--prove-block ROOT]

Before anything else it hides the project's packages (`modeling_ecom2f`, `configuration`, `processing`, `hub`)
from every import finder, including the meta-path finder that `pip install -e .` adds, so that only the remote
code of SOURCE can provide the classes. `--prove-block ROOT` first makes the project importable on purpose (ROOT on
`sys.path`, plus a finder like an editable install's) and records that it is, to show that the block defeats both.
It then loads config, model, base model (`AutoModel`), image processor and `pipeline("image-segmentation")` with
`trust_remote_code=True` and saves, with `torch.save`, what `_hub_outputs.segment_outputs` computes plus the import checks and class names.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys

PROJECT = ("modeling_ecom2f", "configuration", "processing", "hub")


class EditableLikeFinder:
    """Finds the project's top-level packages under `root`, as setuptools' editable-install finder does."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, name, path=None, target=None):
        if name in PROJECT:
            return importlib.machinery.PathFinder.find_spec(name, [self.root])
        return None


class HideProject:
    """Wraps a meta-path finder so that it never finds the project's packages; everything else is delegated."""

    def __init__(self, finder) -> None:
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT:
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return None if find_spec is None else find_spec(name, path, target)

    def __getattr__(self, attribute):  # find_distributions, invalidate_caches, ...
        return getattr(self.finder, attribute)


def visible() -> dict[str, bool]:
    return {name: importlib.util.find_spec(name) is not None for name in PROJECT}


def hide_project() -> None:
    for name in [n for n in sys.modules if n.split(".")[0] in PROJECT]:
        del sys.modules[name]
    sys.meta_path[:] = [HideProject(finder) for finder in sys.meta_path]
    importlib.invalidate_caches()


def block_project(prove_block: str | None) -> dict:
    """Hide the project (after making it importable on purpose with `prove_block`); returns the visibility report."""
    report: dict = {}
    if prove_block:
        sys.path.append(prove_block)
        sys.meta_path.insert(0, EditableLikeFinder(prove_block))
        report["visible_before_block"] = visible()
    hide_project()
    report["visible_after_block"] = visible()
    if any(report["visible_after_block"].values()):
        raise SystemExit(f"the import block failed: {report['visible_after_block']}")
    return report


def load_base_model(source: str, **kwargs) -> dict:
    """`AutoModel.from_pretrained(source)`: the base model class (from `auto_map["AutoModel"]`) and its loading info."""
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(source, output_loading_info=True, **kwargs)
    return {"class": f"{type(model).__module__}.{type(model).__name__}",
            "loading_info": {k: sorted(v) for k, v in info.items() if k != "error_msgs"}}


def client_parser() -> argparse.ArgumentParser:
    """The arguments every fresh-process client takes: SOURCE OUT.pt IMAGE [IMAGE ...] [--prove-block ROOT]."""
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--prove-block")
    return parser


def main() -> None:
    parser = client_parser()
    parser.add_argument("--revision")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    report = block_project(args.prove_block)

    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForUniversalSegmentation, pipeline

    from helpers.hub_outputs import segment_outputs
    from helpers.logs import transformers_messages

    torch.set_num_threads(args.threads)
    kwargs = {"trust_remote_code": True, "revision": args.revision}
    config = AutoConfig.from_pretrained(args.source, **kwargs)
    model = AutoModelForUniversalSegmentation.from_pretrained(args.source, **kwargs).eval()
    processor = AutoImageProcessor.from_pretrained(args.source, **kwargs)
    with transformers_messages() as messages:
        pipe = pipeline("image-segmentation", model=args.source, **kwargs)
    report["pipeline_load_messages"] = messages
    images = [Image.open(path).convert("RGB") for path in args.images]

    report["classes"] = {
        role: f"{type(obj).__module__}.{type(obj).__name__}"
        for role, obj in [("config", config), ("model", model), ("processor", processor),
                          ("pipeline_model", pipe.model), ("pipeline_processor", pipe.image_processor)]
    }
    report["base_model"] = load_base_model(args.source, **kwargs)
    report["outputs"] = segment_outputs(model=model, processor=processor, pipe=pipe, images=images)
    report["visible_at_end"] = visible()
    report["project_modules_loaded"] = sorted(n for n in sys.modules if n.split(".")[0] in PROJECT)
    torch.save(report, args.out)


if __name__ == "__main__":
    main()
