"""Graph files against their declared format: the header (primekg, hetionet) or the fields of the
first lines (triples), read the way the graph_load job reads them, so a 3-column triples file or
a PrimeKG export with renamed columns fails at `fleming check`, at the path that names it, not
minutes later in a job. The read is bounded (FIRST_LINES lines) whatever the file's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from fleming_dsl.check.common import Checked
from fleming_dsl.check.files import exists, local_path
from fleming_dsl.check.graph_vocab import open_text
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import GRAPH_COLUMNS

FIRST_LINES = 100  # lines of a triples file whose fields are counted at check time
_SEPARATOR = {"primekg": ",", "hetionet": "\t", "triples": "\t"}


def _lines(path: Path, count: int) -> list[str]:
    with open_text(path) as handle:
        return [line.rstrip("\r\n") for line in islice(handle, count)]


def header_problem(fmt: str, columns: tuple[str, ...], lines: list[str]) -> str | None:
    """Why the first lines of a graph file do not fit `columns`, or None."""
    if not lines or not lines[0].strip():
        return "is empty (expected a header line)" if fmt != "triples" else "is empty"
    sep = _SEPARATOR[fmt]
    if fmt == "triples":
        header = lines[0].split(sep)
        if header[0] == "head" and tuple(header) != columns:
            return f"has the header {', '.join(header)}; the triples format reads {', '.join(columns)}"
        for number, line in enumerate(lines[1:] if header[0] == "head" else lines,
                                      2 if header[0] == "head" else 1):
            fields = line.split(sep)
            if line and len(fields) != len(columns):
                return (f"line {number} has {len(fields)} tab-separated field"
                        f"{'s' if len(fields) != 1 else ''}; the triples format has "
                        f"{len(columns)}: {', '.join(columns)}")
        return None
    header = [name.strip().strip('"') for name in lines[0].split(sep)]
    missing = [c for c in columns if c not in header]
    if missing:
        return f"has no column '{missing[0]}' in its header"
    return None


def graph_headers(c: Checked) -> Iterator[Diagnostic]:
    """Each local graph file's header (or first lines) fits the graph's declared format."""
    for decl in c.program.decls:
        if not isinstance(decl, ast.GraphDecl) or decl.source.func.name not in GRAPH_COLUMNS:
            continue
        fmt = decl.source.func.name
        paths = [a for a in decl.source.args if isinstance(a, ast.Str)]
        for arg, columns in zip(paths, GRAPH_COLUMNS[fmt] * (len(paths) if fmt == "triples" else 1)):
            path = local_path(c, decl, arg.value)
            if not exists(path) or path.is_dir():
                continue  # missing_files reports it
            try:
                problem = header_problem(fmt, columns, _lines(path, FIRST_LINES))
            except UnicodeDecodeError as err:
                problem = f"is not UTF-8 text (byte {err.start})"
            except (OSError, EOFError) as err:  # EOFError: a .gz cut short
                problem = f"cannot be read: {getattr(err, 'strerror', None) or type(err).__name__}"
            if problem is not None:
                yield Diagnostic(f"graph {decl.name.name}: {arg.value} {problem}", arg.span,
                                 expected=f"{fmt} columns: {', '.join(columns)}",
                                 hint=_HINTS[fmt])


_HINTS = {
    "primekg": "a PrimeKG kg.csv: comma-separated, with the header line of the release "
               "(docs/data.md)",
    "hetionet": "Hetionet: a nodes TSV (id, name, kind) and an edges TSV (source, metaedge, "
                "target), in that order (docs/data.md)",
    "triples": "one fact per line: head, head_type, relation, tail, tail_type separated by tabs; "
               "a header line is optional (docs/data.md)",
}
