"""The front page and the documentation pages: size, the two commands, links that resolve, an index of every page,
licence and citation."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# [text](target) with a relative target; http(s), mailto and in-page anchors are not files.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(path.read_text())
    return [t for t in targets if not t.startswith(("http://", "https://", "mailto:", "#"))]


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_front_page_is_short_and_has_its_sections():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Install and the two commands", "## Five minutes with the shipped model", "## Checkpoints",
                    "## Training", "## Results", "## Documentation", "## Licence and citation"):
        assert heading in text, heading
    for arxiv_id in ("2404.15244", "2404.14657"):
        assert arxiv_id in text


def test_the_two_commands_are_on_the_front_page_and_ci_runs_the_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    main_job = "python -m pip install -c constraints.txt -e . && python examples/run_eco_m2f.py"
    tests = 'python -m pip install -c constraints.txt -e ".[dev,demo]" && HF_HUB_OFFLINE=1 python -m pytest -q tests'
    assert main_job in [b.strip() for b in blocks]
    assert tests in [b.strip() for b in blocks]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pip install -q -c constraints.txt -e ".[dev,demo]"' in ci
    assert "HF_HUB_OFFLINE=1 python -m pytest -q tests" in ci


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_docs_index_lists_every_page():
    index = DOCS / "README.md"
    linked = {Path(t.split("#", 1)[0]).name for t in relative_links(index)}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= linked, f"pages missing from docs/README.md: {sorted(pages - linked)}"
    assert "docs/README.md" in {t for t in relative_links(README)}


def test_licence_matches_the_package_metadata_and_the_citation_names_both_papers():
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    identifiers = {i["value"] for ref in citation["references"] for i in ref["identifiers"]}
    assert identifiers == {"arXiv:2404.15244", "arXiv:2404.14657"}


def test_the_front_page_usage_example_runs_as_pasted(tmp_path):
    """The README's Python block, run from the repository root in a fresh interpreter with stdin closed (a trust
    prompt for remote code would fail it), prints the depths its comment announces."""
    import subprocess
    import sys

    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    script = tmp_path / "usage.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    announced = re.search(r"# (tensor\(\[\d+\]\) tensor\(\[\d+\]\)): depth per image", code).group(1)
    assert announced in done.stdout
