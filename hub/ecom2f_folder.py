"""Turn a saved EcoMask2Former model folder into a Hub repository folder that loads with `trust_remote_code=True`:
the EcoMask2Former `HubFolderSpec` of the project's one Hub folder writer (`hub.folder`).

The Hub folder holds `config.json` (with `auto_map` for AutoConfig, AutoModel (`EcoMask2FormerModel`),
AutoModelForUniversalSegmentation and AutoModelForImageSegmentation, the last one being what
`pipeline("image-segmentation")` needs), `model.safetensors`, `preprocessor_config.json` (with its
AutoImageProcessor `auto_map`), the flat custom-code files (`configuration_ecom2f.py`, `modeling_ecom2f.py` and its
sibling modules, `image_processing_ecom2f.py`; see `hub.sources`), and a model card `README.md` (see
`hub.card`), plus the trade-off plot and the evaluation results when given.

Command line (also `python -m hub.ecom2f_folder`); it writes an EcoDeformableDetr folder's too, by its
`model_type`:

    ecom2f-hub-folder MODEL_DIR OUTPUT_DIR [--eval-results RESULTS.json] [--plot PLOT.png] [--repo-id NS/NAME]
                  [--license ID] [--overwrite]

A failed write leaves no half-written OUTPUT_DIR. A model whose gate was never trained is written with an
`UntrainedGateWarning`, and its card says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from configuration.configuration_ecom2f import EcoMask2FormerConfig
from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerModel
from processing.image_processing_ecom2f import EcoMask2FormerImageProcessor

from hub import folder as hub_folder
from hub.eco_deformable_detr_folder import DETR_SPEC
from hub.card import check_plot, parse_eval_results, render_model_card
from hub.folder import HubFolderSpec

ECOM2F_SPEC = HubFolderSpec(
    name="EcoMask2Former",
    config_class=EcoMask2FormerConfig,
    model_class=EcoMask2FormerForUniversalSegmentation,
    base_model_class=EcoMask2FormerModel,
    processor_class=EcoMask2FormerImageProcessor,
    task_auto_classes=("AutoModelForUniversalSegmentation", "AutoModelForImageSegmentation"),
    render_card=render_model_card,
    parse_results=parse_eval_results,
    check_plot=check_plot,
    resave_hint=" (a stock Mask2Former checkpoint loads unchanged)",
)
SPECS = (ECOM2F_SPEC, DETR_SPEC)
"""Every model type the Hub folder writer knows; the command line picks one by the folder's `model_type`."""


def write_model_hub_folder(*, model_dir: str | Path, output_dir: str | Path, **options) -> Path:
    """Write the EcoMask2Former saved in `model_dir` as a Hub repository folder `output_dir`; returns `output_dir`.

    `hub.folder.write_hub_folder` with `ECOM2F_SPEC`; `options` are its keywords: `eval_results` (a dict or a JSON
    path, schema in `hub.card`) and `plot` (a PNG of PQ against GFLOPs) for the card, `repo_id`,
    `license_id`, `image_processor` (an `EcoMask2FormerImageProcessor`), `tags`, `overwrite`. Errors: see there.
    """
    return hub_folder.write_hub_folder(ECOM2F_SPEC, model_dir=model_dir, output_dir=output_dir, **options)


def main(argv: list[str] | None = None) -> int:
    """Console entry point `ecom2f-hub-folder`; returns the exit status (2 on a bad input, with the reason)."""
    return hub_folder.main(argv, specs=SPECS, prog="ecom2f-hub-folder")


if __name__ == "__main__":
    sys.exit(main())
