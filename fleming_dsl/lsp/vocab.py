"""Relation names and node types of a local graph, for metapath completion.

Reads the graph files a `graph` declaration names, in the layouts the graph loader takes
(PrimeKG `kg.csv`: relation, x_type, y_type columns; Hetionet `nodes.tsv` kind column and
`edges.sif` metaedges; typed triples `head, head_type, relation, tail, tail_type`). Only the
first `_MAX_ROWS` rows are read, so a PrimeKG-scale file answers in well under a second; the
result is cached by path, size and modification time.
"""

from __future__ import annotations

import csv
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

_MAX_ROWS = 200_000
_TRIPLE_COLUMNS = ("head", "head_type", "relation", "tail", "tail_type")


@dataclass(frozen=True)
class Vocabulary:
    relations: tuple[str, ...]
    node_types: tuple[str, ...]


def vocabulary(fmt: str, paths: tuple[Path, ...]) -> Vocabulary:
    """The relations and node types found in a graph's files (empty when they are absent)."""
    stamps = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return Vocabulary((), ())
        stamps.append((str(path), st.st_size, st.st_mtime_ns))
    return _cached(fmt, tuple(stamps))


@functools.lru_cache(maxsize=16)
def _cached(fmt: str, stamps: tuple) -> Vocabulary:
    paths = [Path(s[0]) for s in stamps]
    relations: set[str] = set()
    types: set[str] = set()
    if fmt == "primekg":
        for row in _rows(paths[0], ","):
            relations.add(row.get("relation", ""))
            types.update((row.get("x_type", ""), row.get("y_type", "")))
    elif fmt == "triples":  # the header line is optional: read by position
        for row in _rows(paths[0], "\t", _TRIPLE_COLUMNS):
            relations.add(row.get("relation") or "")
            types.update((row.get("head_type") or "", row.get("tail_type") or ""))
        relations.discard("relation")
        types.discard("head_type")
        types.discard("tail_type")
    elif fmt == "hetionet":
        types.update(row.get("kind", "") for row in _rows(paths[0], "\t"))
        if len(paths) > 1:
            relations.update(row.get("metaedge", "") for row in _rows(paths[1], "\t"))
    relations.discard("")
    types.discard("")
    return Vocabulary(tuple(sorted(relations)), tuple(sorted(types)))


def _rows(path: Path, delimiter: str, fieldnames: tuple[str, ...] | None = None):
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, fieldnames=fieldnames, delimiter=delimiter)
            yield from itertools.islice(reader, _MAX_ROWS)
    except (OSError, UnicodeDecodeError, csv.Error):
        return
