"""The project's layering, checked from the source: an import graph built with `ast` (no module is imported).

Every `.py` file under `modeling_ecom2f/`, `configuration/`, `processing/` and `hub/` is a node. Every import in it is
an edge, wherever it stands (module level, inside a function, under `try`/`if TYPE_CHECKING`), relative imports
resolved against the file's package, and `importlib.import_module("...")` / `__import__("...")` calls with a literal
name count too. `from package import name` is an edge to the submodule `package.name` when that file exists, else to
the package. Importing a submodule does not add an edge to its parent packages (Python runs their `__init__`, but
that is not a dependency the importing code chose), as in import-linter's and grimp's graphs.

The rules (see docs/architecture.md, "Rooms and what each may import"):
* no import cycles among project modules;
* model files (the top level of `modeling_ecom2f/`, `configuration/`, `processing/`) import nothing from `hub`,
  `modeling_ecom2f.recipe`, `modeling_ecom2f.convert` or `benchmarks`;
* the converter (`modeling_ecom2f/convert/`) imports nothing from `hub`, the recipe or `benchmarks`;
* the recipe (`modeling_ecom2f/recipe/`) imports nothing from `hub` (it takes a publisher as an argument);
* the library (every project module but `modeling_ecom2f/experiments/`) imports nothing from the experiments layer;
* no project module imports `benchmarks/`, `examples/` or `demo/` (by package name or by the bare name of one of
  their scripts, which only works with their folder on `sys.path`), and none edits `sys.path`;
* nothing under `benchmarks/` imports `examples/` (nor puts it on `sys.path`);
* no module of `modeling_ecom2f/recipe/` imports a private (`_name`) name from another project module;
* no project file outside Markdown names the team's research notes (the seeds and design notes), which are not in
  the repo.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIRS = ("modeling_ecom2f", "configuration", "processing", "hub")
EXPERIMENTS = "modeling_ecom2f.experiments"
#: Folders of scripts outside the installed package: their modules are imported by bare name from their own folder.
SCRIPT_DIRS = ("benchmarks", "examples", "demo")
FORBIDDEN_FOR_MODEL_FILES = ("hub", "modeling_ecom2f.recipe", "modeling_ecom2f.convert", "benchmarks")
FORBIDDEN_FOR_CONVERTER = ("hub", "modeling_ecom2f.recipe", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file for every project module (packages by their `__init__.py`)."""
    modules = {}
    for folder in PROJECT_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[_module_name(path)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, path: Path, level: int, target: str | None) -> str:
    package = module.split(".") if _is_package(path) else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ([target] if target else []))


def _literal_import_calls(tree: ast.AST):
    """`importlib.import_module("x")`, `import_module("x")` and `__import__("x")` with a literal first argument."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        first = node.args[0]
        if name in {"import_module", "__import__"} and isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name the file imports (absolute, relative ones resolved), `from x import y` as `x.y`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node.level, node.module) if node.level else node.module
            # `base.name` resolves to the submodule when there is one, else (longest prefix) to `base` itself.
            names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    names.update(_literal_import_calls(tree))
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (the longest project module each imported name names)."""
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    if candidate != module:
                        edges.add(candidate)
                    break
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def is_model_file(path: Path) -> bool:
    """`modeling_ecom2f/*.py` at the package's top level (not `data/`, `metrics/`, `recipe/`), `configuration/`,
    `processing/`."""
    folder = path.parent.relative_to(ROOT).parts
    return folder == ("modeling_ecom2f",) or folder[:1] in {("configuration",), ("processing",)}


# --- the graph builder itself ---------------------------------------------------------------------------------------


