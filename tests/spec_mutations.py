"""Seeded mutations of spec text: token, structural and encoding changes a fuzzer makes.

Used by the fuzz test of `fleming check` (tests/unit/spec/test_fuzz.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

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


# The shapes that found issue 28: huge numbers in any numeric option, sweeps over unknown
# names, a line starting with a non-ASCII letter inside a block.
HUGE = ["18446744073709551617", "100000007", "1" + "0" * 40, "9" * 400, "1e308", "4294967297"]
NUMBER = re.compile(r"(?<![\w.])\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")


def huge_number(text: str, rng: random.Random) -> str:
    found = list(NUMBER.finditer(text))
    return _splice(text, rng.choice(found), rng.choice(HUGE)) if found else text


def unknown_sweeps(text: str, rng: random.Random) -> str:
    opens = [m for m in re.finditer(r"^stage [^\n]*\{[ \t]*$", text, re.M)]
    if not opens:
        return text
    at = rng.choice(opens).end()
    count = rng.choice([12, 16, 40, 200])
    sweeps = "".join(f"\n  sweep zq{i}_{rng.randrange(100)} in [1, 2]" for i in range(count))
    return text[:at] + sweeps + text[at:]


def non_ascii_start(text: str, rng: random.Random) -> str:
    opens = [m.end() for m in re.finditer(r"\{[ \t]*$", text, re.M)] or [len(text)]
    at = rng.choice(opens)
    line = rng.choice(["é", "Ω", "数", "ß", "Ä"]) + rng.choice(["valuate x", "stage = 1", " = 2", ""])
    return text[:at] + "\n" + line + text[at:]


TEXT_MUTATIONS: list[Callable[[str, random.Random], str]] = [
    delete_token, duplicate_token, swap_tokens, replace_token, replace_token, replace_token,
    delete_line, duplicate_line, drop_closing, truncate, nest_deep, many_unknown_options, shuffle_lines,
    huge_number, huge_number, unknown_sweeps, non_ascii_start,
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


# ---------------------------------------------------------------- whole-project shapes

SECRET = "FLEMING_FUZZ_SECRET=s3cr3t"  # put where a linked spec may point: it must never be printed
HEAVY_TEMPLATES = [
    "{{ (9**(9**9)) > 0 }}", "{{ 'a' * 10**12 }}", "{{ question|center(999999999) }}",
    "{{ '%999999999d' % 1 }}", "{% set n = 9 %}{{ n ** n ** n }}", "{{ (2**64) * (2**64) }} {{ 9**99 }}",
    "{% for i in range(99999) %}{% endfor %}{{ 'ok' }}", "{{ ((((1+1)*2)**3)**4)**5 }}",
]


def link_spec(root: Path, spec: Path, rng: random.Random) -> Callable[[], None]:
    """The spec becomes a link out of the project or to a file that is not a spec."""
    text = spec.read_bytes()
    (root / "secret.env").write_text(SECRET + "\n")
    target = rng.choice(["/proc/self/environ", "/etc/passwd", str(root / "secret.env"),
                         str(root.parent), "/nonexistent/x.flm"])
    spec.unlink()
    spec.symlink_to(target)

    def restore() -> None:
        spec.unlink()
        spec.write_bytes(text)
    return restore


def heavy_template(root: Path, spec: Path, rng: random.Random) -> Callable[[], None]:
    """One prompt template of the project computes with huge constants."""
    templates = sorted((root / "prompts").glob("*.j2"))
    chosen = rng.choice(templates)
    text = chosen.read_bytes()
    chosen.write_text(rng.choice(HEAVY_TEMPLATES) + "\n")
    return lambda: chosen.write_bytes(text)


PROJECT_SHAPES: list[Callable[[Path, Path, random.Random], Callable[[], None]]] = [link_spec, heavy_template]
