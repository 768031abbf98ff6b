"""Turn a saved EcoDeformableDetr detector folder into a Hub repository folder that loads with
`trust_remote_code=True` (AutoConfig, AutoModel, AutoModelForObjectDetection, AutoImageProcessor, and so
`pipeline("object-detection")`): the EcoDeformableDetr `HubFolderSpec` of the project's one Hub folder writer
(`hub.folder`).

The Hub folder holds `config.json` and `preprocessor_config.json` with their `auto_map`, `model.safetensors` (the stock
Deformable DETR file keys plus the gate), the flat custom-code files (`configuration_eco_deformable_detr.py`,
`configuration_ecom2f.py`, `modeling_eco_deformable_detr.py` and its `ecom2f_*` siblings,
`image_processing_eco_deformable_detr.py`; see `hub.sources`) and a short model card.

Command line: `python -m hub.eco_deformable_detr_folder MODEL_DIR OUTPUT_DIR [--repo-id NS/NAME] [--overwrite]`
(the same command as `ecom2f-hub-folder`, which picks the model by its `model_type`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from configuration.configuration_eco_deformable_detr import EcoDeformableDetrConfig
from modeling_ecom2f import EcoDeformableDetrForObjectDetection, EcoDeformableDetrModel
from processing.image_processing_eco_deformable_detr import EcoDeformableDetrImageProcessor

from hub import folder as hub_folder
from hub.folder import HubFolderSpec


def render_detection_card(*, config, repo_id: str | None, results=None, plot_name: str | None = None,
                          license_id: str | None = None, tags: list[str] | None = None) -> str:
    """README.md of an EcoDeformableDetr Hub folder (no measured results: `results` and `plot_name` stay `None`)."""
    name = repo_id or "path/to/this/folder"
    gate = (
        "The gate is trained: without `num_encoder_layers` it picks each image's encoder depth."
        if config.gate_trained
        else f"The gate was never trained: every image runs the deepest exit ({config.max_exit} encoder layers)."
    )
    stages = config.token_scaling_layers or "none (every layer sees every level)"
    all_tags = list(dict.fromkeys(["eco-m2f", "pro-scale", "deformable-detr", "custom_code", *(tags or [])]))
    license_line = f"license: {license_id}\n" if license_id else ""
    return f"""---
library_name: transformers
pipeline_tag: object-detection
{license_line}tags: [{", ".join(all_tags)}]
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


DETR_SPEC = HubFolderSpec(
    name="EcoDeformableDetr",
    config_class=EcoDeformableDetrConfig,
    model_class=EcoDeformableDetrForObjectDetection,
    base_model_class=EcoDeformableDetrModel,
    processor_class=EcoDeformableDetrImageProcessor,
    task_auto_classes=("AutoModelForObjectDetection",),
    render_card=render_detection_card,
)


def write_detection_hub_folder(
    *, model_dir: str | Path, output_dir: str | Path, repo_id: str | None = None, overwrite: bool = False,
    license_id: str | None = None, tags: list[str] | None = None,
) -> Path:
    """Write the detector saved in `model_dir` as a Hub repository folder `output_dir`; returns `output_dir`.

    `hub.folder.write_hub_folder` with `DETR_SPEC` (errors and warnings are documented there).
    """
    return hub_folder.write_hub_folder(DETR_SPEC, model_dir=model_dir, output_dir=output_dir, repo_id=repo_id,
                                    license_id=license_id, tags=tags, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    """`python -m hub.eco_deformable_detr_folder`; returns the exit status (2 on a bad input)."""
    return hub_folder.main(argv, specs=(DETR_SPEC,), prog="eco_deformable_detr_folder")


if __name__ == "__main__":
    sys.exit(main())
