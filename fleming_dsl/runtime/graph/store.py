"""The compact typed graph store: CSR arrays of a knowledge graph, saved as one `.npz`.

Layout (all plain numpy arrays, no pickled objects, so `np.load(allow_pickle=False)` reads it):

- `node_type[n]` (int8/int16): index into `type_names`; `names`/`ids`: one UTF-8 blob per field
  plus int64 offsets (node i's name is `blob[off[i]:off[i+1]]`).
- `indptr[n+1]` (int64), `indices[m]` (int32), `rel[m]` (int8/int16): out-edges of node v are
  `indptr[v]:indptr[v+1]`, sorted by (relation, neighbour type, neighbour), so the neighbours of
  v along relation r, and among them those of type t, are each one binary search away.

The loaders (`graphio.py`) read PrimeKG, Hetionet and typed-triples files into an `EdgeList`;
`build_store` turns it into a `GraphStore`. A PrimeKG-scale graph (129K nodes, 8M directed edges)
takes about 5 bytes per edge here (int32 neighbour + int8 relation) plus the node tables.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.io import atomic_output

if TYPE_CHECKING:
    import networkx

FORMAT_VERSION = 1
_SEP = "\x1f"  # unit separator: joins vocabularies (type and relation names) into one string


def small_int_dtype(count: int) -> np.dtype:
    """The narrowest signed dtype that indexes `count` vocabulary entries."""
    return np.dtype(np.int8) if count <= 127 else np.dtype(np.int16)


def pack_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (uint8 UTF-8 blob, int64 offsets of length n+1)."""
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


@dataclass(frozen=True, eq=False)
class GraphStore:
    type_names: tuple[str, ...]
    rel_names: tuple[str, ...]
    node_type: np.ndarray
    name_blob: np.ndarray
    name_offsets: np.ndarray
    id_blob: np.ndarray
    id_offsets: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    rel: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.indices.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in (
            "node_type", "name_blob", "name_offsets", "id_blob", "id_offsets", "indptr",
            "indices", "rel"))

    def name(self, node: int) -> str:
        return bytes(self.name_blob[self.name_offsets[node]:self.name_offsets[node + 1]]).decode()

    def node_id(self, node: int) -> str:
        return bytes(self.id_blob[self.id_offsets[node]:self.id_offsets[node + 1]]).decode()

    def type_of(self, node: int) -> str:
        return self.type_names[int(self.node_type[node])]

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @cached_property
    def node_by_name(self) -> dict[tuple[str, str], int]:
        """(type, name) -> node; the first node wins where a source repeats a name."""
        table: dict[tuple[str, str], int] = {}
        for node in range(self.num_nodes):
            table.setdefault((self.type_of(node), self.name(node)), node)
        return table

    def type_id(self, name: str) -> int:
        return self.type_names.index(name)

    def rel_id(self, name: str) -> int:
        return self.rel_names.index(name)

    def neighbours(self, node: int, relation: int | None = None,
                   node_type: int | None = None) -> np.ndarray:
        """Out-neighbours of `node`, optionally only along `relation` and of `node_type`."""
        lo, hi = int(self.indptr[node]), int(self.indptr[node + 1])
        if relation is not None:
            rels = self.rel[lo:hi]
            lo, hi = lo + int(np.searchsorted(rels, relation, "left")), lo + int(
                np.searchsorted(rels, relation, "right"))
            if node_type is not None:
                types = self.node_type[self.indices[lo:hi]]
                lo, hi = lo + int(np.searchsorted(types, node_type, "left")), lo + int(
                    np.searchsorted(types, node_type, "right"))
                return self.indices[lo:hi]
        found = self.indices[lo:hi]
        if node_type is not None:
            found = found[self.node_type[found] == node_type]
        return found

    def type_counts(self) -> dict[str, int]:
        counts = np.bincount(self.node_type, minlength=len(self.type_names))
        return {t: int(c) for t, c in zip(self.type_names, counts)}

    def relation_counts(self) -> dict[str, int]:
        counts = np.bincount(self.rel, minlength=len(self.rel_names))
        return {r: int(c) for r, c in zip(self.rel_names, counts)}


