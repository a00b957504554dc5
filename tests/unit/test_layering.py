"""The layout enforces the light-import rule: compile-time code never imports the runtime.

`fleming check`, `compile`, `diff`, `status` and `explain` load only the front end, the planner,
the emitter and the review tools; `fleming job` is the one door into `runtime/` (torch, trl,
vllm live behind it). The runtime, in turn, knows the compiler only through the job-config
contract (`plan/jobconfig.py`) and the shared leaf modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from paths import REPO

PACKAGE = REPO / "fleming_dsl"
# the one place compile-time code reaches into the runtime: the `fleming job` handler
RUNTIME_DOORS = {("cli/main.py", "cmd_job")}
# what the runtime may import from the compile-time side
RUNTIME_MAY_IMPORT = {"fleming_dsl.errors", "fleming_dsl.hashing", "fleming_dsl.ir",
                      "fleming_dsl.resources", "fleming_dsl.plan.jobconfig",
                      "fleming_dsl.check.predicates"}  # the check rules' own words, reused


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module imported, enclosing function or '') for every fleming_dsl import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("fleming_dsl"):
                found.extend((f"{child.module}.{a.name}" if child.module == "fleming_dsl" else child.module,
                              name) for a in child.names)
            elif isinstance(child, ast.Import):
                found.extend((a.name, name) for a in child.names if a.name.startswith("fleming_dsl"))
            visit(child, name)

    visit(tree, "")
    return found


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_compile_time_code_never_imports_the_runtime() -> None:
    offenders = []
    for path in _modules(PACKAGE):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("runtime/"):
            continue
        for module, function in _imports(path):
            if module.startswith("fleming_dsl.runtime") and (rel, function) not in RUNTIME_DOORS:
                offenders.append(f"{rel} ({function or 'module level'}) imports {module}")
    assert offenders == []


def test_runtime_knows_the_compiler_only_through_the_job_config_contract() -> None:
    offenders = []
    for path in _modules(PACKAGE / "runtime"):
        for module, _ in _imports(path):
            if module.startswith("fleming_dsl.runtime"):
                continue
            if not any(module == allowed or module.startswith(allowed + ".")
                       for allowed in RUNTIME_MAY_IMPORT):
                offenders.append(f"{path.relative_to(PACKAGE).as_posix()} imports {module}")
    assert offenders == []
