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
                      "fleming_dsl.vocabulary"}  # the domain's words, which the checks use too
# the checker is a tool, not a library: what the back end shares with it lives in a leaf module
CHECKER = "fleming_dsl.check"
NOT_THE_CHECKER = ("lower/", "plan/", "emit/", "runtime/")
LEAF = PACKAGE / "vocabulary.py"
LEAF_MAY_IMPORT = {"fleming_dsl.ir"}


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


def test_lowering_the_planner_emitter_and_runtime_never_import_the_checker() -> None:
    offenders = [f"{path.relative_to(PACKAGE).as_posix()} imports {module}"
                 for path in _modules(PACKAGE)
                 if path.relative_to(PACKAGE).as_posix().startswith(NOT_THE_CHECKER)
                 for module, _ in _imports(path)
                 if module == CHECKER or module.startswith(CHECKER + ".")]
    assert offenders == []


def test_the_domain_vocabulary_is_a_leaf() -> None:
    assert {module for module, _ in _imports(LEAF)} <= LEAF_MAY_IMPORT


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


# What `fleming check` must not load: the planner, emitter and review tools (and the job-config
# contract), the template engine, and the data libraries. It parses, checks and lowers; the
# editor integration runs it on every keystroke, so its start-up is its speed.
CHECK_MAY_NOT_LOAD = ("fleming_dsl.plan", "fleming_dsl.emit", "fleming_dsl.review",
                      "fleming_dsl.runtime", "jinja2", "networkx", "numpy", "pandas", "pyarrow",
                      "yaml", "snakemake")


def test_fleming_check_loads_only_the_front_end(tmp_path: Path) -> None:
    """jinja2 is loaded only to parse a prompt template whose text was not parsed before (its
    findings are kept in a sidecar, check/templates.py): the second check loads none of it."""
    import os
    import subprocess
    import sys

    script = (
        "import runpy, sys\n"
        "sys.argv = ['fleming', 'check', 'specs/fleming_r1_7b.flm']\n"
        "try:\n    runpy.run_module('fleming_dsl.cli', run_name='__main__')\n"
        "except SystemExit as exit_:\n    code = exit_.code\n"
        f"print(code, sorted(m for m in sys.modules if m.startswith({CHECK_MAY_NOT_LOAD!r})))\n")
    env = {**os.environ, "FLEMING_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", script], cwd=REPO, text=True,
                           capture_output=True, timeout=120, env=env)
    code, loaded = first.stdout.splitlines()[-1].split(" ", 1)
    assert code == "0" and loaded.startswith("['jinja2") and "fleming_dsl" not in loaded \
        and "numpy" not in loaded, first.stdout + first.stderr  # the first parse of each template
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, text=True,
                            capture_output=True, timeout=120, env=env)
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr
