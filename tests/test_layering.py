"""The layering of the core, read from the code: no import cycles among the modules of `swinir/`, and the inference
path (the engine, the nodes' work, `python -m swinir restore`) loads no module of `swinir.training`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "swinir"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `path` imports anywhere in its code (functions included), by absolute name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from . import memory` imports the module swinir.memory; `from .cache import limit_for` swinir.cache.
            submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known]
            targets = submodules if len(submodules) == len(node.names) else [source, *submodules]
        else:
            continue
        for target in targets:
            # Importing a.b.c runs the packages a.b and a first; the importer's own packages are already running.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in known and not (name == candidate or name.startswith(candidate + ".")):
                    found.add(candidate)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_sees_a_cycle() -> None:
    # The check below is only as good as this reader: a loop it cannot see would pass unnoticed.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "swinir.memory" in graph["swinir.cache"] and "swinir.cache" in graph["swinir.budget"]
    assert "swinir.training.metrics" in graph["swinir.training.trainer"]
    assert "swinir.training" in graph["swinir.cli.train"]  # its import inside `run` counts too


def test_no_import_cycles_in_the_core() -> None:
    assert cycles(import_graph()) == []


def test_no_core_module_outside_training_imports_training_at_module_level() -> None:
    modules = core_modules()
    known = set(modules)
    offenders = []
    for name, path in modules.items():
        if name.startswith("swinir.training") or name == "swinir.cli.train":
            continue
        if any(t == "swinir.training" or t.startswith("swinir.training.") for t in
               imported_modules(name, path, known)):
            offenders.append(name)
    assert offenders == []


INFERENCE_PATH = """
import importlib, importlib.util, json, sys
repo = sys.argv[1]
# The pack as ComfyUI imports it: a package named for its folder, its node code importing the core relatively.
spec = importlib.util.spec_from_file_location("pack", repo + "/__init__.py", submodule_search_locations=[repo])
pack = importlib.util.module_from_spec(spec)
sys.modules["pack"] = pack
spec.loader.exec_module(pack)
for name in ("pack.nodes.work", "swinir", "swinir.engine", "swinir.cli", "swinir.cli.restore"):
    importlib.import_module(name)
import swinir.cli
swinir.cli.build_parser()  # the parser of every subcommand, `train` included
print(json.dumps(sorted(n for n in sys.modules if ".training" in n or n.endswith("swinir.training"))))
"""


def test_the_inference_path_loads_no_training_module() -> None:
    result = subprocess.run([sys.executable, "-c", INFERENCE_PATH, str(REPO)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_check_sees_a_training_import() -> None:
    # The same child, with the trainer imported last: the check above would fail if the inference path loaded it.
    code = INFERENCE_PATH.replace("print(json.dumps(", "import swinir.training.trainer\nprint(json.dumps(")
    result = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "swinir.training.trainer" in json.loads(result.stdout.splitlines()[-1])


# ComfyUI's own checkout is no package of this repository: testkit/comfy_path.py puts it on the path.
SYS_PATH_EDITS_ALLOWED = {"testkit/comfy_path.py"}


def test_benchmarks_and_shared_helpers_import_without_sys_path_edits() -> None:
    # Run from the repository root (`python -m bench.NAME`, pytest's pythonpath), they import swinir and testkit as
    # packages; a child process started in a checkout imports that checkout's swinir.
    edits = sorted(
        str(path.relative_to(REPO)) for folder in ("bench", "testkit") for path in (REPO / folder).glob("*.py")
        if "sys.path.insert" in path.read_text(encoding="utf-8") or "sys.path[:0]" in path.read_text(encoding="utf-8")
    )
    assert set(edits) <= SYS_PATH_EDITS_ALLOWED, edits
