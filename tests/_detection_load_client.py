"""Fresh-process client: load an exported EcoDeformableDetr folder with the project NOT importable.

    python _detection_load_client.py SOURCE OUT.pt IMAGE [IMAGE ...] [--prove-block ROOT]

It hides the project's packages (as `_hub_load_client` does), then loads config, model, base model (`AutoModel`),
image processor and `pipeline("object-detection")` with `trust_remote_code=True` and saves, with `torch.save`, the
class names, the model outputs on the images at two depths and the pipeline results.
"""

from __future__ import annotations

from _hub_load_client import block_project, client_parser, load_base_model, visible


def main() -> None:
    args = client_parser().parse_args()
    report = block_project(args.prove_block)

    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, pipeline

    from helpers.logs import transformers_messages

    torch.set_num_threads(1)
    config = AutoConfig.from_pretrained(args.source, trust_remote_code=True)
    model, info = AutoModelForObjectDetection.from_pretrained(args.source, trust_remote_code=True,
                                                              output_loading_info=True)
    model.eval()
    processor = AutoImageProcessor.from_pretrained(args.source, trust_remote_code=True)
    with transformers_messages() as messages:
        detector = pipeline("object-detection", model=args.source, trust_remote_code=True)
    report["pipeline_load_messages"] = messages
    images = [Image.open(path).convert("RGB") for path in args.images]
    report["classes"] = {role: f"{type(obj).__module__}.{type(obj).__name__}" for role, obj in
                         [("config", config), ("model", model), ("processor", processor),
                          ("pipeline_model", detector.model), ("pipeline_processor", detector.image_processor)]}
    report["base_model"] = load_base_model(args.source, trust_remote_code=True)
    report["loading_info"] = {k: sorted(v) for k, v in info.items() if k != "error_msgs"}
    inputs = processor(images=images, return_tensors="pt")
    with torch.no_grad():
        outputs = {depth: model(**inputs, num_encoder_layers=depth) for depth in (2, config.exit_layers[-1])}
    report["logits"] = {depth: out.logits for depth, out in outputs.items()}
    report["encoder_layers_used"] = {depth: out.encoder_layers_used for depth, out in outputs.items()}
    report["pipeline"] = [detector(image, threshold=0.0) for image in images]
    report["visible_at_end"] = visible()
    torch.save(report, args.out)


if __name__ == "__main__":
    main()
