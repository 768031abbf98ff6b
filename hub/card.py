"""Model card (README.md) of an EcoMask2Former Hub folder: YAML metadata, measured results, the gate, usage.

Evaluation results come from an optional JSON file (or dict) with this schema; every number is copied as given,
and without the file the card says that metrics were not measured (no number is ever made up):

    {
      "dataset": {"name": "COCO panoptic", "id": "detection-datasets/coco", "split": "val2017"},
      "exits": [{"depth": 2, "pq": 48.1, "gflops": 190.2}, {"depth": 6, "pq": 52.9, "gflops": 232.0}],
      "gate": {"pq": 52.1, "gflops": 202.4, "mean_depth": 3.4}
    }

* `dataset` (required): a name, or an object with `name` (required), `id` (a Hub dataset id, optional: it goes into
  the card's `datasets` metadata) and `split` (optional).
* `exits` (optional): per fixed encoder depth `depth` (one of `config.exit_layers`, each at most once), the
  panoptic quality `pq` in [0, 100] and the model's `gflops` (> 0, one multiply-add = one FLOP).
* `gate` (optional): the same with the trained gate choosing the depth per image, and `mean_depth` (the mean number
  of encoder layers used, within the exits' range).
At least one of `exits` and `gate` is required; unknown keys are errors (they are usually typos).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

PLOT_FILE_NAME = "pq_gflops_tradeoff.png"
RESULTS_FILE_NAME = "ecom2f_eval_results.json"
CARD_TAGS = ["ecom2f", "eco-m2f", "mask2former", "early-exit", "panoptic-segmentation", "image-segmentation"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class EvalResultsError(ValueError):
    """The evaluation-results JSON does not follow the documented schema."""


@dataclass(frozen=True)
class ExitResult:
    depth: int
    pq: float
    gflops: float


@dataclass(frozen=True)
class GateResult:
    pq: float
    gflops: float
    mean_depth: float


@dataclass(frozen=True)
class EvalResults:
    """Validated evaluation results (see the module docstring for the JSON schema)."""

    dataset_name: str
    dataset_id: str | None
    dataset_split: str | None
    exits: tuple[ExitResult, ...]
    gate: GateResult | None

    def to_json_dict(self) -> dict:
        dataset = {"name": self.dataset_name}
        dataset.update({k: v for k, v in (("id", self.dataset_id), ("split", self.dataset_split)) if v is not None})
        data: dict = {"dataset": dataset, "exits": [vars(e) for e in self.exits]}
        if self.gate is not None:
            data["gate"] = vars(self.gate)
        return data


def _check_keys(obj, *, field: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise EvalResultsError(f"{field} must be an object, got {type(obj).__name__}")
    missing, unknown = required - obj.keys(), obj.keys() - required - optional
    if missing:
        raise EvalResultsError(f"{field} is missing {sorted(missing)}")
    if unknown:
        raise EvalResultsError(f"{field} has unknown keys {sorted(unknown)} (allowed: {sorted(required | optional)})")
    return obj


def _number(value, *, field: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvalResultsError(f"{field} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise EvalResultsError(f"{field}={value!r} is outside {bounds}")
    return float(value)


def _text(value, *, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EvalResultsError(f"{field} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_eval_results(data: dict | str | Path, *, exit_layers: list[int]) -> EvalResults:
    """Validate evaluation results given as a dict or a JSON file path against the schema and the model's exits.

    Raises:
        EvalResultsError: a schema violation, naming the field.
        FileNotFoundError: the JSON file does not exist.
    """
    if isinstance(data, (str, Path)):
        try:
            data = json.loads(Path(data).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise EvalResultsError(f"evaluation results file {data} is not valid JSON: {error}") from None
    data = _check_keys(data, field="evaluation results", required={"dataset"}, optional={"exits", "gate"})
    if "exits" not in data and "gate" not in data:
        raise EvalResultsError("evaluation results need 'exits', 'gate' or both")
    dataset = data["dataset"]
    if isinstance(dataset, str):
        dataset = {"name": dataset}
    dataset = _check_keys(dataset, field="dataset", required={"name"}, optional={"id", "split"})
    name = _text(dataset["name"], field="dataset.name")
    dataset_id = _text(dataset["id"], field="dataset.id") if "id" in dataset else None
    split = _text(dataset["split"], field="dataset.split") if "split" in dataset else None

    exits_data = data.get("exits", [])
    if not isinstance(exits_data, list):
        raise EvalResultsError(f"exits must be a list, got {type(exits_data).__name__}")
    exits = []
    for i, entry in enumerate(exits_data):
        entry = _check_keys(entry, field=f"exits[{i}]", required={"depth", "pq", "gflops"})
        depth = entry["depth"]
        if isinstance(depth, bool) or not isinstance(depth, int) or depth not in exit_layers:
            raise EvalResultsError(f"exits[{i}].depth={depth!r} is not one of the model's exits {exit_layers}")
        if any(e.depth == depth for e in exits):
            raise EvalResultsError(f"exits[{i}].depth={depth} appears twice")
        pq = _number(entry["pq"], field=f"exits[{i}].pq", low=0.0, high=100.0)
        gflops = _number(entry["gflops"], field=f"exits[{i}].gflops", low=0.0, low_open=True)
        exits.append(ExitResult(depth=depth, pq=pq, gflops=gflops))

    gate = None
    if "gate" in data:
        entry = _check_keys(data["gate"], field="gate", required={"pq", "gflops", "mean_depth"})
        gate = GateResult(
            pq=_number(entry["pq"], field="gate.pq", low=0.0, high=100.0),
            gflops=_number(entry["gflops"], field="gate.gflops", low=0.0, low_open=True),
            mean_depth=_number(
                entry["mean_depth"], field="gate.mean_depth", low=float(min(exit_layers)), high=float(max(exit_layers))
            ),
        )
    return EvalResults(
        dataset_name=name, dataset_id=dataset_id, dataset_split=split,
        exits=tuple(sorted(exits, key=lambda e: e.depth)), gate=gate,
    )


def check_plot(path: str | Path) -> Path:
    """The trade-off plot must be an existing PNG file; returns its path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trade-off plot {path} does not exist")
    with path.open("rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError(f"trade-off plot {path} is not a PNG file")
    return path


def _card_metadata(*, model_name: str, results: EvalResults | None, license_id: str | None, tags: list[str]) -> str:
    eval_results = []
    if results is not None:
        common = dict(
            task_type="image-segmentation", task_name="Panoptic segmentation",
            dataset_type=results.dataset_id or re.sub(r"[^a-z0-9]+", "-", results.dataset_name.lower()).strip("-"),
            dataset_name=results.dataset_name, dataset_split=results.dataset_split,
        )
        rows = [(f"exit at {e.depth} encoder layers", e.pq, e.gflops) for e in results.exits]
        if results.gate is not None:
            rows.append((f"gate, mean depth {results.gate.mean_depth:g}", results.gate.pq, results.gate.gflops))
        for label, pq, gflops in rows:
            eval_results.append(EvalResult(metric_type="pq", metric_value=pq, metric_name=f"PQ ({label})", **common))
            eval_results.append(
                EvalResult(metric_type="gflops", metric_value=gflops, metric_name=f"GFLOPs ({label})", **common)
            )
    data = ModelCardData(
        library_name="transformers", pipeline_tag="image-segmentation", license=license_id,
        tags=list(dict.fromkeys(CARD_TAGS + tags)),
        datasets=[results.dataset_id] if results is not None and results.dataset_id else None,
        model_name=model_name if eval_results else None, eval_results=eval_results or None,
    )
    return data.to_yaml()


def _results_section(results: EvalResults | None, *, plot_name: str | None) -> str:
    if results is None:
        text = (
            "Metrics were not measured for this model: no evaluation results were given, so this card reports "
            "no PQ or GFLOPs figures."
        )
    else:
        split = f", {results.dataset_split}" if results.dataset_split else ""
        lines = [
            f"Panoptic quality on {results.dataset_name}{split}, from the evaluation results given with the model.",
            "",
            "| Encoder depth | PQ | GFLOPs |",
            "|---|---|---|",
        ]
        lines += [f"| exit at {e.depth} layers | {e.pq:g} | {e.gflops:g} |" for e in results.exits]
        if results.gate is not None:
            gate = results.gate
            lines.append(f"| gate (mean {gate.mean_depth:g} layers) | {gate.pq:g} | {gate.gflops:g} |")
        text = "\n".join(lines)
    if plot_name is not None:
        text += f"\n\n![PQ against GFLOPs per exit and for the gate]({plot_name})"
    return text


def _gate_section(config) -> str:
    exits = ", ".join(str(k) for k in config.exit_layers)
    if config.gate_trained:
        return (
            f"The gate is trained: without `num_encoder_layers`, it picks the encoder depth of each image among "
            f"the exits ({exits}). Pass `num_encoder_layers=k` to force a depth."
        )
    return (
        f"**The gate of this model was never trained** (`config.gate_trained=False`): without "
        f"`num_encoder_layers` the model runs the deepest exit ({config.max_exit} layers) for every image, so it "
        f"gives no savings until the gate is trained (ECO-M2F step 3). Allowed exits: {exits}."
    )


def render_model_card(
    *, config, repo_id: str | None, results: EvalResults | None, plot_name: str | None,
    license_id: str | None = None, tags: list[str] | None = None,
) -> str:
    """The full README.md text of the Hub folder of a model with this `EcoMask2FormerConfig`."""
    model_id = repo_id or "<namespace>/<repository>"
    model_name = repo_id.split("/")[-1] if repo_id else "ecom2f-model"
    metadata = _card_metadata(model_name=model_name, results=results, license_id=license_id, tags=list(tags or []))
    backbone = getattr(config.backbone_config, "model_type", None) or "default"
    return f"""---
{metadata.rstrip()}
---

# {model_name}

Mask2Former for panoptic, instance and semantic segmentation with ECO-M2F input-adaptive encoder depth: a small
gate picks, per image, how many layers of the pixel decoder's deformable encoder to run
(`EcoMask2FormerForUniversalSegmentation`, custom code: load it with `trust_remote_code=True`).

| Setting | Value |
|---|---|
| Backbone | {backbone} |
| Encoder layers | {config.encoder_layers} |
| Exits | {", ".join(str(k) for k in config.exit_layers)} |
| Gate trained | {"yes" if config.gate_trained else "no"} |
| Labels | {config.num_labels} |

## Results

{_results_section(results, plot_name=plot_name)}

## Gate

{_gate_section(config)}

## Usage

```python
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation, pipeline

model = AutoModelForUniversalSegmentation.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained("{model_id}", trust_remote_code=True)

image = Image.open("image.jpg")
inputs = processor(images=image, return_tensors="pt")
outputs = model(**inputs)  # or model(**inputs, num_encoder_layers=k) for a fixed depth
result = processor.post_process_panoptic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
print(result["segments_info"], "encoder layers used:", result["encoder_layers_used"])

segmenter = pipeline("image-segmentation", model="{model_id}", trust_remote_code=True)
print(segmenter(image, subtask="panoptic"))  # or subtask="instance" / "semantic"
```
"""


__all__ = [
    "EvalResults", "EvalResultsError", "ExitResult", "GateResult", "PLOT_FILE_NAME", "RESULTS_FILE_NAME",
    "check_plot", "parse_eval_results", "render_model_card",
]
