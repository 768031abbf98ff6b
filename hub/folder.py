"""One Hub folder writer for every model of the project: a saved model folder -> a repository folder that loads with
`trust_remote_code=True`. What differs between models is an `HubFolderSpec` (the classes, the `auto_map` entries, the
code entry modules, the model card); `hub.ecom2f_folder` and `hub.eco_deformable_detr_folder` hold the specs.

The Hub folder holds `config.json` (its `auto_map`: AutoConfig, AutoModel for the base model, and the task Auto
classes), the weights, `preprocessor_config.json` (with its AutoImageProcessor `auto_map`), the flat custom-code files
reached from the model and processor modules (`hub.sources`) and a model card `README.md`, plus the
evaluation results and trade-off plot when the spec's card takes them. It is written to a temporary sibling folder
and moved into place at the end, so a failed write leaves no half-written output folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.card import PLOT_FILE_NAME, RESULTS_FILE_NAME
from hub.sources import collect_code_files, write_code_files

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class NotAnEcoModelError(ValueError):
    """The folder is not a model of the spec's type saved with `save_pretrained`."""


class UntrainedGateWarning(UserWarning):
    """The model's gate was never trained: its Hub folder always runs the deepest exit."""


@dataclass(frozen=True)
class HubFolderSpec:
    """What one model type needs from the Hub folder writer.

    Attributes:
        name: the model's name in messages (`"EcoMask2Former"`).
        config_class, model_class, base_model_class, processor_class: the classes named in `auto_map`
            (`model_class` is the task model the folder is loaded with; `base_model_class` is the `AutoModel`).
        task_auto_classes: the Auto classes that resolve to `model_class` (pipelines need theirs).
        render_card: `(*, config, repo_id, results, plot_name, license_id, tags) -> str`, the `README.md`.
        parse_results: `(eval_results, *, exit_layers) -> results` (an object with `to_json_dict()`), or `None` when
            the card shows no measured results (then `eval_results` and `plot` are refused).
        check_plot: `(path) -> Path`, checks a trade-off plot (with `parse_results`).
        resave_hint: appended to the "wrong model_type" error.
    """

    name: str
    config_class: type
    model_class: type
    base_model_class: type
    processor_class: type
    task_auto_classes: tuple[str, ...]
    render_card: Callable[..., str]
    parse_results: Callable | None = None
    check_plot: Callable[[str | Path], Path] | None = None
    resave_hint: str = ""

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def entry_modules(self) -> tuple[str, ...]:
        """Where the walk over the custom code starts (the configuration is reached through the model)."""
        return (self.model_class.__module__, self.processor_class.__module__)


def class_ref(cls: type) -> str:
    """`auto_map` value of a class: its flat module name (the file name in the Hub folder) and its name."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def config_auto_map(spec: HubFolderSpec) -> dict[str, str]:
    """`auto_map` of the Hub folder's `config.json`: AutoConfig, AutoModel (the base model) and the task classes."""
    auto_map = {"AutoConfig": class_ref(spec.config_class), "AutoModel": class_ref(spec.base_model_class)}
    auto_map.update({name: class_ref(spec.model_class) for name in spec.task_auto_classes})
    return auto_map


def processor_auto_map(spec: HubFolderSpec) -> dict[str, str]:
    """`auto_map` of the Hub folder's `preprocessor_config.json`."""
    return {"AutoImageProcessor": class_ref(spec.processor_class)}


def read_model_type(model_dir: Path) -> str | None:
    """`model_type` of `model_dir/config.json` (`NotAnEcoModelError` when there is no readable one)."""
    if not model_dir.is_dir():
        raise NotAnEcoModelError(f"model folder {model_dir} does not exist or is not a folder")
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise NotAnEcoModelError(f"{model_dir} is not a saved model folder: it has no {CONFIG_FILE}")
    try:
        return json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as error:
        raise NotAnEcoModelError(f"{config_path} is not a JSON object: {error}") from None


def check_model_folder(model_dir: str | Path, spec: HubFolderSpec) -> Path:
    """Check that `model_dir` holds a model of `spec` saved with `save_pretrained`; returns it as a `Path`.

    Raises:
        NotAnEcoModelError: no folder, no `config.json`, another `model_type`, or no safetensors weights.
    """
    model_dir = Path(model_dir)
    model_type = read_model_type(model_dir)
    if model_type != spec.model_type:
        raise NotAnEcoModelError(
            f"{model_dir / CONFIG_FILE} has model_type={model_type!r}, not {spec.model_type!r}: {model_dir} is not "
            f"an {spec.name} model. Load it with {spec.model_class.__name__}.from_pretrained and save it with "
            f"save_pretrained first{spec.resave_hint}."
        )
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise NotAnEcoModelError(f"{model_dir} has no safetensors weights (looked for {', '.join(WEIGHT_FILES)})")
    return model_dir


