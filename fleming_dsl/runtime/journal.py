"""What a job finished before it was stopped, kept for the next allocation: `<output>.progress.jsonl`.

A job that works through items in fixed chunks (evaluation: a model's completions, which no
teacher cache keeps) appends each finished chunk's records here. When the signal before the time
limit (or a preemption) stops it, the next allocation (a requeue, or a re-run of the workflow)
reads them back and generates only the rest; the chunks are the same in both runs, so the output
is byte-identical to an uninterrupted run. The job removes the journal once its output is written.

The first line is a fingerprint of the job: its config's sha256 and each input's size and
modification time. A journal with another fingerprint (the config changed, a model was retrained
in place) is discarded, never merged. Each later line is one `{"pos": <input position>, "out":
...}`, written and flushed whole; a line cut off by a kill is dropped on reading, with every line
after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SUFFIX = ".progress.jsonl"


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _stamps(path: Path) -> list[list[Any]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def fingerprint(config_sha256: str, inputs: Iterable[str]) -> str:
    """The job as the journal knows it: its config and the size and mtime of every input file
    (cheap enough for a model folder; content hashes would read every weight again)."""
    stamps = [[path, _stamps(Path(path))] for path in inputs if Path(path).exists()]
    blob = json.dumps([config_sha256, stamps], sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Journal:
    """The finished records of one job's output, appended chunk by chunk."""

    def __init__(self, output: str | Path, job_print: str) -> None:
        self.path = journal_path(output)
        self.fingerprint = job_print  # `fingerprint(...)` of the job writing it

    def load(self) -> dict[int, Any]:
        """The records a stopped run left (input position -> out); {} for none or another job's."""
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("fingerprint") != self.fingerprint:
            self.remove()
            return {}
        done: dict[int, Any] = {}
        whole = len(lines[0]) + 1  # characters up to the end of the last whole line
        for line in lines[1:]:
            try:
                row = json.loads(line)
                done[int(row["pos"])] = row["out"]
            except (ValueError, KeyError, TypeError):
                break  # the cut-off last line (or the empty end): nothing after it is whole
            whole += len(line) + 1
        text = "\n".join(lines)
        if whole < len(text):  # cut the torn tail, so the next appends follow whole lines
            os.truncate(self.path, len(text[:whole].encode("utf-8")))
        return done

    def add(self, records: Iterable[tuple[int, Any]]) -> None:
        """Append records, flushed to disk before returning (the next allocation may run on
        another node of a shared filesystem)."""
        lines = "".join(json.dumps({"pos": pos, "out": out}, ensure_ascii=False, sort_keys=True) + "\n"
                        for pos, out in records)
        fresh = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            if fresh:
                handle.write(json.dumps({"fingerprint": self.fingerprint}) + "\n")
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
