"""Export of EcoMask2Former to `torch.export` and ONNX, and a reference onnxruntime runtime (docs/export.md).

Fixed depth: one graph `pixel_values -> (class_queries_logits, masks_queries_logits)`. Gated: exit k runs encoder
layers `[:k]` and nothing else depends on k, so the model is cut into `stem.onnx` (backbone, input projections, gate,
TRC), one `segment_{k}.onnx` per exported exit (layers since the previous one) and `tail.onnx` (FPN, transformer
decoder, class head), described by `manifest.json`. Batch is dynamic; the image size is static (Swin's Python branches
on feature sizes become export guards); no graph takes a `pixel_mask` (they compute the model without one).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .ecom2f_decoder import EcoMaskedCrossAttention
from .ecom2f_msda import EcoMultiscaleDeformableAttention
from .ecom2f_pixel_decoder import EcoMask2FormerEncoderTokens

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "ecom2f-onnx-gated/1"
DEFAULT_OPSET = 18
# `grid_sample` becomes ONNX GridSample; `embedding_bag` becomes a Loop over bags, far slower in onnxruntime.
EXPORT_MSDA_IMPLEMENTATION = "reference"
LOGIT_NAMES = ["class_queries_logits", "masks_queries_logits"]


@contextlib.contextmanager
def export_mode(model: nn.Module, *, attn_implementation: str | None = "eager") -> Iterator[nn.Module]:
    """Temporarily put `model` in eval mode with the reference deformable-attention core; restore all on exit.

    `attn_implementation` replaces `"sdpa"` in every sub-config (the Swin backbone) meanwhile, and the decoder's
    cross-attention takes the stock (unfused) path: torch 2.14's ONNX decomposition of CPU sdpa fails on a view,
    `"eager"` exports. `None` leaves attention alone.
    """
    msda = [m for m in model.modules() if isinstance(m, EcoMultiscaleDeformableAttention)]
    cores = [(m, m.implementation) for m in msda]
    cross = [m for m in model.modules() if isinstance(m, EcoMaskedCrossAttention) and attn_implementation]
    configs = {id(c): c for m in model.modules() if hasattr(c := getattr(m, "config", None), "_attn_implementation")}
    attn = [(c, c._attn_implementation) for c in configs.values() if attn_implementation and
            c._attn_implementation == "sdpa"]
    was_training = model.training
    try:
        model.eval()
        for module in msda:
            module.implementation = EXPORT_MSDA_IMPLEMENTATION
        for config, _ in attn:
            config._attn_implementation = attn_implementation
        for module in cross:
            module.fused = False
        yield model
    finally:
        for module, implementation in cores:
            module.implementation = implementation
        for config, implementation in attn:
            config._attn_implementation = implementation
        for module in cross:
            del module.fused  # back to the class default
        model.train(was_training)


class FixedDepthSegmenter(nn.Module):
    """`pixel_values (B, 3, H, W)` -> `class_queries_logits (B, Q, L + 1)`, `masks_queries_logits (B, Q, H/4, W/4)`
    at one encoder depth (the model's static Python loop over `layers[:depth]`)."""

    def __init__(self, model: nn.Module, *, depth: int) -> None:
        super().__init__()
        self.model, self.depth = model, depth

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values, num_encoder_layers=self.depth, return_dict=True)
        return outputs.class_queries_logits, outputs.masks_queries_logits


def _encoder_tokens(model: nn.Module, pixel_values: torch.Tensor) -> tuple:
    """The backbone and the pixel decoder's stages 1-2 (`embed_levels`, `flatten_levels`) without a pixel mask.

    Returns `(backbone feature maps, gate_logits (B, num_exits), EcoMask2FormerEncoderTokens)`.
    """
    decoder = model.model.pixel_level_module.decoder
    features = model.model.pixel_level_module.encoder(pixel_values).feature_maps
    inputs_embeds, padding_masks, gate_logits = decoder.embed_levels(features, pixel_mask=None, run_gate=True)
    return features, gate_logits, decoder.flatten_levels(inputs_embeds, padding_masks)


