"""The custom-code files of a Hub folder: found by following imports, flattened, and rewritten to relative imports.

A Hub repository holds custom code as flat sibling files that import each other relatively
(`from .ecom2f_gate import ...`); transformers copies exactly the files reachable that way. The project's sources
are laid out as packages, so the Hub folder writer starts from the entry modules (the model and the image processor), follows
every relative import to its sibling file, and rewrites the one allowed absolute project import
(`from configuration.configuration_ecom2f import ...`) into a relative one. Any other import of a project package,
an import of a sub-package (`from .data.labels import ...`), or `from . import x` (which transformers does not
follow) stops the writer with a `HubSourceError` naming the file and line.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_PACKAGES = frozenset({"modeling_ecom2f", "configuration", "processing", "hub"})
"""Top-level names of this project: absolute imports of them do not exist in a Hub repository."""

ABSOLUTE_REWRITES = {
    "configuration.configuration_ecom2f": "configuration_ecom2f",
    "configuration.configuration_eco_deformable_detr": "configuration_eco_deformable_detr",
}
"""Absolute project imports the Hub folder writer may rewrite: module -> flat sibling module name."""

ENTRY_MODULES = ("modeling_ecom2f.modeling_ecom2f", "processing.image_processing_ecom2f")
"""Where the walk starts: the modules named in `auto_map` (the configuration is reached through the model)."""


class HubSourceError(ValueError):
    """A source file cannot become Hub custom code (an import that would break in a flat repository)."""


@dataclass(frozen=True)
class CodeFile:
    """One flat custom-code file of the Hub folder: its name in the repository, its rewritten text, its origin."""

    name: str
    text: str
    origin: Path


def module_file(module: str) -> Path:
    """The source file of an importable module (works for editable installs and plain checkouts)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise HubSourceError(f"cannot locate the source file of module {module!r}")
    return Path(spec.origin)


def _rewrite_line(line: str, *, module: str, flat: str, where: str) -> str:
    pattern = rf"\bfrom\s+{re.escape(module)}\s+import\b"
    rewritten, count = re.subn(pattern, f"from .{flat} import", line, count=1)
    if count != 1:
        raise HubSourceError(
            f"{where}: cannot rewrite the import of {module!r} (write it as 'from {module} import ...')"
        )
    return rewritten


def _scan(path: Path) -> tuple[str, list[Path]]:
    """Rewrite one file's absolute project imports and list the sibling files it imports.

    Returns:
        The rewritten text and the paths of the files it imports (siblings, or targets of `ABSOLUTE_REWRITES`).
    """
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    imported: list[Path] = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROJECT_PACKAGES:
                    raise HubSourceError(
                        f"{where}: 'import {alias.name}' imports a project package, which a Hub repository does not "
                        "have; use a relative import of a sibling module ('from .module import name')"
                    )
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module.split(".")[0] not in PROJECT_PACKAGES:
                continue
            if module not in ABSOLUTE_REWRITES:
                raise HubSourceError(
                    f"{where}: 'from {module} import ...' is an absolute import of a project module that the writer "
                    f"cannot rewrite (allowed: {sorted(ABSOLUTE_REWRITES)}); use a relative sibling import"
                )
            index = node.lineno - 1
            lines[index] = _rewrite_line(lines[index], module=module, flat=ABSOLUTE_REWRITES[module], where=where)
            imported.append(module_file(module))
        elif isinstance(node, ast.ImportFrom):
            if node.level != 1 or not node.module:
                dots = "." * node.level
                raise HubSourceError(
                    f"{where}: 'from {dots}{node.module or ''} import ...' is not followed by transformers' "
                    "remote-code loader; import sibling modules as 'from .module import name'"
                )
            if "." in node.module:
                raise HubSourceError(
                    f"{where}: 'from .{node.module} import ...' imports a sub-package; Hub custom code must be flat "
                    "sibling files"
                )
            sibling = path.parent / f"{node.module}.py"
            if not sibling.is_file():
                raise HubSourceError(f"{where}: the imported sibling module {sibling} does not exist")
            imported.append(sibling)
    return "".join(lines), imported


def collect_code_files(*, entry_modules: tuple[str, ...] = ENTRY_MODULES) -> list[CodeFile]:
    """All custom-code files a Hub folder needs, rewritten, in a stable order (entry modules first).

    Raises:
        HubSourceError: an import that cannot work in a flat repository, or two files with the same name.
    """
    queue = [module_file(module) for module in entry_modules]
    files: dict[str, CodeFile] = {}
    while queue:
        path = queue.pop(0).resolve()
        existing = files.get(path.name)
        if existing is not None:
            if existing.origin != path:
                raise HubSourceError(
                    f"two source files would both become {path.name} in the flat repository: {existing.origin} "
                    f"and {path}"
                )
            continue
        text, imported = _scan(path)
        ast.parse(text, filename=f"{path} (rewritten)")  # the rewritten file must still be valid Python
        files[path.name] = CodeFile(name=path.name, text=text, origin=path)
        queue.extend(imported)
    return list(files.values())


def write_code_files(files: list[CodeFile], *, folder: Path) -> list[str]:
    """Write the files flat into `folder`; returns their names."""
    for code in files:
        (folder / code.name).write_text(code.text, encoding="utf-8")
    return [code.name for code in files]


__all__ = [
    "ABSOLUTE_REWRITES", "CodeFile", "HubSourceError", "PROJECT_PACKAGES", "collect_code_files", "write_code_files",
]
