"""The names a graph file uses (relations and node types), read at check time, streamed.

`fleming check` compares a sample's metapath with these names so a typo fails in seconds rather
than hours later in the sample job. A PrimeKG `kg.csv` is ~1 GB, so the vocabulary is read once
and kept in a small JSON sidecar under the cache folder, keyed by a fingerprint of the file (its
size, modification time, and SHA-256 of its first and last MiB): an edited file gets a new key.

This module is compile-time code: the standard library only, no runtime import.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fleming_dsl.errors import FlemingError
from fleming_dsl.vocabulary import stored_reverse

_EDGE = 1 << 20  # bytes hashed at each end of a file for its fingerprint
VERSION = 2  # bump when what a sidecar holds changes (2: the ends each relation joins)


@dataclass(frozen=True)
class Vocabulary:
    relations: frozenset[str]
    node_types: frozenset[str]
    # (relation, from type, to type) of every edge the loader stores, reverses included: how a
    # metapath step may walk (graph_load files a reverse as vocabulary.py `stored_reverse`)
    ends: frozenset[tuple[str, str, str]] = frozenset()


class VocabularyError(FlemingError):
    """A graph file that cannot be read here (the job will report it in full)."""


def cache_dir() -> Path:
    """Where sidecars live: $FLEMING_CACHE_DIR, else $XDG_CACHE_HOME/fleming-dsl, else ~/.cache."""
    root = os.environ.get("FLEMING_CACHE_DIR")
    if root:
        return Path(root) / "graph_vocab"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleming-dsl" / "graph_vocab"


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256(f"v{VERSION}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_EDGE))
            if stat.st_size > 2 * _EDGE:
                handle.seek(-_EDGE, os.SEEK_END)
                digest.update(handle.read(_EDGE))
    return digest.hexdigest()


def open_text(path: Path):
    """A graph file as UTF-8 text: Hetionet publishes its edges as .sif.gz, and the loader reads
    it as such."""
    opener = gzip.open if path.name.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", newline="")


def _rows(path: Path, delimiter: str):
    handle = open_text(path)
    csv.field_size_limit(sys.maxsize)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return handle, csv.reader(handle, delimiter=delimiter, quoting=quoting)


def _columns(path: Path, delimiter: str, wanted: tuple[str, ...], mapped=None) -> set[tuple[str, ...]]:
    """The distinct combinations of some columns (by header name) of a delimited file, streamed;
    `mapped`, when given, turns each row's tuple into what is kept (None: nothing)."""
    handle, reader = _rows(path, delimiter)
    with handle:
        header = next(reader, None)
        if header is None:
            raise VocabularyError(f"{path.name} is empty")
        missing = [c for c in wanted if c not in header]
        if missing:
            raise VocabularyError(f"{path.name} has no column {missing[0]!r}")
        index = [header.index(c) for c in wanted]
        width = max(index)
        rows = (tuple(row[i] for i in index) for row in reader if len(row) > width)
        return set(rows) if mapped is None else {m for m in map(mapped, rows) if m is not None}


def _with_reverses(fmt: str, written: set[tuple[str, str, str]]) -> Vocabulary:
    """The names and ends of a graph whose loader adds each written fact's reverse edge."""
    ends = set(written)
    for relation, head, tail in written:
        ends.add((stored_reverse(fmt, relation, head == tail), tail, head))
    return Vocabulary(frozenset(r for r, _, _ in ends), frozenset(t for _, h, x in ends for t in (h, x)),
                      frozenset(ends))


def _read(format: str, paths: list[Path]) -> Vocabulary:
    if format == "primekg":  # both directions are rows of the file: nothing is added
        ends = _columns(paths[0], ",", ("relation", "x_type", "y_type"))
        return Vocabulary(frozenset(r for r, _, _ in ends),
                          frozenset(t for _, x, y in ends for t in (x, y)), frozenset(ends))
    if format == "hetionet":
        kind = dict(_columns(paths[0], "\t", ("id", "kind")))
        # a source or target missing from the nodes file is the job's located error to give
        written = _columns(paths[1], "\t", ("source", "metaedge", "target"),
                           lambda r: (r[1], kind[r[0]], kind[r[2]]) if r[0] in kind and r[2] in kind else None)
        return _with_reverses("hetionet", written)
    written = set()
    for path in paths:  # triples: head head_type relation tail tail_type, optional header
        handle, reader = _rows(path, "\t")
        with handle:
            for row in reader:
                if len(row) == 5 and row[0] != "head":
                    written.add((row[2], row[1], row[4]))
    return _with_reverses("triples", written)


def vocabulary(format: str, paths: list[Path]) -> Vocabulary:
    """The graph's names, from the sidecar when one matches the files, else read and cached.

    Raises VocabularyError (or OSError / UnicodeDecodeError) when the files cannot be read."""
    try:
        key = fingerprint(paths)
    except IsADirectoryError:
        raise VocabularyError("a folder where a file is expected") from None
    sidecar = cache_dir() / f"{format}-{key}.json"
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        return Vocabulary(frozenset(data["relations"]), frozenset(data["node_types"]),
                          frozenset(tuple(e) for e in data["ends"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    vocab = _read(format, paths)
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        temp = sidecar.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"relations": sorted(vocab.relations),
                                    "node_types": sorted(vocab.node_types),
                                    "ends": sorted(vocab.ends)}), encoding="utf-8")
        os.replace(temp, sidecar)
    except OSError:
        pass  # a read-only cache only costs a re-read next time
    return vocab
