"""The demo's model side: load a model folder, turn a compute budget into an encoder depth, segment one image, count
its GFLOPs against full depth and draw the overlay. The Gradio page (`app.py`) only calls `DemoSegmenter.segment`.

Budgets (ECO-M2F, arXiv 2404.15244, Sec. 3.3; the utility gate and its calibration are this project's):
- `gate`: the trained gate picks the depth; a utility gate at the given beta (`argmax_k(pred_k - beta * k)`), a
  classification gate as trained;
- `budget`: a target share of full-depth encoder GFLOPs, turned into a utility gate's beta by the recipe's
  `calibrate_beta` on the calibration images (the bundled examples);
- `fixed`: one exit for every image.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation, EcoMask2FormerImageProcessor
from modeling_ecom2f.data import draw_panoptic_overlay
from modeling_ecom2f.ecom2f_flops import count_gflops
from modeling_ecom2f.recipe.routing import calibrate_beta

TASKS = ("panoptic", "instance", "semantic")
BUDGET_MODES = ("gate", "budget", "fixed")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: The page's utility-gate beta slider: (minimum, maximum, step), in PQ fraction per encoder layer (the main job
#: evaluates its gate up to 0.03).
BETA_SLIDER = (0.0, 0.05, 0.0005)


class DemoError(Exception):
    """A problem the page shows as a message (bad upload, missing model folder), never as a traceback."""


@dataclass(frozen=True)
class Budget:
    """How the depth is chosen: `mode` in `BUDGET_MODES`; `beta` for "gate", `share` (of full-depth encoder GFLOPs,
    in (0, 1]) for "budget", `depth` (an allowed exit) for "fixed"."""

    mode: str = "gate"
    beta: float = 0.0
    share: float = 1.0
    depth: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in BUDGET_MODES:
            raise DemoError(f"budget mode must be one of {BUDGET_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class DemoResult:
    """What the page shows for one image."""

    overlay: np.ndarray  # (H, W, 3) uint8: the overlay figure with its legend
    depth: int  # encoder layers this image used
    max_depth: int
    decided_by: str  # e.g. "utility gate, beta 0.003"
    encoder_gflops: float
    total_gflops: float
    full_encoder_gflops: float
    full_total_gflops: float
    latency_ms: float
    segments: int
    predicted_gains: dict[int, float] | None = None  # utility gate: predicted PQ gain per exit
    notes: tuple[str, ...] = ()
    exits: np.ndarray | None = None  # every exit's overlay side by side, when asked


@dataclass
class _Calibration:
    predictions: np.ndarray  # (num_images, num_exits) utility-gate outputs
    exit_costs: list[float]  # encoder GFLOPs of each exit on the calibration images
    betas: dict[float, tuple[float, float]] = field(default_factory=dict)  # share -> (beta, achieved)


def load_image(path: str | Path, *, max_side: int) -> tuple[np.ndarray, list[str]]:
    """An uploaded file as an `(H, W, 3)` uint8 RGB array, resized so that its longer side is at most `max_side`.

    Returns the array and the notes to show (the resize). Raises `DemoError` for anything that is not an image.
    """
    name = Path(path).name
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when far larger
            image = opened.convert("RGB")
    except Image.DecompressionBombError as error:
        raise DemoError(f"'{name}' is too large to decode safely ({error}).") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DemoError(f"'{name}' is not an image this demo can read ({type(error).__name__}); "
                        f"upload a PNG, JPEG, WebP or BMP file.") from None
    notes = []
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    if image.size != (width, height):
        notes.append(f"The image ({width}x{height}) was resized to {image.width}x{image.height} "
                     f"(the demo's limit is {max_side} pixels on the longer side).")
    return np.asarray(image), notes


def example_images(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _png_array(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class DemoSegmenter:
    """One loaded model and processor, with a calibration of the utility gate's beta to encoder budgets."""

    def __init__(self, *, model: EcoMask2FormerForUniversalSegmentation, processor: EcoMask2FormerImageProcessor,
                 calibration_images: list[np.ndarray] = (), threshold: float = 0.5) -> None:
        self.model = model.eval()
        self.processor = processor
        self.threshold = threshold
        config = model.config
        self.exits = [int(k) for k in config.exit_layers]
        self.max_depth = max(self.exits)
        self.gate_kind = config.gate_objective if config.gate_trained else None
        self._full_counts: dict[tuple[int, ...], object] = {}
        self._calibration = self._calibrate(list(calibration_images)) if self.gate_kind == "utility" else None

    @classmethod
    def from_pretrained(cls, source: str, *, calibration_images: list[np.ndarray] = (),
                        threshold: float = 0.5) -> DemoSegmenter:
        """Load a model folder or Hub id (any `from_pretrained` source of an EcoMask2Former or stock Mask2Former).

        Raises `DemoError` with what to do when it cannot be loaded."""
        folder = Path(source)
        if not folder.is_dir() and (folder.is_absolute() or source.startswith(".") or source.count("/") != 1):
            raise DemoError(f"model folder '{source}' does not exist; give a saved model folder or a Hub id "
                            "(owner/name) with --model")
        try:
            model = EcoMask2FormerForUniversalSegmentation.from_pretrained(source)
            processor = EcoMask2FormerImageProcessor.from_pretrained(source)
        except (OSError, ValueError) as error:
            where = "" if folder.is_dir() else f"no folder '{source}' exists here, and as a Hub id: "
            raise DemoError(f"cannot load a segmentation model from '{source}': {where}{error}") from None
        return cls(model=model, processor=processor, calibration_images=calibration_images, threshold=threshold)

    # -- budgets ----------------------------------------------------------------------------------------------

    def _inputs(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        inputs = self.processor(images=images, return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"], "pixel_mask": inputs["pixel_mask"]}

    def _full_depth(self, inputs: dict[str, torch.Tensor]):
        """GFLOPs of one image at full depth, counted once per input shape."""
        key = tuple(inputs["pixel_values"].shape)
        if key not in self._full_counts:
            pixel_values, pixel_mask = inputs["pixel_values"][:1], inputs["pixel_mask"][:1]
            self._full_counts[key] = count_gflops(self.model, pixel_values, pixel_mask=pixel_mask,
                                                  num_encoder_layers=self.max_depth)
        return self._full_counts[key]

    def _calibrate(self, images: list[np.ndarray]) -> _Calibration | None:
        if not images:
            return None
        predictions = []
        for image in images:  # one at a time: the images may differ in size
            inputs = self._inputs([image])
            with torch.inference_mode():
                out = self.model(**inputs, output_gate_logits=True)
            predictions.append(out.gate_logits[0].float().numpy())
        layers = self._full_depth(self._inputs(images[:1])).encoder_layers
        costs = [sum(layers[:k]) for k in self.exits]
        return _Calibration(predictions=np.stack(predictions), exit_costs=costs)

    @property
    def calibration_size(self) -> int:
        return 0 if self._calibration is None else len(self._calibration.predictions)

    @property
    def shallowest_share(self) -> float:
        """Encoder GFLOPs of the shallowest exit as a share of full depth (layer costs may differ: PRO-SCALE)."""
        if self._calibration is None:
            return min(self.exits) / self.max_depth
        return min(self._calibration.exit_costs) / max(self._calibration.exit_costs)

    def beta_for_share(self, share: float) -> tuple[float, float]:
        """The smallest utility-gate beta whose mean encoder cost on the calibration images is at most `share` of
        full depth, and the share it achieves there (`calibrate_beta`)."""
        if self._calibration is None:
            raise DemoError("an encoder budget needs a trained utility gate and calibration images")
        share = round(float(share), 4)
        if not 0.0 < share <= 1.0:
            raise DemoError(f"the encoder budget must be in (0, 1], got {share}")
        cal = self._calibration
        if share not in cal.betas:
            cal.betas[share] = calibrate_beta(cal.predictions, self.exits, target_fraction=share,
                                              exit_costs=cal.exit_costs)
        return cal.betas[share]

    def _request(self, budget: Budget) -> tuple[dict, str, list[str]]:
        """Forward kwargs for a budget, how the depth is decided, and notes for the page."""
        if budget.mode == "fixed":
            depth = self.max_depth if budget.depth is None else int(budget.depth)
            if depth not in self.exits:
                raise DemoError(f"depth {depth} is not an exit of this model; choose one of {self.exits}")
            return {"num_encoder_layers": depth}, f"fixed depth {depth}", []
        if self.gate_kind is None:
            return ({"num_encoder_layers": self.max_depth}, "full depth (no trained gate)",
                    ["This model's gate is not trained (config.gate_trained is false): it runs at full depth; "
                     "choose a fixed depth to compare exits."])
        if self.gate_kind == "classification":
            return ({}, "classification gate (trained for one beta)",
                    ["This model's gate is a classification gate trained for one beta: the beta and the encoder "
                     "budget do not change it."])
        if budget.mode == "gate":
            return {"gate_beta": float(budget.beta)}, f"utility gate, beta {budget.beta:g}", []
        beta, achieved = self.beta_for_share(budget.share)
        note = (f"Budget {budget.share:.0%}: beta {beta:.4g} gives a mean of {achieved:.0%} of full-depth encoder "
                f"GFLOPs on the {self.calibration_size} calibration images.")
        if achieved > budget.share + 1e-9:
            note += " No beta meets this budget: the shallowest exit already costs more."
        return ({"gate_beta": beta},
                f"utility gate, beta {beta:.4g} (calibrated for {budget.share:.0%} of full-depth encoder GFLOPs)",
                [note])

    # -- one image ---------------------------------------------------------------------------------------------

    def _post_process(self, outputs, task: str, size: tuple[int, int]) -> tuple[torch.Tensor, list[dict]]:
        """`(segmentation (H, W) with 0 = void, segments_info)` of image 0 for `task`."""
        target = [size]
        if task == "panoptic":
            result = self.processor.post_process_panoptic_segmentation(
                outputs, threshold=self.threshold, label_ids_to_fuse=set(), target_sizes=target)[0]
            return result["segmentation"], result["segments_info"]
        if task == "instance":
            result = self.processor.post_process_instance_segmentation(
                outputs, threshold=self.threshold, target_sizes=target)[0]
            info = [{**s, "id": int(s["id"]) + 1} for s in result["segments_info"]]  # ids from 0, void -1
            return result["segmentation"].long() + 1, info
        semantic = self.processor.post_process_semantic_segmentation(outputs, target_sizes=target)[0]
        return semantic + 1, [{"id": int(c) + 1, "label_id": int(c)} for c in semantic.unique()]

    def _draw(self, image: np.ndarray, outputs, task: str, title: str) -> tuple[np.ndarray, int]:
        segmentation, info = self._post_process(outputs, task, image.shape[:2])
        png = draw_panoptic_overlay(image=image, segmentation=segmentation, segments_info=info,
                                    id2label=self.model.config.id2label, title=title)
        return _png_array(png), len(info)

    def _draw_exits(self, image: np.ndarray, inputs: dict, task: str, chosen: int) -> np.ndarray:
        panels = []
        with torch.inference_mode():
            for depth, out in self.model.forward_exits(**inputs):
                mark = " (chosen)" if depth == chosen else ""
                panels.append(self._draw(image, out, task, f"exit {depth}{mark}")[0])
        height = max(p.shape[0] for p in panels)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
        return np.concatenate(padded, axis=1)

    def segment(self, image: np.ndarray, *, task: str = "panoptic", budget: Budget = Budget(),
                all_exits: bool = False) -> DemoResult:
        """Segment one `(H, W, 3)` uint8 image within `budget`; raises `DemoError` for what the page should say."""
        if task not in TASKS:
            raise DemoError(f"task must be one of {TASKS}, got {task!r}")
        kwargs, decided_by, notes = self._request(budget)
        try:
            inputs = self._inputs([image])
            gate_run = "num_encoder_layers" not in kwargs and self.gate_kind is not None
            with torch.inference_mode():
                start = time.perf_counter()
                outputs = self.model(**inputs, **kwargs, output_gate_logits=gate_run)
                latency = 1000 * (time.perf_counter() - start)
            counted = count_gflops(self.model, inputs["pixel_values"], pixel_mask=inputs["pixel_mask"], **kwargs)
        except ValueError as error:  # e.g. an image the model cannot run (the message names the bound)
            raise DemoError(f"the model cannot run on this image: {error}") from None
        depth = int(outputs.encoder_layers_used[0])
        full = self._full_depth(inputs)
        gains = None
        if self.gate_kind == "utility" and outputs.gate_logits is not None:
            gains = dict(zip(self.exits, (float(v) for v in outputs.gate_logits[0])))
        title = f"{task}: {depth} of {self.max_depth} encoder layers"
        overlay, segments = self._draw(image, outputs, task, title)
        return DemoResult(
            overlay=overlay, depth=depth, max_depth=self.max_depth, decided_by=decided_by,
            encoder_gflops=counted.encoder, total_gflops=counted.total, full_encoder_gflops=full.encoder,
            full_total_gflops=full.total, latency_ms=latency, segments=segments, predicted_gains=gains,
            notes=tuple(notes), exits=self._draw_exits(image, inputs, task, depth) if all_exits else None,
        )


__all__ = ["BUDGET_MODES", "Budget", "DemoError", "DemoResult", "DemoSegmenter", "TASKS", "example_images",
           "load_image"]
