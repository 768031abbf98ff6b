"""Turn a saved EcoMask2Former model folder into a Hub repository folder that loads with `trust_remote_code=True`.

The export holds `config.json` (with `auto_map` for AutoConfig, AutoModelForUniversalSegmentation and
AutoModelForImageSegmentation, the last one being what `pipeline("image-segmentation")` needs),
`model.safetensors`, `preprocessor_config.json` (with its AutoImageProcessor `auto_map`), the flat custom-code
files (`configuration_ecom2f.py`, `modeling_ecom2f.py` and its sibling modules, `image_processing_ecom2f.py`; see
`hub.hub_ecom2f_sources`), and a model card `README.md` (see `hub.hub_ecom2f_card`), plus the trade-off plot and
the evaluation results when given.

Command line (also `python -m hub.hub_ecom2f_export`):

    ecom2f-export MODEL_DIR OUTPUT_DIR [--eval-results RESULTS.json] [--plot PLOT.png] [--repo-id NS/NAME]
                  [--license ID] [--overwrite]

The export is written to a temporary sibling folder and moved into place at the end, so a failed export leaves
no half-written OUTPUT_DIR. A model whose gate was never trained is exported with an `UntrainedGateWarning`, and its
card says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from configuration.configuration_ecom2f import EcoMask2FormerConfig
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor

from hub.hub_ecom2f_card import (
    PLOT_FILE_NAME,
    RESULTS_FILE_NAME,
    EvalResults,
    check_plot,
    parse_eval_results,
    render_model_card,
)
from hub.hub_ecom2f_sources import collect_code_files, write_code_files

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
MODEL_AUTO_CLASSES = ("AutoModelForUniversalSegmentation", "AutoModelForImageSegmentation")


class NotAnEcoModelError(ValueError):
    """The folder is not an EcoMask2Former model saved with `save_pretrained`."""


class UntrainedGateWarning(UserWarning):
    """The exported model's gate was never trained: it always runs the deepest exit."""


def _class_ref(cls: type) -> str:
    """`auto_map` value of a class: its flat module name (the file name in the export) and its name."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def config_auto_map() -> dict[str, str]:
    """`auto_map` of the exported `config.json`."""
    auto_map = {"AutoConfig": _class_ref(EcoMask2FormerConfig)}
    auto_map.update({name: _class_ref(EcoMask2FormerForUniversalSegmentation) for name in MODEL_AUTO_CLASSES})
    return auto_map


def processor_auto_map() -> dict[str, str]:
    """`auto_map` of the exported `preprocessor_config.json`."""
    return {"AutoImageProcessor": _class_ref(EcoMask2FormerImageProcessor)}


def check_model_folder(model_dir: str | Path) -> Path:
    """Check that `model_dir` holds an EcoMask2Former model saved with `save_pretrained`; returns it as a `Path`.

    Raises:
        NotAnEcoModelError: no folder, no `config.json`, another `model_type`, or no safetensors weights.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NotAnEcoModelError(f"model folder {model_dir} does not exist or is not a folder")
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise NotAnEcoModelError(f"{model_dir} is not a saved model folder: it has no {CONFIG_FILE}")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as error:
        raise NotAnEcoModelError(f"{config_path} is not a JSON object: {error}") from None
    if model_type != EcoMask2FormerConfig.model_type:
        raise NotAnEcoModelError(
            f"{config_path} has model_type={model_type!r}, not {EcoMask2FormerConfig.model_type!r}: {model_dir} is "
            "not an EcoMask2Former model. Load it with EcoMask2FormerForUniversalSegmentation.from_pretrained and "
            "save it with save_pretrained first (a stock Mask2Former checkpoint loads unchanged)."
        )
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise NotAnEcoModelError(f"{model_dir} has no safetensors weights (looked for {', '.join(WEIGHT_FILES)})")
    return model_dir


def _load_model(model_dir: Path) -> EcoMask2FormerForUniversalSegmentation:
    try:
        model, info = EcoMask2FormerForUniversalSegmentation.from_pretrained(model_dir, output_loading_info=True)
    except (RuntimeError, OSError) as error:  # shape mismatches, unreadable weight files
        raise NotAnEcoModelError(f"the weights in {model_dir} do not load into EcoMask2Former: {error}") from error
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[key]}
    if problems:
        raise NotAnEcoModelError(f"the weights in {model_dir} do not match EcoMask2Former's modules: {problems}")
    return model


def _load_processor(model_dir: Path, image_processor) -> EcoMask2FormerImageProcessor:
    if image_processor is not None:
        if not isinstance(image_processor, EcoMask2FormerImageProcessor):
            raise TypeError(
                f"image_processor must be an EcoMask2FormerImageProcessor, got {type(image_processor).__name__}"
            )
        return image_processor
    if (model_dir / PROCESSOR_FILE).is_file():
        return EcoMask2FormerImageProcessor.from_pretrained(model_dir)
    warnings.warn(
        f"{model_dir} has no {PROCESSOR_FILE}: exporting the default EcoMask2FormerImageProcessor "
        "(the stock Mask2Former settings); save your processor into the model folder to export it instead",
        UserWarning,
        stacklevel=3,
    )
    return EcoMask2FormerImageProcessor()


