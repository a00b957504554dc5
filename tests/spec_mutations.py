"""Seeded mutations of spec text: token, structural and encoding changes a fuzzer makes.

Used by the fuzz test of `fleming check` (tests/unit/spec/test_fuzz.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

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
