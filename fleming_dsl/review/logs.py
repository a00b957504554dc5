"""What a job's log says: its own `error:` line (what `fleming job` prints when a job fails) and
its latest line (a progress bar's state), read by `fleming run` and `fleming status`."""

from __future__ import annotations

import re
from pathlib import Path


def error_line(log: Path) -> str | None:
    """The job's own `error:` line (the last one) in its log, if it wrote one."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return next((line for line in reversed(lines) if line.startswith("error: ")), None)


def last_line(log: Path) -> str:
    """The last non-empty line of a log (a progress bar's latest state: after its last \\r)."""
    try:
        with log.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - 4096, 0))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    pieces = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    return pieces[-1][:120] if pieces else ""