class GatedStem(nn.Module):
    """`pixel_values (B, 3, H, W)` -> `gate_logits (B, num_exits)`, encoder input `tokens (B, N, C)` (1/32, 1/16, 1/8
    flattened, after TRC) and the backbone maps the FPN reads (stride 4): the pixel decoder's `embed_levels` and
    `flatten_levels`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, gate_logits, tokens = _encoder_tokens(self.model, pixel_values)
        num_fpn_levels = self.model.model.pixel_level_module.decoder.num_fpn_levels
        return (gate_logits, tokens.inputs_embeds, *features[:num_fpn_levels])


class _TokenGeometry(nn.Module):
    """Holds what `flatten_levels` computes besides the tokens (position + level embeddings, the empty padding mask,
    level starts, valid ratios) for one image of the exported size; they depend on nothing else, so they enter the
    graphs as constants, expanded to the batch."""

    def __init__(self, model: nn.Module, *, tokens) -> None:
        super().__init__()
        self.model, self.spatial_shapes_list = model, list(tokens.spatial_shapes_list)
        for name in ("attention_mask", "position_embeddings", "valid_ratios"):
            self.register_buffer(name, getattr(tokens, name)[:1], persistent=False)
        self.register_buffer("level_start_index", tokens.level_start_index, persistent=False)

    def tokens(self, inputs_embeds: torch.Tensor) -> EcoMask2FormerEncoderTokens:
        batch = inputs_embeds.size(0)  # not len(...): that would make the exporter specialise the batch
        return EcoMask2FormerEncoderTokens(
            inputs_embeds=inputs_embeds, attention_mask=self.attention_mask.expand(batch, -1),
            position_embeddings=self.position_embeddings.expand(batch, -1, -1),
            spatial_shapes_list=self.spatial_shapes_list, level_start_index=self.level_start_index,
            valid_ratios=self.valid_ratios.expand(batch, -1, -1))


class EncoderSegment(_TokenGeometry):
    """Encoder layers `[first, last)` on `tokens (B, N, C)` -> `(B, N, C)`: the pixel decoder's `encode_layers`."""

    def __init__(self, model: nn.Module, *, first: int, last: int, tokens) -> None:
        super().__init__(model, tokens=tokens)
        self.first, self.last = first, last

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        decoder = self.model.model.pixel_level_module.decoder
        return decoder.encode_layers(self.tokens(tokens), first=self.first, last=self.last)


class GatedTail(_TokenGeometry):
    """Encoded `tokens (B, N, C)` + the stem's FPN maps -> `class_queries_logits`, `masks_queries_logits`: the pixel
    decoder's `assemble`, the transformer decoder and the class head."""

    def forward(self, tokens: torch.Tensor, fpn_features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.model.model.pixel_level_module.decoder
        pixel = decoder.assemble(fpn_features, tokens, self.tokens(tokens), depths=None, gate_logits=None)
        output = self.model.model.transformer_module(multi_scale_features=pixel.multi_scale_features,
                                                     mask_features=pixel.mask_features, output_hidden_states=True)
        last_state = output.intermediate_hidden_states[-1].transpose(0, 1)  # (B, Q, hidden)
        return self.model.class_predictor(last_state), output.masks_queries_logits[-1]


def _check_exits(model: nn.Module, exits: list[int]) -> None:
    allowed = list(model.config.exit_layers)
    bad = [k for k in exits if k not in allowed]
    if bad or not exits:
        raise ValueError(f"exits {exits} must be a non-empty subset of config.exit_layers={allowed} (bad: {bad})")


def _example(model: nn.Module, image_size: tuple[int, int]) -> torch.Tensor:
    # Batch 2: from a batch of 1 the exporter would specialise the batch axis to 1.
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, *image_size, generator=generator).to(next(model.parameters()).dtype)


def _export(module: nn.Module, inputs: tuple, *, dynamic_batch: bool) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=1024)
    shapes = torch.utils._pytree.tree_map(lambda _: {0: batch}, inputs) if dynamic_batch else None
    with torch.no_grad():
        return torch.export.export(module, inputs, dynamic_shapes=shapes)