@dataclass
class EdgeList:
    """What a loader produces: a node table and directed typed edges between node numbers."""

    type_names: list[str]
    rel_names: list[str]
    node_type: np.ndarray  # int, per node
    names: list[str]
    ids: list[str]
    src: np.ndarray  # int, per edge
    dst: np.ndarray
    rel: np.ndarray


def build_store(edges: EdgeList) -> GraphStore:
    """Sort edges into CSR by (source, relation, neighbour type, neighbour); drop exact repeats."""
    n = len(edges.names)
    node_type = np.asarray(edges.node_type).astype(small_int_dtype(len(edges.type_names)))
    src = np.asarray(edges.src, dtype=np.int64)
    dst = np.asarray(edges.dst, dtype=np.int32)
    rel = np.asarray(edges.rel).astype(small_int_dtype(len(edges.rel_names)))
    order = np.lexsort((dst, node_type[dst], rel, src))
    src, dst, rel = src[order], dst[order], rel[order]
    if len(src):
        keep = np.ones(len(src), dtype=bool)
        keep[1:] = (src[1:] != src[:-1]) | (rel[1:] != rel[:-1]) | (dst[1:] != dst[:-1])
        src, dst, rel = src[keep], dst[keep], rel[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    name_blob, name_offsets = pack_strings(edges.names)
    id_blob, id_offsets = pack_strings(edges.ids)
    return GraphStore(
        type_names=tuple(edges.type_names), rel_names=tuple(edges.rel_names),
        node_type=node_type, name_blob=name_blob, name_offsets=name_offsets, id_blob=id_blob,
        id_offsets=id_offsets, indptr=indptr, indices=np.ascontiguousarray(dst),
        rel=np.ascontiguousarray(rel))


_ARRAYS = ("node_type", "name_blob", "name_offsets", "id_blob", "id_offsets", "indptr", "indices",
           "rel")


def save_store(store: GraphStore, path: str | Path) -> None:
    """Write the store as one uncompressed `.npz` (atomically), so loading is a plain read."""
    with atomic_output(path) as temp, open(temp, "wb") as handle:
        np.savez(handle, format_version=np.array(FORMAT_VERSION),
                 type_names=np.array(_SEP.join(store.type_names)),
                 rel_names=np.array(_SEP.join(store.rel_names)),
                 **{name: getattr(store, name) for name in _ARRAYS})


def _split(vocab: np.ndarray) -> tuple[str, ...]:
    text = str(vocab)
    return tuple(text.split(_SEP)) if text else ()


def load_store(path: str | Path) -> GraphStore:
    """Read a store written by `save_store`; a missing or foreign file is a JobError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise JobError(f"{path}: graph store not found (run the graph_load job first)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # torn or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError(f"{path}: not a graph store .npz ({reason}); re-run its graph_load job") from None
    missing = [k for k in ("format_version", "type_names", "rel_names", *_ARRAYS) if k not in arrays]
    if missing:
        raise JobError(f"{path}: not a graph store: array '{missing[0]}' is missing")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise JobError(f"{path}: graph store format {int(arrays['format_version'])} "
                       f"is not {FORMAT_VERSION}; rebuild it with the graph_load job")
    return GraphStore(type_names=_split(arrays["type_names"]), rel_names=_split(arrays["rel_names"]),
                      **{name: arrays[name] for name in _ARRAYS})


def to_networkx(store: GraphStore) -> networkx.MultiDiGraph:
    """A MultiDiGraph (node attrs `name`, `type`, `id`; edge attr `relation`) for small graphs."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    graph.add_nodes_from((v, {"name": store.name(v), "type": store.type_of(v), "id": store.node_id(v)})
                         for v in range(store.num_nodes))
    src = np.repeat(np.arange(store.num_nodes), np.diff(store.indptr))
    graph.add_edges_from((int(s), int(d), {"relation": store.rel_names[r]})
                         for s, d, r in zip(src, store.indices, store.rel))
    return graph
