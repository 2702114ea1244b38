"""The package's shape: layers import only downward, no import circle, and every workflow
script is one call of a ``tinylang.stages`` function."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, snakemake_dag

SRC = REPO / "src" / "tinylang"
SCRIPTS = REPO / "workflow" / "scripts"

# Lowest first: a module may import its own layer's and lower layers' modules only.
LAYERS = [
    {"lazy", "registry", "files", "integrity", "strict", "tables", "device", "environment", "progress", "tracking"},
    {"languages", "models"},
    {"training", "evaluation"},
    {"study", "sweep"},
    {"figures"},
    {"config", "targets", "results"},
    {"stages"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The tinylang modules ``path`` imports, at module level or inside functions (not those
    under ``if TYPE_CHECKING:``, which never run)."""
    found, package = set(), module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tinylang")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("tinylang"):
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "tinylang"))
def test_a_module_imports_only_its_own_and_lower_layers(module):
    upward = sorted(m for m in GRAPH[module] if m != "tinylang" and layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports a higher layer: {upward}"


def test_there_is_no_import_circle_between_modules():
    def is_package_face(child: str, parent: str) -> bool:  # a package's __init__ re-exporting its modules
        return child.startswith(parent + ".")

    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in GRAPH[module]:
            if is_package_face(target, module) or is_package_face(module, target):
                continue
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path[path.index(target):], target]))
            if not state.get(target):
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if not state.get(module):
            visit(module, [module])


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_every_workflow_script_is_one_call_of_a_stage(script):
    tree = ast.parse(script.read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    imports_, calls = body[:-1], body[-1:]
    assert all(isinstance(node, ast.ImportFrom) and node.module == "tinylang.stages" for node in imports_), script.name
    assert len(calls) == 1 and isinstance(calls[0], ast.Expr) and isinstance(calls[0].value, ast.Call), script.name
    from tinylang import stages

    assert calls[0].value.func.id in stages.__all__, script.name


MAX_FUNCTION_LINES = 60
# Long functions still to split (issue: one stage boundary and short parts); a function leaves
# this list when it is split, and none joins it.
TO_SPLIT: set[str] = set()


def long_functions() -> set[str]:
    found = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    found.add(f"{name}:{node.name}")
    return found


def test_functions_are_short_enough_to_read_at_a_glance():
    found = long_functions()
    assert found <= TO_SPLIT, f"over {MAX_FUNCTION_LINES} lines: {sorted(found - TO_SPLIT)}"
    assert TO_SPLIT <= found, f"split already, take them off TO_SPLIT: {sorted(TO_SPLIT - found)}"


def _mermaid_edges(text: str) -> set[tuple[str, str]]:
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    return {(a, b) for a, b in re.findall(r"^\s*(\w+)[^\n]*?-->\s*(\w+)", block, re.M)}


def test_the_documented_rule_graph_is_the_one_snakemake_draws(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), snakemake_dag(tmp_path, None, print_dag_as="dot") as dag:  # the default study
        dag.printrulegraph()
    dot = printed.getvalue()
    labels = dict(re.findall(r'(\d+)\[label = "(\w+)"', dot))
    drawn = {(labels[a], labels[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)}
    assert _mermaid_edges((REPO / "docs" / "ARCHITECTURE.md").read_text()) == drawn


def test_planning_a_workflow_loads_neither_torch_nor_the_plotting_stack():
    """Every Snakemake invocation (a dry run, each cluster job) imports what the Snakefile does and
    validates the study; torch, matplotlib, seaborn and scipy cost it seconds, and only the jobs
    that need them import them."""
    imports = re.findall(r"^(?:from|import) (tinylang[\w.]*)", (REPO / "workflow" / "Snakefile").read_text(), re.M)
    assert "tinylang.config" in imports and "tinylang.figures.registry" in imports
    plan = (f"study = tinylang.config.load_study(yaml.safe_load(open({str(REPO / 'config' / 'config.yaml')!r})), "
            f"language_library={str(REPO / 'config' / 'languages')!r}); study.targets('results/default').all_outputs()")
    script = "; ".join(f"import {name}" for name in imports) + "; import tinylang.targets, sys, yaml; " + plan + \
        "; print(sorted(m for m in ('torch', 'matplotlib', 'seaborn', 'scipy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout.strip() == "[]"


def test_figure_and_aggregation_jobs_do_not_load_torch():
    """A figure, study-table or summary job reads tables (and a language's files); importing torch
    would add seconds to each."""
    script = ("import sys, tinylang.stages.study, tinylang.figures.plots, tinylang.figures.study_plots, "
              "tinylang.study, tinylang.study.mechanism, tinylang.evaluation.restoration, tinylang.figures.reference, "
              "tinylang.languages; "
              "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout.strip() == "False"
