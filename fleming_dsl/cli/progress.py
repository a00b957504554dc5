"""What `fleming run` shows while Snakemake runs: one line per job (started, done, failed, with
its time), a heartbeat with the running jobs' last log line, the failed job's own `error:` line
and log path, and a summary. Snakemake's raw output goes to a log file beside the jobs' logs.

`events` reads Snakemake's output (a pure function of its lines); `follow` is the side-effecting
edge that runs the process, writes the raw log and prints.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fleming_dsl.review.logs import error_line, last_line

HEARTBEAT_SECONDS = 60.0  # a line about the running jobs when nothing else was printed this long

_BLOCK = re.compile(r"^(?:local)?rule (\S+):$")
_ERROR = re.compile(r"^Error in rule (\S+):$")
_FINISHED = re.compile(r"^Finished (?:jobid: |job )(\d+)")
_FIELD = re.compile(r"^\s+(\w+): (.*)$")
_PASSED_ON = ("Nothing to be done",)  # Snakemake's own failures: the raw log's tail (cli.main)


@dataclass(frozen=True)
class Event:
    kind: str  # "started", "done", "failed" or "note" (a line of Snakemake's worth showing)
    jobid: str = ""
    rule: str = ""
    log: str = ""
    text: str = ""


def events(lines: Iterable[str]) -> Iterator[Event]:
    """Job events from Snakemake's output lines (Snakemake 8 and 9 wording), read lazily: a job
    is reported started at its `jobid:` line (its `log:` comes before it), not when it ends."""
    block: dict[str, str] | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if block is not None:
            found = _FIELD.match(line)
            if found:
                block.setdefault(found.group(1), found.group(2).split(" (check log")[0].strip())
                if found.group(1) == "jobid" and block["kind"] == "started":
                    yield Event("started", block["jobid"], block["rule"], block.get("log", ""))
                    block = None
                continue
            if block["kind"] == "failed":
                yield Event("failed", block.get("jobid", ""), block["rule"], block.get("log", ""))
            block = None
        if (match := _BLOCK.match(line)) or (match := _ERROR.match(line)):
            block = {"rule": match.group(1),
                     "kind": "failed" if line.startswith("Error in rule") else "started"}
        elif match := _FINISHED.match(line):
            yield Event("done", match.group(1))
        elif line.startswith(_PASSED_ON):
            yield Event("note", text=line)
    if block is not None and block["kind"] == "failed":
        yield Event("failed", block.get("jobid", ""), block["rule"], block.get("log", ""))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class Board:
    """The jobs of one run, by Snakemake's job id, and what has been printed about them."""

    job_names: dict[str, str]  # a job's log path -> its name (plan.Job.log)
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    running: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # id -> name, log, start
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, log)

    def apply(self, event: Event) -> None:
        now = self.clock()
        if event.kind == "started":
            name = self.job_names.get(event.log, event.rule)
            if name == "all":
                return
            self.running[event.jobid] = (name, event.log, now)
            self.say(f"started  {name}")
        elif event.kind == "done" and event.jobid in self.running:
            name, _, start = self.running.pop(event.jobid)
            self.done.append(name)
            self.say(f"done     {name}  ({_duration(now - start)})")
        elif event.kind == "failed":
            name, log, start = self.running.pop(
                event.jobid, (self.job_names.get(event.log, event.rule), event.log, now))
            self.failed.append((name, log))
            self.say(f"FAILED   {name}  ({_duration(now - start)})")
            said = error_line(Path(log)) if log else None
            if said:
                self.say(f"  {said}")
            if log:
                self.say(f"  log: {log}")
        elif event.kind == "note":
            self.say(event.text)

    def heartbeat(self) -> None:
        now = self.clock()
        for name, log, start in self.running.values():
            latest = last_line(Path(log)) if log else ""
            self.say(f"running  {name}  ({_duration(now - start)})" + (f"  {latest}" if latest else ""))

    def summary(self, raw_log: str) -> str:
        parts = [f"{len(self.done)} job{'s' if len(self.done) != 1 else ''} done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed ({', '.join(n for n, _ in self.failed)})")
        if self.running:
            parts.append(f"{len(self.running)} not finished")
        return ", ".join(parts) + f"; Snakemake's output: {raw_log}"


def follow(command: list[str], env: dict[str, str], raw_log: Path, board: Board) -> int:
    """Run `command`, its output into `raw_log`, its job events onto `board`; its exit status."""
    raw_log.parent.mkdir(parents=True, exist_ok=True)
    lines: queue.Queue[str | None] = queue.Queue()
    with raw_log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        def arriving() -> Iterator[str]:
            quiet_since = time.monotonic()
            while True:
                try:
                    line = lines.get(timeout=5.0)
                except queue.Empty:
                    if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS and board.running:
                        board.heartbeat()
                        quiet_since = time.monotonic()
                    continue
                if line is None:
                    return
                sink.write(line)
                sink.flush()
                quiet_since = time.monotonic()
                yield line

        threading.Thread(target=pump, daemon=True).start()
        for event in events(arriving()):
            board.apply(event)
        return process.wait()


def printer(stream=None) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=stream or sys.stdout, flush=True)
    return say