def test_graph_sees_function_level_relative_and_literal_imports(tmp_path, monkeypatch):
    package = tmp_path / "modeling_ecom2f"
    (package / "recipe").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "recipe" / "__init__.py").write_text("")
    (package / "recipe" / "a.py").write_text("def f():\n    from . import b\n    from ..core import x\n")
    (package / "recipe" / "b.py").write_text(
        "import importlib\nM = importlib.import_module('modeling_ecom2f.recipe.a')\n"
    )
    (package / "core.py").write_text("try:\n    from .recipe.b import g\nexcept ImportError:\n    pass\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph = import_graph()
    assert graph["modeling_ecom2f.recipe.a"] == {"modeling_ecom2f.recipe.b", "modeling_ecom2f.core"}
    assert graph["modeling_ecom2f.recipe.b"] == {"modeling_ecom2f.recipe.a"}
    assert graph["modeling_ecom2f.core"] == {"modeling_ecom2f.recipe.b"}
    assert find_cycles(graph) == [["modeling_ecom2f.core", "modeling_ecom2f.recipe.a", "modeling_ecom2f.recipe.b"]]
    assert is_model_file(package / "core.py") and is_model_file(package / "__init__.py")
    assert not is_model_file(package / "recipe" / "a.py") and not is_model_file(package / "recipe" / "__init__.py")


def test_graph_covers_the_project():
    graph = import_graph()
    assert {"modeling_ecom2f.modeling_ecom2f", "modeling_ecom2f.recipe.tasks", "hub.push",
            "configuration.configuration_ecom2f", "processing.image_processing_ecom2f"} <= set(graph)
    assert "configuration.configuration_ecom2f" in graph["modeling_ecom2f.modeling_ecom2f"]


# --- the rules ------------------------------------------------------------------------------------------------------


def test_no_import_cycles_among_project_modules():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles (strongly connected components):\n" + "\n".join(map(str, cycles))


def test_model_files_import_no_hub_recipe_or_benchmark_code():
    offending = {}
    for module, path in project_modules().items():
        if not is_model_file(path):
            continue
        bad = sorted(
            name for name in imported_names(module, path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN_FOR_MODEL_FILES)
        )
        if bad:
            offending[module] = bad
    assert offending == {}


def test_converter_imports_no_hub_recipe_or_benchmark_code():
    offending = {
        module: sorted(name for name in imported_names(module, path)
                       if any(name == p or name.startswith(p + ".") for p in FORBIDDEN_FOR_CONVERTER))
        for module, path in project_modules().items() if module.startswith("modeling_ecom2f.convert")
    }
    assert "modeling_ecom2f.convert.converter" in offending
    assert {m: bad for m, bad in offending.items() if bad} == {}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def script_modules(folder: str) -> set[str]:
    """The bare module names of the scripts under `folder` (`benchmarks/bench_common.py` -> `bench_common`)."""
    return {path.stem for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts}


def script_folder_imports(names: set[str], folders=SCRIPT_DIRS) -> list[str]:
    """The names among `names` that import one of `folders`: `examples.x` / `benchmarks` / ..., or the bare name of
    one of their scripts."""
    bare = {stem: folder for folder in folders for stem in script_modules(folder)}
    return sorted(name for name in names
                  if name.split(".")[0] in folders or name.split(".")[0] in bare)


def sys_path_edits(path: Path) -> list[str]:
    """The source of every `sys.path.insert(...)` / `sys.path.append(...)` call in `path`."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    return [ast.get_source_segment(text, node) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"insert", "append", "extend"} and ast.unparse(node.func.value) == "sys.path"]


def offending_imports(in_scope, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Project module in scope (`in_scope(module)`) -> the names it imports from the `forbidden` packages."""
    out = {}
    for module, path in project_modules().items():
        if in_scope(module):
            bad = sorted(name for name in imported_names(module, path) if any(_within(name, p) for p in forbidden))
            if bad:
                out[module] = bad
    return out


def recipe_hub_imports() -> dict[str, list[str]]:
    """Recipe module -> the `hub` modules it imports."""
    return offending_imports(lambda module: _within(module, "modeling_ecom2f.recipe"), ("hub",))


def library_experiments_imports() -> dict[str, list[str]]:
    """Library module (anything but the experiments layer) -> the experiments modules it imports."""
    return offending_imports(lambda module: not _within(module, EXPERIMENTS), (EXPERIMENTS,))


def library_script_imports() -> dict[str, list[str]]:
    """Project module -> what it imports from `benchmarks/`, `examples/`, `demo/`, and its `sys.path` edits."""
    out = {}
    for module, path in project_modules().items():
        bad = script_folder_imports(imported_names(module, path)) + sys_path_edits(path)
        if bad:
            out[module] = bad
    return out


def benchmark_example_imports() -> dict[str, list[str]]:
    """Script under `benchmarks/` -> what it imports from `examples/` (and any `sys.path` edit naming it)."""
    out = {}
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = "benchmarks." + ".".join(path.relative_to(ROOT / "benchmarks").with_suffix("").parts)
        names = imported_names(module, path)
        bad = script_folder_imports(names, ("examples",)) + [edit for edit in sys_path_edits(path) if "examples" in edit]
        bad = [name for name in bad if name.split(".")[0] not in script_modules("benchmarks") or "examples" in name]
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_recipe_imports_no_hub():
    assert recipe_hub_imports() == {}


def test_library_imports_no_experiments():
    assert library_experiments_imports() == {}


def test_library_imports_no_benchmarks_examples_or_demo():
    assert library_script_imports() == {}


def test_benchmarks_import_no_examples():
    assert benchmark_example_imports() == {}


def test_experiments_layer_is_in_the_graph_and_imports_the_library():
    graph = import_graph()
    assert "modeling_ecom2f.recipe.early_exit" in graph["modeling_ecom2f.experiments.cli"]
    assert "modeling_ecom2f.experiments.presets" in graph["modeling_ecom2f.experiments.main_job"]


def test_each_rule_finds_a_planted_violation(tmp_path, monkeypatch):
    """The rules above on a small tree with one violation of each: they report exactly the planted ones."""
    files = {
        "modeling_ecom2f/__init__.py": "",
        "modeling_ecom2f/recipe/__init__.py": "",
        "modeling_ecom2f/recipe/step.py": "def push():\n    from hub.folder import write\n",
        "modeling_ecom2f/recipe/fine.py": "from . import step\n",
        "modeling_ecom2f/data/__init__.py": "from ..experiments import presets\n",
        "modeling_ecom2f/experiments/__init__.py": "",
        "modeling_ecom2f/experiments/presets.py": "from ..recipe import step\nfrom hub import folder\n",
        "modeling_ecom2f/core.py": "import sys\nsys.path.insert(0, 'x')\nimport bench_common\n",
        "hub/folder.py": "from examples.run import main\n",
        "configuration/config.py": "",
        "processing/proc.py": "import importlib\nimportlib.import_module('demo_engine')\n",
        "benchmarks/bench_common.py": "import sys\nsys.path.insert(0, 'examples')\n",
        "benchmarks/study.py": "import bench_common\nimport train_parent\n",
        "examples/train_parent.py": "",
        "examples/run.py": "",
        "demo/demo_engine.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert recipe_hub_imports() == {"modeling_ecom2f.recipe.step": ["hub.folder.write"]}
    assert library_experiments_imports() == {"modeling_ecom2f.data": ["modeling_ecom2f.experiments.presets"]}
    assert library_script_imports() == {"modeling_ecom2f.core": ["bench_common", "sys.path.insert(0, 'x')"],
                                        "hub.folder": ["examples.run.main"], "processing.proc": ["demo_engine"]}
    assert benchmark_example_imports() == {"benchmarks/bench_common.py": ["sys.path.insert(0, 'examples')"],
                                           "benchmarks/study.py": ["train_parent"]}


def test_recipe_modules_import_no_private_names_of_other_modules():
    offending = []
    for module, path in project_modules().items():
        if not module.startswith("modeling_ecom2f.recipe"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = _resolve_relative(module, path, node.level, node.module) if node.level else node.module
                if base.split(".")[0] in PROJECT_DIRS:
                    offending += [f"{module}: {base}.{alias.name}" for alias in node.names
                                  if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert offending == []


def test_no_project_file_outside_markdown_names_the_research_notes():
    try:
        result = subprocess.run(
            ["git", "grep", "-n", "-E", "|".join(rf"{name}\.md" for name in ("seeds", "design")), "--", ":!*.md"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:  # pragma: no cover - no git on the machine
        pytest.skip("git is not installed")
    if result.returncode not in (0, 1):
        pytest.skip(f"not a git checkout: {result.stderr.strip()}")
    assert result.stdout.splitlines() == []  # the pattern is assembled above, so this file does not match itself
