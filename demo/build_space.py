"""Assemble a Hugging Face Space from the demo: this folder plus the ecom2f packages it imports.

    python demo/build_space.py outputs/space
    hf upload you/ecom2f-demo outputs/space --repo-type space     # needs a Hub account and network

A Space installs `requirements.txt` (third-party packages only; ecom2f is not on PyPI) and runs `app.py` from the
folder's root, so the folder carries the project's packages (`modeling_ecom2f`, `configuration`, `processing`) next
to `app.py`, where Python finds them first. Nothing else changes: `README.md` is already the Space's card.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEMO_FILES = ("app.py", "demo_engine.py", "README.md", "requirements.txt", "model", "examples")
PACKAGES = ("modeling_ecom2f", "configuration", "processing")


def build_space(out: Path) -> list[str]:
    """Write the Space folder `out` (replaced if it exists); returns its top-level names."""
    target = out.resolve()
    if target in (HERE, ROOT) or HERE in target.parents:
        raise SystemExit(f"choose an output folder outside demo/ and other than the repository (got {out})")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in DEMO_FILES:
        source = HERE / name
        (shutil.copytree(source, out / name, ignore=ignore) if source.is_dir() else shutil.copy2(source, out / name))
    for package in PACKAGES:
        shutil.copytree(ROOT / package, out / package, ignore=ignore)
    return sorted(p.name for p in out.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the Space folder to write")
    names = build_space(Path(parser.parse_args().out))
    print("Space folder:", ", ".join(names))


if __name__ == "__main__":
    main()
