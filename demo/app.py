"""ECO-M2F demo: segment an image with an encoder depth chosen per image, and see what a compute budget changes.

    python demo/app.py                              # the small gated model shipped in demo/model, http://127.0.0.1:7860
    python demo/app.py --port 8080 --model DIR      # any from_pretrained folder or Hub id (EcoMask2Former or stock)

Upload an image or pick a bundled example, choose the task and the budget (the utility gate's beta, a target share
of full-depth encoder GFLOPs, or a fixed depth); the page shows the overlay with its legend, the depth used, the
encoder and total GFLOPs of this image against full depth, the latency, and optionally every exit side by side.
Runs offline on CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no usage reports, no version check: the demo runs offline

import gradio as gr  # noqa: E402

from demo_engine import (BETA_SLIDER, Budget, DemoError, DemoResult, DemoSegmenter, example_images,  # noqa: E402
                         load_image)

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "model"
DEFAULT_EXAMPLES = HERE / "examples"
BUDGET_CHOICES = [("Gate: utility beta", "gate"), ("Encoder budget: share of full-depth GFLOPs", "budget"),
                  ("Fixed depth", "fixed")]
LOCAL_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def picture_input(**kwargs) -> gr.Image:
    """The page's image input: a gr.Image (the picture itself, not a file name) handing `run` the file's path, also
    for a file that is no picture, so that the page says so (`load_image`) instead of stopping at the component's own
    decoding error. Set on the instance: a gr.Image subclass would make Gradio write a `.pyi` stub beside this file."""
    picture = gr.Image(type="filepath", image_mode=None, **kwargs)
    stock = picture.preprocess

    def preprocess(payload):
        try:
            return stock(payload)
        except OSError:  # PIL.UnidentifiedImageError: not a picture
            return payload.path

    picture.preprocess = preprocess
    return picture


def stats_markdown(result: DemoResult) -> str:
    """The depth and the cost of one image against full depth, as the page shows them."""
    def share(part: float, whole: float) -> str:
        return f"{part / whole:.0%}" if whole else "-"

    lines = [
        f"### Depth: {result.depth} of {result.max_depth} encoder layers",
        f"Decided by: {result.decided_by}. Segments: {result.segments}.",
        "",
        f"| this image | used | full depth ({result.max_depth}) | share |",
        "|---|---|---|---|",
        f"| encoder GFLOPs | {result.encoder_gflops:.4f} | {result.full_encoder_gflops:.4f} | "
        f"{share(result.encoder_gflops, result.full_encoder_gflops)} |",
        f"| total GFLOPs | {result.total_gflops:.4f} | {result.full_total_gflops:.4f} | "
        f"{share(result.total_gflops, result.full_total_gflops)} |",
        f"| latency (one forward, CPU) | {result.latency_ms:.0f} ms | | |",
    ]
    if result.predicted_gains:
        gains = ", ".join(f"{k}: {100 * v:+.3f}" for k, v in result.predicted_gains.items())
        lines += ["", f"The gate's predicted PQ gain over the shallowest exit, per exit (PQ points): {gains}."]
    return "\n".join(lines)


def build_app(segmenter: DemoSegmenter, *, examples: list[Path], max_side: int, model_name: str) -> gr.Blocks:
    """The page: inputs on the left, the overlay and the numbers on the right; every control reruns the image."""
    gate = {"utility": "a utility gate (any beta)", "classification": "a classification gate (one beta)",
            None: "no trained gate (full depth unless a depth is fixed)"}[segmenter.gate_kind]
    shallowest = math.ceil(100 * segmenter.shallowest_share) / 100  # a share the shallowest exit meets
    with gr.Blocks(title="ECO-M2F demo", analytics_enabled=False) as app:
        gr.Markdown(f"## ECO-M2F: encoder depth per image, compute budget at inference\nModel `{model_name}`: exits "
                    f"{segmenter.exits}, {gate}. Upload an image or pick an example, then move the budget.")
        with gr.Row():
            with gr.Column(scale=2):
                upload = picture_input(label="Image", height=300, sources=["upload", "clipboard"], elem_id="upload",
                                       value=str(examples[0]) if examples else None)
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[upload],
                                example_labels=[p.stem.replace("_", " ") for p in examples], label="Bundled examples")
                task = gr.Radio(["panoptic", "instance", "semantic"], value="panoptic", label="Task", elem_id="task")
                mode = gr.Radio(BUDGET_CHOICES, value="gate", label="Budget", elem_id="mode")
                beta = gr.Slider(BETA_SLIDER[0], BETA_SLIDER[1], value=BETA_SLIDER[0], step=BETA_SLIDER[2],
                                 label="Utility gate beta (PQ fraction per layer)", elem_id="beta")
                share = gr.Slider(shallowest, 1.0, value=1.0, step=0.01, elem_id="share",
                                  label=f"Encoder budget (calibrated on {segmenter.calibration_size} example images)")
                depth = gr.Radio(segmenter.exits, value=segmenter.max_depth, label="Fixed depth", elem_id="depth")
                all_exits = gr.Checkbox(False, label="Show every exit side by side", elem_id="all_exits")
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                overlay = gr.Image(label="Overlay", type="numpy", interactive=False, elem_id="overlay")
                stats = gr.Markdown(elem_id="stats")
        exits_view = gr.Image(label="Every exit", type="numpy", interactive=False, visible=False, elem_id="exits")

        def run(path, task_name, budget_mode, beta_value, share_value, depth_value, show_exits):
            if not path:
                return None, "", "Upload an image or pick an example.", gr.update(visible=False)
            try:
                image, notes = load_image(path, max_side=max_side)
                budget = Budget(mode=budget_mode, beta=float(beta_value), share=float(share_value),
                                depth=int(depth_value))
                result = segmenter.segment(image, task=task_name, budget=budget, all_exits=bool(show_exits))
            except DemoError as error:
                return None, "", f"**Cannot segment this:** {error}", gr.update(visible=False)
            except Exception as error:  # the page says what failed; the console keeps the traceback
                traceback.print_exc()
                return None, "", f"**Unexpected error:** {type(error).__name__}: {error}", gr.update(visible=False)
            note = " ".join(notes + list(result.notes))
            return (result.overlay, stats_markdown(result), note,
                    gr.update(value=result.exits, visible=result.exits is not None))

        inputs = [upload, task, mode, beta, share, depth, all_exits]
        outputs = [overlay, stats, message, exits_view]
        # A new file (uploaded or an example) reruns; so does what the user changes (`input` events, not `change`:
        # moving a budget control also sets the budget mode below, which must not run the image twice).
        upload.change(run, inputs, outputs, trigger_mode="always_last", concurrency_id="model")
        for control in (task, mode, all_exits):
            control.input(run, inputs, outputs, trigger_mode="always_last", concurrency_id="model")
        # Moving a budget control selects its mode.
        for control, implied in ((beta, "gate"), (share, "budget"), (depth, "fixed")):
            control.input(lambda *values, m=implied: (m, *run(values[0], values[1], m, *values[3:])), inputs,
                          [mode, *outputs], trigger_mode="always_last", concurrency_id="model")  # dragging: last value
        app.load(run, inputs, outputs, concurrency_id="model")  # one model: its runs queue one at a time
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="model folder or Hub id (default: the small gated model shipped in demo/model)")
    # A Space sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; locally the demo listens on the loopback address only.
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default: 127.0.0.1, or GRADIO_SERVER_NAME)")
    parser.add_argument("--examples", default=str(DEFAULT_EXAMPLES),
                        help="folder of example images (also the calibration images of the encoder budget)")
    parser.add_argument("--max_side", type=int, default=1024, help="larger uploads are resized to this longer side")
    parser.add_argument("--threshold", type=float, default=0.5, help="segment score threshold")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    examples = example_images(args.examples)
    try:
        calibration = [load_image(p, max_side=args.max_side)[0] for p in examples]
        segmenter = DemoSegmenter.from_pretrained(args.model, calibration_images=calibration,
                                                  threshold=args.threshold)
    except DemoError as error:
        sys.exit(f"demo/app.py: {error}")
    shipped = Path(args.model).resolve() == DEFAULT_MODEL
    app = build_app(segmenter, examples=examples, max_side=args.max_side,
                    model_name="demo/model (shipped)" if shipped else args.model)
    app.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False, show_error=False,
               max_file_size="50mb", theme=gr.themes.Default(**LOCAL_FONTS),
               allowed_paths=[str(Path(args.examples).resolve())])


if __name__ == "__main__":
    main()
