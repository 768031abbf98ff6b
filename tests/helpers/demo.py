"""The demo's engine (`demo/demo_engine.py`; the demo folder is an app, not a package) and its shipped files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

DEMO = Path(__file__).resolve().parents[2] / "demo"


def demo_engine() -> ModuleType:
    """Import `demo/demo_engine.py` once (as the module `demo_engine`, the name `demo/app.py` imports)."""
    import sys

    if "demo_engine" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_engine", DEMO / "demo_engine.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_engine"] = module
        spec.loader.exec_module(module)
    return sys.modules["demo_engine"]
