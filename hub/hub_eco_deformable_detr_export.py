"""Turn a saved EcoDeformableDetr detector folder into a Hub repository folder that loads with
`trust_remote_code=True` (AutoConfig, AutoModelForObjectDetection, AutoImageProcessor, and so
`pipeline("object-detection")`).

The export holds `config.json` and `preprocessor_config.json` with their `auto_map`, `model.safetensors` (the stock
Deformable DETR file keys plus the gate), the flat custom-code files (`configuration_eco_deformable_detr.py`,
`configuration_ecom2f.py`, `modeling_eco_deformable_detr.py` and its `ecom2f_*` siblings,
`image_processing_eco_deformable_detr.py`; see `hub.hub_ecom2f_sources`) and a short model card.

Command line: `python -m hub.hub_eco_deformable_detr_export MODEL_DIR OUTPUT_DIR [--repo-id NS/NAME] [--overwrite]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from configuration.configuration_eco_deformable_detr import EcoDeformableDetrConfig
from modeling_ecom2f import EcoDeformableDetrForObjectDetection
from processing.image_processing_eco_deformable_detr import EcoDeformableDetrImageProcessor

from hub.hub_ecom2f_export import (
    CONFIG_FILE,
    PROCESSOR_FILE,
    WEIGHT_FILES,
    NotAnEcoModelError,
    UntrainedGateWarning,
    _class_ref,
    _prepare_output,
)
from hub.hub_ecom2f_sources import collect_code_files, write_code_files


def detection_config_auto_map() -> dict[str, str]:
    """`auto_map` of the exported `config.json`."""
    return {
        "AutoConfig": _class_ref(EcoDeformableDetrConfig),
        "AutoModelForObjectDetection": _class_ref(EcoDeformableDetrForObjectDetection),
    }


def detection_processor_auto_map() -> dict[str, str]:
    """`auto_map` of the exported `preprocessor_config.json`."""
    return {"AutoImageProcessor": _class_ref(EcoDeformableDetrImageProcessor)}


def _check_folder(model_dir: Path) -> None:
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise NotAnEcoModelError(f"{model_dir} is not a saved model folder: it has no {CONFIG_FILE}")
    model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    if model_type != EcoDeformableDetrConfig.model_type:
        raise NotAnEcoModelError(
            f"{config_path} has model_type={model_type!r}, not {EcoDeformableDetrConfig.model_type!r}; load it with "
            "EcoDeformableDetrForObjectDetection.from_pretrained and save it with save_pretrained first"
        )
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise NotAnEcoModelError(f"{model_dir} has no safetensors weights (looked for {', '.join(WEIGHT_FILES)})")


def _model_card(config: EcoDeformableDetrConfig, repo_id: str | None) -> str:
    name = repo_id or "path/to/this/folder"
    gate = (
        "The gate is trained: without `num_encoder_layers` it picks each image's encoder depth."
        if config.gate_trained
        else f"The gate was never trained: every image runs the deepest exit ({config.max_exit} encoder layers)."
    )
    stages = config.token_scaling_layers or "none (every layer sees every level)"
    return f"""---
library_name: transformers
pipeline_tag: object-detection
tags: [eco-m2f, pro-scale, deformable-detr, custom_code]
---

# EcoDeformableDetr

Deformable DETR with input-adaptive encoder depth (ECO-M2F early exit and gate) and progressive token scaling
(PRO-SCALE). Allowed encoder exits: {config.exit_layers}. Token-scaling stages (coarse to fine): {stages}.
{gate}

```python
from transformers import AutoModelForObjectDetection, pipeline

model = AutoModelForObjectDetection.from_pretrained("{name}", trust_remote_code=True)
detector = pipeline("object-detection", model="{name}", trust_remote_code=True)
```

`outputs.encoder_layers_used` gives the depth of each image; `num_encoder_layers=` fixes it (an int or one per image).
"""


def export_detection_model_folder(
    *, model_dir: str | Path, output_dir: str | Path, repo_id: str | None = None, overwrite: bool = False
) -> Path:
    """Export the detector saved in `model_dir` as a Hub repository folder `output_dir`; returns `output_dir`.

    Raises:
        NotAnEcoModelError: `model_dir` is not an EcoDeformableDetr folder.
        ExportSourceError: the sources contain an import that cannot work as Hub custom code.
        FileExistsError: `output_dir` is not empty and `overwrite` is off.

    Warns:
        UntrainedGateWarning: `config.gate_trained` is `False`.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    _check_folder(model_dir)
    _prepare_output(output_dir, model_dir, overwrite=overwrite)
    code_files = collect_code_files(
        entry_modules=(EcoDeformableDetrForObjectDetection.__module__, EcoDeformableDetrImageProcessor.__module__)
    )
    model, info = EcoDeformableDetrForObjectDetection.from_pretrained(model_dir, output_loading_info=True)
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[key]}
    if problems:
        raise NotAnEcoModelError(f"the weights in {model_dir} do not match EcoDeformableDetr's modules: {problems}")
    if (model_dir / PROCESSOR_FILE).is_file():
        processor = EcoDeformableDetrImageProcessor.from_pretrained(model_dir)
    else:
        processor = EcoDeformableDetrImageProcessor()
    if not model.config.gate_trained:
        warnings.warn(
            f"the gate of the model in {model_dir} was never trained: the export runs the deepest exit",
            UntrainedGateWarning,
            stacklevel=2,
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    try:
        model.config.auto_map = detection_config_auto_map()
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        processor_json = staging / PROCESSOR_FILE
        data = json.loads(processor_json.read_text(encoding="utf-8"))
        data["auto_map"] = detection_processor_auto_map()
        processor_json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_code_files(code_files, folder=staging)
        (staging / "README.md").write_text(_model_card(model.config, repo_id), encoding="utf-8")
        if output_dir.is_dir():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a saved EcoDeformableDetr folder as a Hub repository folder.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--repo-id")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        out = export_detection_model_folder(
            model_dir=args.model_dir, output_dir=args.output_dir, repo_id=args.repo_id, overwrite=args.overwrite
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"hub_eco_deformable_detr_export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.model_dir} -> {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