def program_to_onnx(program: torch.export.ExportedProgram, *, path: str | Path, input_names: list[str],
                    output_names: list[str], opset: int = DEFAULT_OPSET) -> Path:
    """Write an `ExportedProgram` made without sdpa (see `export_mode`) to an ONNX file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=input_names,
                      output_names=output_names).save(str(path))
    return path


def export_fixed_depth_program(model: nn.Module, *, depth: int, image_size: tuple[int, int], dynamic_batch: bool = True,
                               attn_implementation: str | None = "eager") -> torch.export.ExportedProgram:
    """`torch.export` of `model` at encoder depth `depth` (one of `config.exit_layers`) for images of `image_size`
    `(H, W)`; the model is left as it was found. `attn_implementation="eager"` keeps the program ONNX-convertible.

    Returns:
        A program `pixel_values (B, 3, H, W) -> (class_queries_logits (B, Q, L + 1), masks_queries_logits (B, Q, H/4,
        W/4))`; run it with `program.module()(pixel_values)`.
    """
    _check_exits(model, [depth])
    with export_mode(model, attn_implementation=attn_implementation):
        segmenter = FixedDepthSegmenter(model, depth=depth)
        return _export(segmenter, (_example(model, image_size),), dynamic_batch=dynamic_batch)


def export_fixed_depth_onnx(model: nn.Module, *, depth: int, path: str | Path, image_size: tuple[int, int],
                            opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> Path:
    """One ONNX file at one depth: input `pixel_values`, outputs `class_queries_logits`, `masks_queries_logits`
    (shapes as in `export_fixed_depth_program`)."""
    program = export_fixed_depth_program(model, depth=depth, image_size=image_size, dynamic_batch=dynamic_batch)
    return program_to_onnx(program, path=path, input_names=["pixel_values"], output_names=LOGIT_NAMES, opset=opset)


def export_gated_onnx(model: nn.Module, *, folder: str | Path, image_size: tuple[int, int],
                      exits: list[int] | None = None, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> dict:
    """Write `stem.onnx`, `segment_{k}.onnx` per exit `k` in `exits` (a subset of `config.exit_layers`, default all),
    `tail.onnx` and `manifest.json` into `folder` for images of `image_size` `(H, W)`. Returns the manifest."""
    exits = list(model.config.exit_layers) if exits is None else sorted({int(k) for k in exits})
    _check_exits(model, exits)
    folder = Path(folder)
    pixel_values, seconds = _example(model, image_size), {}

    def write(module: nn.Module, inputs: tuple, graph: dict) -> dict:
        start = time.perf_counter()
        program_to_onnx(_export(module, inputs, dynamic_batch=dynamic_batch), path=folder / graph["file"],
                        input_names=graph["inputs"], output_names=graph["outputs"], opset=opset)
        seconds[graph["file"]] = round(time.perf_counter() - start, 2)
        return graph

    with export_mode(model), torch.no_grad():
        features, _, tokens = _encoder_tokens(model, pixel_values)
        shapes = tokens.spatial_shapes_list  # (h, w) per level, 1/32 first
        fpn_features = features[: model.model.pixel_level_module.decoder.num_fpn_levels]
        fpn_names = [f"fpn_feature_{i}" for i in range(len(fpn_features))]
        stem = write(GatedStem(model), (pixel_values,), {
            "file": "stem.onnx", "inputs": ["pixel_values"], "outputs": ["gate_logits", "tokens", *fpn_names]})
        segments = [write(EncoderSegment(model, first=first, last=last, tokens=tokens), (tokens.inputs_embeds,), {
            "exit": last, "layers": [first, last], "file": f"segment_{last}.onnx", "inputs": ["tokens"],
            "outputs": ["encoded_tokens"]}) for first, last in zip([0, *exits[:-1]], exits)]
        tail = write(GatedTail(model, tokens=tokens), (tokens.inputs_embeds, list(fpn_features)), {
            "file": "tail.onnx", "inputs": ["tokens", *fpn_names], "outputs": LOGIT_NAMES})
    manifest = {
        "format": MANIFEST_FORMAT, "opset": opset, "dtype": str(pixel_values.dtype).removeprefix("torch."),
        "image_size": list(image_size), "dynamic_axes": {"batch": dynamic_batch, "height": False, "width": False},
        "exit_layers": list(model.config.exit_layers), "exported_exits": exits,
        "gate_trained": bool(model.config.gate_trained), "msda_implementation": EXPORT_MSDA_IMPLEMENTATION,
        "spatial_shapes": [list(s) for s in shapes], "stem": stem, "segments": segments, "tail": tail,
        "export_seconds": seconds, "torch_version": torch.__version__,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(folder: str | Path) -> dict:
    """Read `folder/manifest.json` and check the graphs it names exist (a `ValueError` says what is wrong)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{folder} has no {MANIFEST_NAME}; write one with export_gated_onnx")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    files = [graph["file"] for graph in (manifest["stem"], *manifest["segments"], manifest["tail"])]
    missing = [f for f in files if not (Path(folder) / f).is_file()]
    if missing:
        raise ValueError(f"{folder} lacks the graphs {missing} named in its manifest")
    return manifest