def spec_for_model_type(model_type: str | None, specs: Sequence[HubFolderSpec]) -> HubFolderSpec | None:
    """The spec of `model_type` among `specs`, or `None`."""
    return next((spec for spec in specs if spec.model_type == model_type), None)


def _load_model(model_dir: Path, spec: HubFolderSpec):
    try:
        model, info = spec.model_class.from_pretrained(model_dir, output_loading_info=True)
    except (RuntimeError, OSError) as error:  # shape mismatches, unreadable weight files
        raise NotAnEcoModelError(f"the weights in {model_dir} do not load into {spec.name}: {error}") from error
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[key]}
    if problems:
        raise NotAnEcoModelError(f"the weights in {model_dir} do not match {spec.name}'s modules: {problems}")
    return model


def _load_processor(model_dir: Path, spec: HubFolderSpec, image_processor):
    cls = spec.processor_class
    if image_processor is not None:
        if not isinstance(image_processor, cls):
            raise TypeError(f"image_processor must be an {cls.__name__}, got {type(image_processor).__name__}")
        return image_processor
    if (model_dir / PROCESSOR_FILE).is_file():
        return cls.from_pretrained(model_dir)
    warnings.warn(
        f"{model_dir} has no {PROCESSOR_FILE}: the Hub folder gets the default {cls.__name__} (the stock settings); save "
        "your processor into the model folder to use it instead",
        UserWarning,
        stacklevel=4,
    )
    return cls()


def _prepare_output(output_dir: Path, model_dir: Path, *, overwrite: bool) -> None:
    out, src = output_dir.resolve(), model_dir.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"output folder {output_dir} must be outside the model folder {model_dir} and not contain it")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"output folder {output_dir} exists and is not empty; pass overwrite=True (--overwrite)")


