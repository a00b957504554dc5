"""Seeded mutation fuzzing of `fleming check` over every spec in specs/ (issue 11).

Each case takes one shipped spec and applies one mutation: a token mutation (delete, duplicate,
swap, replace with a keyword, a bracket, an absurd number or a long string), a structural one
(delete or duplicate a line, drop a closing bracket, truncate, nest 500 deep, 100 unknown
options) or an encoding one (Latin-1, UTF-16, a BOM, an invalid byte, a NUL). The mutated text
is checked in-process through the CLI's `main`, as `fleming check` would, and must:

- exit 0 or 1, never raise (a traceback);
- when it exits 1, start its error output with a located line `file:line:col: error: ...`;
- finish within PER_CASE_SECONDS.

The cases are fixed by their seeds, so a failure names a case that reproduces.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.cli.main import main

CASES_PER_SPEC = 130  # x 4 specs: 520 cases per run
PER_CASE_SECONDS = 10.0  # generous: a shared CI machine; a typical case takes ~0.05 s
SPECS = sorted(p.name for p in (REPO / "specs").glob("*.flm"))
LOCATED = re.compile(r"^[^\n:]+:\d+:\d+: error: \S")
TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_.eE+-]*[A-Za-z]*|-\[|\]->|-->|\.\.|>=|<=|==|\S')

_WORDS = ["model", "stage", "sweep", "include", "extends", "drop", "experiment", "evaluate", "on",
          "from", "with", "using", "as", "cluster", "resources", "{", "}", "(", ")", "[", "]", "=",
          ",", "*", "+", ":", "..", "-[", "]->", "-->", ">=", "1e999", "-0", "0", "0h", "64",
          "99999999999999999999999999999999h", "1_", "nan", "true", '"', '""', '"{x}"',
          '"' + "a" * 300 + '"', '"../../../../etc/passwd"', '"/proc/self/environ"', "#", "\\"]


# ---------------------------------------------------------------- mutations


def _tokens(text: str) -> list[re.Match]:
    return list(TOKEN.finditer(text))


def _splice(text: str, m: re.Match, new: str) -> str:
    return text[:m.start()] + new + text[m.end():]


def delete_token(text: str, rng: random.Random) -> str:
    return _splice(text, rng.choice(_tokens(text)), "")


def duplicate_token(text: str, rng: random.Random) -> str:
    m = rng.choice(_tokens(text))
    return _splice(text, m, m.group() + " " + m.group())


def swap_tokens(text: str, rng: random.Random) -> str:
    toks = _tokens(text)
    i = rng.randrange(len(toks) - 1)
    a, b = toks[i], toks[i + 1]
    return text[:a.start()] + b.group() + text[a.end():b.start()] + a.group() + text[b.end():]


def replace_token(text: str, rng: random.Random) -> str:
    return _splice(text, rng.choice(_tokens(text)), rng.choice(_WORDS))


def delete_line(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    del lines[rng.randrange(len(lines))]
    return "".join(lines)


def duplicate_line(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    return "".join(lines[:i + 1] + lines[i:])


def drop_closing(text: str, rng: random.Random) -> str:
    closers = [m for m in re.finditer(r"[}\])]", text)]
    return _splice(text, rng.choice(closers), "") if closers else text


def truncate(text: str, rng: random.Random) -> str:
    return text[:rng.randrange(len(text))]


def nest_deep(text: str, rng: random.Random) -> str:
    depth = rng.choice([70, 500, 5000])
    return text + "cluster { x = " + "[" * depth + "]" * depth + " }\n"


def many_unknown_options(text: str, rng: random.Random) -> str:
    return text + "cluster {\n" + "".join(f"  opt{i} = {rng.randint(0, 9)}\n" for i in range(100)) + "}\n"


def shuffle_lines(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    j = rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


TEXT_MUTATIONS: list[Callable[[str, random.Random], str]] = [
    delete_token, duplicate_token, swap_tokens, replace_token, replace_token, replace_token,
    delete_line, duplicate_line, drop_closing, truncate, nest_deep, many_unknown_options, shuffle_lines,
]


def latin1(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    lines[i] += " # café naïve".encode("latin-1")
    return b"\n".join(lines)


def utf16(data: bytes, rng: random.Random) -> bytes:
    return data.decode("utf-8").encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be"]))


def bom(data: bytes, rng: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + data


def bad_byte(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.choice([0x80, 0xC3, 0xFF, 0xFE, 0xED])]) + data[i:]


def nul(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + b"\0" + data[i:]


BYTE_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [latin1, utf16, bom, bad_byte, nul]


def mutate(text: str, rng: random.Random) -> bytes:
    """One or two text mutations, or one encoding mutation of the whole file."""
    if rng.random() < 0.2:
        return rng.choice(BYTE_MUTATIONS)(text.encode("utf-8"), rng)
    for _ in range(rng.choice([1, 1, 2])):
        text = rng.choice(TEXT_MUTATIONS)(text, rng)
    return text.encode("utf-8")


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped specs, data and prompts (the paths the specs name)."""
    root = tmp_path_factory.mktemp("fuzz")
    for folder in ("specs", "data", "prompts"):
        shutil.copytree(REPO / folder, root / folder)
    return root


def check(root: Path, spec: Path) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check", str(spec.relative_to(root))])
    return code, err.getvalue(), time.perf_counter() - started


@pytest.mark.parametrize("name", SPECS)
def test_mutated_specs_never_crash_and_every_rejection_is_located(
        name: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    original = (project / "specs" / name).read_text(encoding="utf-8")
    # the mutant replaces the spec itself, so a spec that extends it reads the mutant too
    spec = project / "specs" / name
    failures, rejected = [], 0
    try:
        for case in range(CASES_PER_SPEC):
            rng = random.Random(f"{name}:{case}")
            data = mutate(original, rng)
            spec.write_bytes(data)
            try:
                code, err, seconds = check(project, spec)
            except Exception as crash:  # noqa: BLE001 - the finding this test exists for
                failures.append(f"case {case}: {type(crash).__name__}: {crash}"[:300])
                continue
            first = err.splitlines()[0] if err else ""
            if code not in (0, 1):
                failures.append(f"case {case}: exit {code}: {first}")
            elif code == 1 and not LOCATED.match(first):
                failures.append(f"case {case}: unlocated: {first!r}"[:300])
            elif seconds > PER_CASE_SECONDS:
                failures.append(f"case {case}: took {seconds:.1f} s")
            rejected += code == 1
    finally:
        spec.write_text(original, encoding="utf-8")
    assert failures == []
    assert rejected > CASES_PER_SPEC // 2  # the mutations do reach the checks
