"""Golden folders of compiler output: read, rewrite, and compare them as the compiler decides them.

A manifest's library versions describe the machine that compiled (what pip installed there), not
the spec: a machine with newer wheels than constraints.txt must not see every golden as stale. The
comparison keeps which libraries each job imports (the compiler's decision) and drops their
versions; `test_emit.py` checks separately that the versions written are the installed ones.
"""

from __future__ import annotations

import json
from pathlib import Path


def tree(root: Path) -> dict[str, str]:
    """{relative posix path: text} of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file()}


def rewrite(folder: Path, files: dict[str, str]) -> None:
    """Make folder hold exactly files (stale files removed)."""
    for stale in [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []:
        stale.unlink()
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")


def comparable(files: dict[str, str]) -> dict[str, str]:
    """The files with each manifest library's version replaced by '*'."""
    out = dict(files)
    if "manifest.json" in out:
        manifest = json.loads(out["manifest.json"])
        manifest["libraries"] = {job: dict.fromkeys(sorted(libs), "*")
                                 for job, libs in manifest.get("libraries", {}).items()}
        out["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True)
    return out