def choose_depths(gate_logits: np.ndarray, *, exit_layers: list[int], exported: list[int]) -> np.ndarray:
    """Per-image depth `(B,)` int64: `exit_layers[argmax(gate_logits)]` as in the PyTorch model, rounded up to the next
    exported exit (or the deepest exported one) when only some exits were exported."""
    chosen = np.asarray(exit_layers)[gate_logits.argmax(axis=-1)]
    exported = sorted(exported)
    return np.asarray([next((k for k in exported if k >= d), exported[-1]) for d in chosen], dtype=np.int64)


def run_exported(folder: str | Path, pixel_values: np.ndarray | torch.Tensor, *, depth: int | None = None,
                 providers: list[str] | None = None, sessions: dict | None = None) -> dict[str, np.ndarray]:
    """Run a folder from `export_gated_onnx` with onnxruntime: stem on the batch, per-image depth from the gate
    (`choose_depths`), each segment on the images still inside the encoder, the tail once on all encoded tokens.

    `pixel_values` `(B, 3, H, W)` must have the exported size. `depth` forces one exported depth on every image; with
    `None` the gate decides if the model's gate was trained, else the deepest exported exit runs (as the PyTorch model
    without `num_encoder_layers`). `providers`: onnxruntime providers (default CPU); `sessions`: a dict kept between
    calls to reuse the `InferenceSession`s (keyed by file name).

    Returns numpy `class_queries_logits (B, Q, L + 1)`, `masks_queries_logits (B, Q, H/4, W/4)`, `gate_logits
    (B, num_exits)`, `encoder_layers_used (B,)`.
    """
    import onnxruntime as ort

    manifest = load_manifest(folder)
    if isinstance(pixel_values, torch.Tensor):
        pixel_values = pixel_values.detach().cpu().numpy()
    height, width = manifest["image_size"]
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, height, width):
        raise ValueError(f"pixel_values must be (batch, 3, {height}, {width}) got {pixel_values.shape}")
    exported = manifest["exported_exits"]
    if depth is not None and depth not in exported:
        raise ValueError(f"depth={depth} was not exported; exported exits: {exported}")
    sessions = {} if sessions is None else sessions

    def run(graph: dict, *inputs: np.ndarray) -> list[np.ndarray]:
        if graph["file"] not in sessions:
            sessions[graph["file"]] = ort.InferenceSession(str(Path(folder) / graph["file"]),
                                                           providers=providers or ["CPUExecutionProvider"])
        return sessions[graph["file"]].run(graph["outputs"], dict(zip(graph["inputs"], inputs)))

    pixel_values = np.ascontiguousarray(pixel_values, dtype=np.dtype(manifest["dtype"]))
    gate_logits, tokens, *fpn_features = run(manifest["stem"], pixel_values)
    if depth is not None or not manifest["gate_trained"]:
        depths = np.full(len(pixel_values), exported[-1] if depth is None else depth, dtype=np.int64)
    else:
        depths = choose_depths(gate_logits, exit_layers=manifest["exit_layers"], exported=exported)
    encoded, active = np.empty_like(tokens), np.arange(len(depths))  # `active`: images still inside the encoder
    for segment in manifest["segments"]:
        if active.size == 0:
            break
        tokens = run(segment, tokens)[0]
        done = depths[active] == segment["exit"]
        encoded[active[done]] = tokens[done]
        active, tokens = active[~done], tokens[~done]
    class_logits, mask_logits = run(manifest["tail"], encoded, *fpn_features)
    return {"class_queries_logits": class_logits, "masks_queries_logits": mask_logits, "gate_logits": gate_logits,
            "encoder_layers_used": depths}


__all__ = ["choose_depths", "export_fixed_depth_onnx", "export_fixed_depth_program", "export_gated_onnx", "export_mode",
           "load_manifest", "program_to_onnx", "run_exported"]