def _write_contents(staging: Path, spec: HubFolderSpec, *, model, processor, code_files, results, plot: Path | None,
                  card: dict) -> None:
    model.config.auto_map = config_auto_map(spec)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    processor_json = staging / PROCESSOR_FILE
    data = json.loads(processor_json.read_text(encoding="utf-8"))
    data["auto_map"] = processor_auto_map(spec)
    processor_json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_code_files(code_files, folder=staging)
    if results is not None:
        (staging / RESULTS_FILE_NAME).write_text(json.dumps(results.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    if plot is not None:
        shutil.copyfile(plot, staging / PLOT_FILE_NAME)
    text = spec.render_card(config=model.config, results=results, plot_name=PLOT_FILE_NAME if plot else None, **card)
    (staging / "README.md").write_text(text, encoding="utf-8")


#: Sections of a converted checkpoint's card (`ecom2f-convert`) that a Hub folder keeps: where the weights come from.
PROVENANCE_SECTIONS = ("## Source", "## Figures reported by the authors", "## What the conversion did")


def _carry_provenance(model_dir: Path, staging: Path) -> None:
    """A folder written by `ecom2f-convert` keeps its source (file, SHA-256, the authors' figures) in its Hub folder:
    `conversion.json` is copied and the provenance sections of its card are appended to the Hub folder's card."""
    record = model_dir / "conversion.json"
    if not record.is_file():
        return
    shutil.copyfile(record, staging / record.name)
    card = (model_dir / "README.md").read_text(encoding="utf-8") if (model_dir / "README.md").is_file() else ""
    sections = [part for part in ("\n" + card).split("\n## ")[1:] if f"## {part.splitlines()[0]}" in PROVENANCE_SECTIONS]
    if sections:
        text = (staging / "README.md").read_text(encoding="utf-8").rstrip("\n")
        converted = "\n\n".join("## " + part.strip("\n") for part in sections)
        (staging / "README.md").write_text(f"{text}\n\n{converted}\n", encoding="utf-8")


def write_hub_folder(
    spec: HubFolderSpec,
    *,
    model_dir: str | Path,
    output_dir: str | Path,
    eval_results: dict | str | Path | None = None,
    plot: str | Path | None = None,
    repo_id: str | None = None,
    license_id: str | None = None,
    image_processor=None,
    tags: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the `spec` model saved in `model_dir` as a Hub repository folder `output_dir`; returns `output_dir`.

    Args:
        spec: the model type's `HubFolderSpec`.
        model_dir: a folder written by `save_pretrained` (its `preprocessor_config.json`, when present, is written
            as the image processor).
        output_dir: the repository folder to create (must be empty or absent unless `overwrite`).
        eval_results: measured results, a dict or a JSON path (schema: `hub.card`), for specs whose card
            shows them; `None`: the card says that metrics were not measured.
        plot: a PNG of the quality/GFLOPs trade-off, shown in the card (same specs).
        repo_id: the Hub id used in the card's usage code.
        license_id: a Hub license id for the card metadata (e.g. `"apache-2.0"`).
        image_processor: the processor to write instead of the one saved in `model_dir`.
        tags: extra Hub tags for the card.
        overwrite: replace an existing non-empty `output_dir`.

    Raises:
        NotAnEcoModelError: `model_dir` is not a `spec` model folder.
        HubSourceError: the model sources contain an import that cannot work as Hub custom code.
        EvalResultsError, FileNotFoundError, ValueError: bad `eval_results` or `plot`, or ones the spec cannot show.
        FileExistsError: `output_dir` is not empty and `overwrite` is off.

    Warns:
        UntrainedGateWarning: `config.gate_trained` is `False` (the card says so too).
    """
    model_dir, output_dir = check_model_folder(model_dir, spec), Path(output_dir)
    if spec.parse_results is None and (eval_results is not None or plot is not None):
        raise ValueError(f"the {spec.name} model card shows no measured results: drop eval_results and plot")
    config = spec.config_class.from_pretrained(model_dir)
    results = None if eval_results is None else spec.parse_results(eval_results, exit_layers=config.exit_layers)
    plot = None if plot is None else spec.check_plot(plot)
    _prepare_output(output_dir, model_dir, overwrite=overwrite)
    code_files = collect_code_files(entry_modules=spec.entry_modules)
    model = _load_model(model_dir, spec)
    processor = _load_processor(model_dir, spec, image_processor)
    if not model.config.gate_trained:
        warnings.warn(
            f"the gate of the model in {model_dir} was never trained (config.gate_trained=False): the Hub folder runs "
            f"the deepest exit ({model.config.max_exit} encoder layers) for every image; the model card says so",
            UntrainedGateWarning,
            stacklevel=3,
        )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    try:
        _write_contents(staging, spec, model=model, processor=processor, code_files=code_files, results=results,
                      plot=plot, card={"repo_id": repo_id, "license_id": license_id, "tags": tags})
        _carry_provenance(model_dir, staging)
        if output_dir.is_dir():
            shutil.rmtree(output_dir)
        elif output_dir.exists():
            output_dir.unlink()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def build_parser(prog: str, *, names: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=f"Write a saved {names} model folder as a Hub repository folder.")
    parser.add_argument("model_dir", type=Path, help="folder written by save_pretrained")
    parser.add_argument("output_dir", type=Path, help="repository folder to create")
    parser.add_argument("--eval-results", type=Path, help="JSON of measured results (schema: hub/card.py)")
    parser.add_argument("--plot", type=Path, help="PNG trade-off plot (PQ against GFLOPs) to show in the card")
    parser.add_argument("--repo-id", help="Hub repository id used in the card (namespace/name)")
    parser.add_argument("--license", dest="license_id", help="Hub license id for the card metadata")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    return parser


def run_command(prog: str, action: Callable[[], str], *, failures: dict[type, int] | None = None) -> int:
    """Run a command-line `action` (it returns the success line); a failure prints `prog: error: ...` to stderr and
    returns its status from `failures` (exception type -> status, first match), else 2 for a bad input."""
    failures = failures or {}
    handled = (ValueError, TypeError, OSError, *failures)
    try:
        print(action())
    except handled as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return next((status for kind, status in failures.items() if isinstance(error, kind)), 2)
    return 0


def main(argv: list[str] | None, *, specs: Sequence[HubFolderSpec], prog: str) -> int:
    """Command line of the Hub folder writer: the spec is chosen by the folder's `model_type` (the first one when no spec
    matches, whose checks then say what is wrong). Returns the exit status (2 on a bad input, with the reason)."""
    args = build_parser(prog, names=" or ".join(spec.name for spec in specs)).parse_args(argv)

    def write() -> str:
        model_type = read_model_type(args.model_dir) if args.model_dir.is_dir() else None
        spec = spec_for_model_type(model_type, specs) or specs[0]
        out = write_hub_folder(
            spec, model_dir=args.model_dir, output_dir=args.output_dir, eval_results=args.eval_results,
            plot=args.plot, repo_id=args.repo_id, license_id=args.license_id, overwrite=args.overwrite,
        )
        return f"wrote the Hub folder {out} from {args.model_dir}: {', '.join(sorted(p.name for p in out.iterdir()))}"

    return run_command(prog, write)


__all__ = [
    "CONFIG_FILE", "PROCESSOR_FILE", "WEIGHT_FILES", "HubFolderSpec", "NotAnEcoModelError", "UntrainedGateWarning",
    "check_model_folder", "class_ref", "config_auto_map", "write_hub_folder", "main", "processor_auto_map",
    "read_model_type", "run_command", "spec_for_model_type",
]
