"""Shared builders of the tests (imported as `helpers.<module>`; `tests/conftest.py` turns some into fixtures).

- `models`: tiny random-init EcoMask2Former / Mask2Former configs and models, random mask labels;
- `detection`: the same for (Eco)DeformableDetr, plus pixels and box targets;
- `data`: random panoptic references and predictions for the data and metrics tests;
- `recipe`: the tiny recipe settings, the example scripts run in this process, the tiny step 1-3 chains;
- `fake_hub`: a loopback Hugging Face Hub and the client-process runner;
- `logs`: what transformers logs inside a block;
- `demo`: the demo app's engine module (`demo/demo_engine.py`) and folder;
- `hub_fixtures`, `hub_outputs`: the Hub tests' tiny gated model, images and compared outputs (`hub_outputs` is
  also imported by the client scripts in `tests/`, which run with the project hidden: this package imports nothing).
"""