def _prepare_output(output_dir: Path, model_dir: Path, *, overwrite: bool) -> None:
    out, src = output_dir.resolve(), model_dir.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"output folder {output_dir} must be outside the model folder {model_dir} and not contain it")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"output folder {output_dir} exists and is not empty; pass overwrite=True (--overwrite)")


def _write_export(
    staging: Path, *, model, processor, code_files, results: EvalResults | None, plot: Path | None,
    repo_id: str | None, license_id: str | None, tags: list[str] | None,
) -> None:
    model.config.auto_map = config_auto_map()
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    processor_json = staging / PROCESSOR_FILE
    data = json.loads(processor_json.read_text(encoding="utf-8"))
    data["auto_map"] = processor_auto_map()
    processor_json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_code_files(code_files, folder=staging)
    if results is not None:
        (staging / RESULTS_FILE_NAME).write_text(json.dumps(results.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    if plot is not None:
        shutil.copyfile(plot, staging / PLOT_FILE_NAME)
    card = render_model_card(
        config=model.config, repo_id=repo_id, results=results,
        plot_name=PLOT_FILE_NAME if plot is not None else None, license_id=license_id, tags=tags,
    )
    (staging / "README.md").write_text(card, encoding="utf-8")


def export_model_folder(
    *,
    model_dir: str | Path,
    output_dir: str | Path,
    eval_results: dict | str | Path | None = None,
    plot: str | Path | None = None,
    repo_id: str | None = None,
    license_id: str | None = None,
    image_processor: EcoMask2FormerImageProcessor | None = None,
    tags: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the model saved in `model_dir` as a Hub repository folder `output_dir`; returns `output_dir`.

    Args:
        model_dir: a folder written by `EcoMask2FormerForUniversalSegmentation.save_pretrained` (its
            `preprocessor_config.json`, when present, is exported as the image processor).
        output_dir: the repository folder to create (must be empty or absent unless `overwrite`).
        eval_results: measured results, a dict or a JSON path (schema: `hub.hub_ecom2f_card`); `None`: the card
            says that metrics were not measured.
        plot: a PNG of PQ against GFLOPs from the training run, shown in the card.
        repo_id: the Hub id used in the card's usage code and model-index name.
        license_id: a Hub license id for the card metadata (e.g. `"apache-2.0"`).
        image_processor: the processor to export instead of the one saved in `model_dir`.
        tags: extra Hub tags for the card.
        overwrite: replace an existing non-empty `output_dir`.

    Raises:
        NotAnEcoModelError: `model_dir` is not an EcoMask2Former model folder.
        ExportSourceError: the model sources contain an import that cannot work as Hub custom code.
        EvalResultsError, FileNotFoundError: bad `eval_results` or `plot`.
        FileExistsError: `output_dir` is not empty and `overwrite` is off.

    Warns:
        UntrainedGateWarning: `config.gate_trained` is `False` (the card says so too).
    """
    model_dir, output_dir = check_model_folder(model_dir), Path(output_dir)
    config = EcoMask2FormerConfig.from_pretrained(model_dir)
    results = None if eval_results is None else parse_eval_results(eval_results, exit_layers=config.exit_layers)
    plot = None if plot is None else check_plot(plot)
    _prepare_output(output_dir, model_dir, overwrite=overwrite)
    code_files = collect_code_files(
        entry_modules=(EcoMask2FormerForUniversalSegmentation.__module__, EcoMask2FormerImageProcessor.__module__)
    )
    model = _load_model(model_dir)
    processor = _load_processor(model_dir, image_processor)
    if not model.config.gate_trained:
        warnings.warn(
            f"the gate of the model in {model_dir} was never trained (config.gate_trained=False): the export runs "
            f"the deepest exit ({model.config.max_exit} encoder layers) for every image; the model card says so",
            UntrainedGateWarning,
            stacklevel=2,
        )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    try:
        _write_export(
            staging, model=model, processor=processor, code_files=code_files, results=results, plot=plot,
            repo_id=repo_id, license_id=license_id, tags=tags,
        )
        if output_dir.is_dir():
            shutil.rmtree(output_dir)
        elif output_dir.exists():
            output_dir.unlink()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecom2f-export", description="Export a saved EcoMask2Former model folder as a Hub repository folder."
    )
    parser.add_argument("model_dir", type=Path, help="folder written by save_pretrained")
    parser.add_argument("output_dir", type=Path, help="repository folder to create")
    parser.add_argument("--eval-results", type=Path, help="JSON of measured results (schema: hub/hub_ecom2f_card.py)")
    parser.add_argument("--plot", type=Path, help="PNG trade-off plot (PQ against GFLOPs) to show in the card")
    parser.add_argument("--repo-id", help="Hub repository id used in the card (namespace/name)")
    parser.add_argument("--license", dest="license_id", help="Hub license id for the card metadata")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point `ecom2f-export`; returns the exit status (2 on a bad input, with the reason)."""
    args = build_parser().parse_args(argv)
    try:
        out = export_model_folder(
            model_dir=args.model_dir, output_dir=args.output_dir, eval_results=args.eval_results, plot=args.plot,
            repo_id=args.repo_id, license_id=args.license_id, overwrite=args.overwrite,
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"ecom2f-export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.model_dir} -> {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
