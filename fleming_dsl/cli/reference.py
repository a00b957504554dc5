"""`fleming reference [FILE] [--check]`: regenerate the tables of docs/language.md.

The language reference is prose with generated sections between marker comments:

    <!-- generated: options stage -->      the option table of one block (lower/options.py)
    <!-- generated: sources -->            the functions each declaration's call may name
    <!-- end generated -->

Everything outside the markers is kept as written. `--check` exits 1 when a section differs
from what the option table gives (tests/unit/cli/test_reference.py runs it on the shipped file).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from fleming_dsl.lower import options as table

DEFAULT_FILE = "docs/language.md"
_SECTION = re.compile(r"(<!-- generated: (?P<what>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table(key: str) -> str:
    block = table.BY_KEY[key]
    rows = ["| option | type | unit | default | range | meaning |", "|---|---|---|---|---|---|"]
    for opt in block.options:
        default = opt.default_text()
        phrase = "<" in default or (default[:1].isalpha() and " " in default)  # "the experiment seed"
        if default and not phrase:
            default = f"`{default}`"
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{opt.name}`", opt.type, opt.unit, default or "", opt.range, opt.meaning)) + " |")
    return f"Written: `{block.where}`\n\n" + "\n".join(rows) + "\n"


def sources_table() -> str:
    rows = ["| call | may name |", "|---|---|"]
    for what, names in table.SOURCES.items():
        rows.append(f"| {what} | " + ", ".join(f"`{n}`" for n in names) + " |")
    return "\n".join(rows) + "\n"


def section(what: str) -> str:
    if what == "sources":
        return sources_table()
    if what.startswith("options "):
        return options_table(what[len("options "):])
    raise ValueError(f"unknown generated section '{what}'")


def render(text: str) -> str:
    """`text` with every generated section rewritten from the option table."""
    return _SECTION.sub(lambda m: m.group(1) + "\n" + section(m.group("what")) + "\n" + m.group(4), text)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reference", help="regenerate the option tables of the language reference",
        description="Rewrite the generated sections of the language reference (docs/language.md) "
                    "from the option table the checker is held to. Exit 1 with --check when they differ.")
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, help=f"the reference (default {DEFAULT_FILE})")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when out of date")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        fresh = render(text)
    except (OSError, ValueError) as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    if fresh == text:
        return 0
    if args.check:
        print(f"{path}: generated sections are out of date (run `fleming reference {path}`)", file=sys.stderr)
        return 1
    path.write_text(fresh, encoding="utf-8")
    print(f"{path}: updated")
    return 0
