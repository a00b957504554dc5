"""Job outputs on disk: atomic writes (a temp path renamed into place on success, so a killed
job leaves nothing half-written), JSON/JSONL reading and writing, and SIGTERM handling."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fleming_dsl.errors import JobError


def _temp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_output(final: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `final`; rename it over `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(final)
    _remove(temp)
    if directory:
        temp.mkdir()
    try:
        yield temp
    except BaseException:
        _remove(temp)
        raise
    if final.exists():
        _remove(final)
    os.replace(temp, final)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a job runs, so `atomic_output` removes its temp files.

    `scancel` and SLURM time limits send SIGTERM; Python's default action kills the process
    without unwinding, which would leave `.x.tmp-<pid>` files behind. The old handler returns after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_json(path: str | Path, data: Any) -> None:
    with atomic_output(path) as temp:
        temp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with atomic_output(path) as temp, open(temp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line is a JobError naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise JobError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    return rows


