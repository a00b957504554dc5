"""Readers for knowledge-graph files as published, each producing a `graphstore.EdgeList`.

- PrimeKG `kg.csv`: columns relation, display_relation, x_index, x_id, x_type, x_name, x_source,
  y_index, y_id, y_type, y_name, y_source. Both directions are already rows; nodes are keyed by
  `x_index`/`y_index`.
- Hetionet: a nodes TSV with header `id name kind`, and an edges SIF/TSV with header
  `source metaedge target` (`.gz` is fine). Each row becomes two directed edges: the written one
  under the metaedge's name, the reverse under `<metaedge>:rev` (CtD runs Compound -> Disease;
  Disease -> Compound is `CtD:rev`), except for an undirected metaedge between nodes of one kind
  (`GiG`), which reads the same both ways (vocabulary.py `stored_reverse`).
- Typed triples: tab-separated `head  head_type  relation  tail  tail_type`, one fact per line,
  an optional header line with exactly those names, no quoting. A node is its (type, name) pair;
  each fact is an edge head -> tail under its relation and an edge tail -> head under
  `<relation>:rev`.

Files are streamed with pyarrow's CSV reader (integer columns as integers, names and types
dictionary-encoded) so a PrimeKG-scale file (8M rows) never sits in memory as Python strings; any
input the fast path rejects is read again with pandas, in chunks, for an error naming file, line
and column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fleming_dsl.errors import FlemingError, JobError
from fleming_dsl.runtime.graph.store import EdgeList
from fleming_dsl.vocabulary import GRAPH_COLUMNS, stored_reverse

(PRIMEKG_COLUMNS,) = GRAPH_COLUMNS["primekg"]
HETIONET_NODE_COLUMNS, HETIONET_EDGE_COLUMNS = GRAPH_COLUMNS["hetionet"]
(TRIPLE_COLUMNS,) = GRAPH_COLUMNS["triples"]
CHUNK_ROWS = 1_000_000


def _header(path: str, sep: str, quoting: int):
    import pandas as pd

    try:
        return list(pd.read_csv(path, sep=sep, nrows=0, quoting=quoting).columns)
    except FileNotFoundError:
        raise JobError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise JobError(f"{path}:1: file is empty (expected a header line)") from None


def _check_columns(path: str, found: list[str], expected: tuple[str, ...]) -> None:
    for column in found:
        if column not in expected:
            raise JobError(f"{path}:1: unknown column {column!r} (expected: {', '.join(expected)})")
    for column in expected:
        if column not in found:
            raise JobError(f"{path}:1: column {column!r} is missing")


_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _chunks(path: str, sep: str, columns: tuple[str, ...], *, header: bool = True,
            quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, "object"]]:
    """(file line number of the chunk's first row, DataFrame of str) per chunk of rows."""
    import pandas as pd

    reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                         chunksize=CHUNK_ROWS, skip_blank_lines=False, quoting=quoting,
                         header=0 if header else None, names=None if header else list(columns))
    line = 2 if header else 1
    with _progress(path) as bar:
        try:
            for frame in reader:
                yield line, frame.fillna("")
                line += len(frame)
                bar.update(len(frame))
        except pd.errors.ParserError as err:
            match = _PARSER_LINE.search(str(err))
            if match:
                want, at, saw = match.groups()
                raise JobError(f"{path}:{at}: expected {want} fields, found {saw}") from None
            raise JobError(f"{path}: cannot parse ({str(err).splitlines()[0]})") from None


def _require(path: str, first_line: int, frame, columns: tuple[str, ...]) -> None:
    """Every listed column of every row is non-empty."""
    for column in columns:
        empty = np.flatnonzero(frame[column].to_numpy() == "")
        if len(empty):
            raise JobError(f"{path}:{first_line + int(empty[0])}: column {column!r} is empty")


def _as_int(path: str, first_line: int, frame, column: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
    bad = np.flatnonzero(np.isnan(values) | (values < 0) | (values != np.floor(values)))
    if len(bad):
        row = int(bad[0])
        raise JobError(f"{path}:{first_line + row}: column {column!r} must be a non-negative "
                       f"integer, got {frame[column].iloc[row]!r}")
    return values.astype(np.int64)


class _Vocab:
    """Strings numbered in first-seen order; `sorted_remap` renumbers them alphabetically."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, values) -> np.ndarray:
        for value in values.unique():
            self.codes.setdefault(value, len(self.codes))
        return values.map(self.codes).to_numpy(dtype=np.int64)

    def sorted_remap(self) -> tuple[list[str], np.ndarray]:
        names = sorted(self.codes)
        remap = np.empty(len(names), dtype=np.int64)
        for new, name in enumerate(names):
            remap[self.codes[name]] = new
        return names, remap


class _Fallback(FlemingError):
    """The fast reader met something it does not explain well: re-read with pandas for the
    located error message (bad input only, so its cost does not matter)."""


def _batches(reader):
    """The record batches of a pyarrow CSV stream; a malformed batch sends the caller to the
    slower pandas reader, which names the bad line."""
    import pyarrow as pa

    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid:
            raise _Fallback from None


def read_primekg(path: str) -> EdgeList:
    """PrimeKG `kg.csv` as published (129,375 nodes, 8.1M rows, both directions present).

    Streamed with pyarrow's CSV reader: the index columns are parsed as integers, relation and
    type columns dictionary-encoded, display_relation skipped, and node names and ids taken from
    each node's first row, so the 1.2 GB file never sits in memory as Python strings. Any row the
    fast path rejects is re-read with pandas, which names its line and column."""
    _check_columns(path, _header(path, ",", csv.QUOTE_MINIMAL), PRIMEKG_COLUMNS)
    try:
        return _read_primekg_arrow(path)
    except _Fallback:
        return _read_primekg_pandas(path)


_NODE_FIELDS = ("type", "name", "source", "id")


def _read_primekg_arrow(path: str) -> EdgeList:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = pa.dictionary(pa.int32(), pa.string())
    types = {"x_index": pa.int64(), "y_index": pa.int64(), "relation": text}
    for side in ("x", "y"):
        types.update({f"{side}_type": text, f"{side}_source": text, f"{side}_name": pa.string(),
                      f"{side}_id": pa.string()})
    try:
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=False,
                quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        raise _Fallback from None
    rels: dict[str, int] = {}
    srcs, dsts, rel_codes = [], [], []
    known = np.zeros(0, np.int64)  # node keys seen so far, sorted
    node_keys, node_cols = [], {f: [] for f in _NODE_FIELDS}
    with _progress(path) as bar:
        for batch in _batches(reader):
            x, y = _indices(batch, "x_index"), _indices(batch, "y_index")
            for column in ("relation", "x_type", "x_name", "y_type", "y_name"):
                if _has_empty(batch.column(column)):
                    raise _Fallback
            srcs.append(x)
            dsts.append(y)
            rel_codes.append(_dictionary_codes(batch.column("relation"), rels))
            # Each node's first row: x before y within a row, rows in file order.
            both = np.stack([x, y], axis=1).ravel()
            keys, first = np.unique(both, return_index=True)
            new = ~np.isin(keys, known, assume_unique=True)
            keys, first = keys[new], first[new]
            known = np.union1d(known, keys)
            rows, side = first // 2, first % 2
            node_keys.append(keys)
            for field in _NODE_FIELDS:
                xs = batch.column(f"x_{field}").take(pa.array(rows)).to_pylist()
                ys = batch.column(f"y_{field}").take(pa.array(rows)).to_pylist()
                node_cols[field].extend(yv if s else xv for xv, yv, s in zip(xs, ys, side))
            bar.update(batch.num_rows)
    if not srcs:
        raise JobError(f"{path}: no edges (the file has a header but no rows)")
    keys = np.concatenate(node_keys)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    pick = lambda field: [node_cols[field][i] for i in order]  # noqa: E731
    node_types = pick("type")
    type_names = sorted(set(node_types))
    rel_names = sorted(rels)
    remap = np.empty(len(rels), dtype=np.int64)
    for code, name in enumerate(rels):
        remap[code] = rel_names.index(name)
    return EdgeList(
        type_names=type_names, rel_names=rel_names,
        node_type=np.searchsorted(np.array(type_names, dtype=object),
                                  np.array(node_types, dtype=object)),
        names=pick("name"), ids=[f"{s}:{i}" for s, i in zip(pick("source"), pick("id"))],
        src=np.searchsorted(keys, np.concatenate(srcs)),
        dst=np.searchsorted(keys, np.concatenate(dsts)),
        rel=remap[np.concatenate(rel_codes)])


def _progress(path: str):
    """A rows bar for PrimeKG-sized files; a silent one (same calls, no output) for the rest."""
    from tqdm import tqdm

    return tqdm(desc=f"read {Path(path).name}", unit=" rows", unit_scale=True,
                disable=Path(path).stat().st_size <= 50 * 2**20)


def _indices(batch, column: str) -> np.ndarray:
    values = batch.column(column)
    if values.null_count:
        raise _Fallback
    array = values.to_numpy()
    if len(array) and array.min() < 0:
        raise _Fallback
    return array.astype(np.int64, copy=False)


def _has_empty(values) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(values.type):
        words = values.dictionary.to_pylist()
        return "" in words and bool(pc.any(pc.equal(values.indices, words.index(""))).as_py())
    return bool(pc.any(pc.equal(values, "")).as_py())


def _dictionary_codes(values, vocab: dict[str, int]) -> np.ndarray:
    """A batch's dictionary codes renumbered into `vocab` (names numbered in first-seen order)."""
    local = np.array([vocab.setdefault(name, len(vocab)) for name in
                      values.dictionary.to_pylist()], dtype=np.int64)
    return local[values.indices.to_numpy(zero_copy_only=False)]


def _read_primekg_pandas(path: str) -> EdgeList:
    import pandas as pd

    rels = _Vocab()
    srcs, dsts, rel_codes, node_frames = [], [], [], []
    for first, frame in _chunks(path, ",", PRIMEKG_COLUMNS):
        _require(path, first, frame, ("relation", "x_index", "x_type", "x_name", "y_index",
                                      "y_type", "y_name"))
        x = _as_int(path, first, frame, "x_index")
        y = _as_int(path, first, frame, "y_index")
        srcs.append(x)
        dsts.append(y)
        rel_codes.append(rels.encode(frame["relation"]))
        for side, index in (("x", x), ("y", y)):
            first_seen = ~pd.Series(index).duplicated().to_numpy()
            node_frames.append(pd.DataFrame({
                "index": index[first_seen],
                **{c: frame[f"{side}_{c}"].to_numpy()[first_seen]
                   for c in ("type", "name", "source", "id")}}))
    if not srcs:
        raise JobError(f"{path}: no edges (the file has a header but no rows)")
    nodes = pd.concat(node_frames).drop_duplicates("index").sort_values("index")
    nodes["id"] = nodes["source"] + ":" + nodes["id"]
    keys = nodes["index"].to_numpy()
    type_names = sorted(nodes["type"].unique())
    node_type = np.searchsorted(np.array(type_names, dtype=object), nodes["type"].to_numpy())
    rel_names, remap = rels.sorted_remap()
    return EdgeList(
        type_names=type_names, rel_names=rel_names, node_type=node_type,
        names=nodes["name"].tolist(), ids=nodes["id"].tolist(),
        src=np.searchsorted(keys, np.concatenate(srcs)),
        dst=np.searchsorted(keys, np.concatenate(dsts)),
        rel=remap[np.concatenate(rel_codes)])


def _both_directions(src: np.ndarray, dst: np.ndarray, rel: np.ndarray, reverse_rel: np.ndarray):
    return (np.concatenate([src, dst]), np.concatenate([dst, src]),
            np.concatenate([rel, reverse_rel]))


def read_hetionet(nodes_path: str, edges_path: str) -> EdgeList:
    """Hetionet nodes TSV (`id name kind`) and edges SIF (`source metaedge target`)."""
    import pandas as pd

    tsv = csv.QUOTE_NONE
    _check_columns(nodes_path, _header(nodes_path, "\t", tsv), HETIONET_NODE_COLUMNS)
    frames = []
    for first, frame in _chunks(nodes_path, "\t", HETIONET_NODE_COLUMNS, quoting=tsv):
        _require(nodes_path, first, frame, HETIONET_NODE_COLUMNS)
        frames.append(frame.assign(line=np.arange(first, first + len(frame))))
    nodes = pd.concat(frames) if frames else pd.DataFrame(columns=[*HETIONET_NODE_COLUMNS, "line"])
    repeated = nodes["id"].duplicated().to_numpy()
    if repeated.any():
        row = nodes.iloc[int(np.flatnonzero(repeated)[0])]
        raise JobError(f"{nodes_path}:{row['line']}: node id {row['id']!r} appears twice")
    number = pd.Series(np.arange(len(nodes)), index=nodes["id"].to_numpy())
    kind = pd.factorize(nodes["kind"])[0]  # per node: whether a row joins nodes of one kind

    _check_columns(edges_path, _header(edges_path, "\t", tsv), HETIONET_EDGE_COLUMNS)
    try:
        srcs, dsts, rel_codes, rels = _hetionet_edges_arrow(edges_path, nodes["id"].tolist(), kind)
    except _Fallback:
        srcs, dsts, rel_codes, rels = _hetionet_edges_pandas(edges_path, nodes_path, number, kind)
    type_names = sorted(nodes["kind"].unique())
    rel_names, remap = rels.sorted_remap()
    return EdgeList(
        type_names=type_names, rel_names=rel_names,
        node_type=np.searchsorted(np.array(type_names, dtype=object), nodes["kind"].to_numpy()),
        names=nodes["name"].tolist(), ids=nodes["id"].tolist(),
        src=np.concatenate(srcs) if srcs else np.zeros(0, np.int64),
        dst=np.concatenate(dsts) if dsts else np.zeros(0, np.int64),
        rel=remap[np.concatenate(rel_codes)] if rel_codes else np.zeros(0, np.int64))


def _hetionet_reverse(names, rels: _Vocab, same: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Codes of each row's reverse relation: `names[local]` as `stored_reverse` files it (only
    the names some row uses are numbered, so the store lists no relation without edges)."""
    out = np.empty(len(local), dtype=np.int64)
    for alike in (False, True):
        rows = same == alike
        for i in np.unique(local[rows]):
            name = stored_reverse("hetionet", names[i], alike)
            out[rows & (local == i)] = rels.codes.setdefault(name, len(rels.codes))
    return out


def _hetionet_edges_arrow(edges_path: str, node_ids: list[str], kind: np.ndarray):
    """The edges SIF streamed with pyarrow: node ids looked up with `index_in`, metaedges
    dictionary-encoded; anything it rejects goes to the pandas reader for a located error."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    text = pa.dictionary(pa.int32(), pa.string())
    try:
        reader = pacsv.open_csv(
            edges_path, read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"source": pa.string(), "metaedge": text, "target": pa.string()},
                include_columns=list(HETIONET_EDGE_COLUMNS), strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        raise _Fallback from None
    ids = pa.array(node_ids, type=pa.string())
    rels = _Vocab()
    srcs, dsts, rel_codes = [], [], []
    for batch in _batches(reader):
        if any(_has_empty(batch.column(c)) for c in HETIONET_EDGE_COLUMNS):
            raise _Fallback
        ends = []
        for column in ("source", "target"):
            found = pc.index_in(batch.column(column), value_set=ids)
            if found.null_count:
                raise _Fallback
            ends.append(found.to_numpy().astype(np.int64))
        metaedges = batch.column("metaedge")
        names = metaedges.dictionary.to_pylist()
        forward = np.array([rels.codes.setdefault(n, len(rels.codes)) for n in names],
                           dtype=np.int64)
        local = metaedges.indices.to_numpy(zero_copy_only=False)
        backward = _hetionet_reverse(names, rels, kind[ends[0]] == kind[ends[1]], local)
        src, dst, rel = _both_directions(ends[0], ends[1], forward[local], backward)
        srcs.append(src)
        dsts.append(dst)
        rel_codes.append(rel)
    return srcs, dsts, rel_codes, rels


def _hetionet_edges_pandas(edges_path: str, nodes_path: str, number, kind: np.ndarray):
    tsv = csv.QUOTE_NONE
    rels = _Vocab()
    srcs, dsts, rel_codes = [], [], []
    for first, frame in _chunks(edges_path, "\t", HETIONET_EDGE_COLUMNS, quoting=tsv):
        _require(edges_path, first, frame, HETIONET_EDGE_COLUMNS)
        ends = []
        for column in ("source", "target"):
            found = frame[column].map(number)
            unknown = np.flatnonzero(found.isna().to_numpy())
            if len(unknown):
                row = int(unknown[0])
                raise JobError(f"{edges_path}:{first + row}: column {column!r}: node "
                               f"{frame[column].iloc[row]!r} is not in {nodes_path}")
            ends.append(found.to_numpy(dtype=np.int64))
        names, local = np.unique(frame["metaedge"].to_numpy(dtype=object), return_inverse=True)
        forward = rels.encode(frame["metaedge"])
        backward = _hetionet_reverse(list(names), rels, kind[ends[0]] == kind[ends[1]], local)
        src, dst, rel = _both_directions(ends[0], ends[1], forward, backward)
        srcs.append(src)
        dsts.append(dst)
        rel_codes.append(rel)
    return srcs, dsts, rel_codes, rels


def _triple_header(path: str) -> bool:
    """True when the first line is the optional header; a wrong column count is an error."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().rstrip("\n").rstrip("\r")
    except FileNotFoundError:
        raise JobError(f"{path}: file not found") from None
    fields = first.split("\t")
    if fields[0] == "head":
        _check_columns(path, fields, TRIPLE_COLUMNS)
        return True
    if first and len(fields) != len(TRIPLE_COLUMNS):
        raise JobError(f"{path}:1: expected {len(TRIPLE_COLUMNS)} tab-separated fields "
                       f"(head, head_type, relation, tail, tail_type), found {len(fields)}")
    return False


def read_triples(paths: list[str] | tuple[str, ...]) -> EdgeList:
    """Typed triples TSV files: `head  head_type  relation  tail  tail_type` per line.

    Streamed with pyarrow's CSV reader (relation and type columns dictionary-encoded, node keys
    kept as Arrow strings, never as Python objects); any row the fast path rejects sends the
    whole read to pandas, which names its line and column."""
    headers = [_triple_header(path) for path in paths]
    try:
        return _read_triples_arrow(paths, headers)
    except _Fallback:
        return _read_triples_pandas(paths, headers)


def _read_triples_arrow(paths, headers: list[bool]) -> EdgeList:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    text = pa.dictionary(pa.int32(), pa.string())
    types = {"head": pa.string(), "head_type": text, "relation": text, "tail": pa.string(),
             "tail_type": text}
    sides: dict[str, list] = {column: [] for column in types}
    rels: dict[str, int] = {}
    rel_codes = []
    for path, header in zip(paths, headers):
        try:
            reader = pacsv.open_csv(
                path, read_options=pacsv.ReadOptions(
                    block_size=16 << 20, column_names=None if header else list(TRIPLE_COLUMNS)),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False,
                                                 ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, include_columns=list(TRIPLE_COLUMNS),
                    strings_can_be_null=False))
        except (pa.ArrowInvalid, ValueError):
            raise _Fallback from None
        with _progress(path) as bar:
            for batch in _batches(reader):
                if any(_has_empty(batch.column(c)) for c in TRIPLE_COLUMNS):
                    raise _Fallback
                for column in types:
                    sides[column].append(batch.column(column))
                rel_codes.append(_dictionary_codes(batch.column("relation"), rels))
                bar.update(batch.num_rows)
    if not rel_codes:
        raise JobError(f"{paths[0]}: no triples")

    def joined(column: str):
        return pa.chunked_array([c.cast(pa.string()) for c in sides[column]], type=pa.string())

    # A node is its (type, name) pair, numbered in the order of "type\x1fname": Arrow sorts
    # strings by UTF-8 bytes, which is code point order, the order Python's sorted gives.
    ends_type = pa.chunked_array([*joined("head_type").chunks, *joined("tail_type").chunks])
    ends_name = pa.chunked_array([*joined("head").chunks, *joined("tail").chunks])
    keys = pc.binary_join_element_wise(ends_type, ends_name, "\x1f")
    uniques = pc.unique(keys)
    uniques = uniques.take(pc.sort_indices(uniques))
    codes = pc.index_in(keys, value_set=uniques).to_numpy().astype(np.int64)
    node_keys = [key.split("\x1f", 1) for key in uniques.to_pylist()]
    node_type_names = [kind for kind, _ in node_keys]
    names = [name for _, name in node_keys]
    type_names = sorted(set(node_type_names))
    written = list(rels)  # in code order
    rel_names = sorted({*written, *(stored_reverse("triples", n, False) for n in written)})
    forward = np.array([rel_names.index(n) for n in written], dtype=np.int64)
    backward = np.array([rel_names.index(stored_reverse("triples", n, False)) for n in written],
                        dtype=np.int64)
    code = np.concatenate(rel_codes)
    half = len(codes) // 2
    src, dst, rel = _both_directions(codes[:half], codes[half:], forward[code], backward[code])
    return EdgeList(
        type_names=type_names, rel_names=rel_names,
        node_type=np.searchsorted(np.array(type_names, dtype=object),
                                  np.array(node_type_names, dtype=object)),
        names=names, ids=names, src=src, dst=dst, rel=rel)


def _read_triples_pandas(paths, headers: list[bool]) -> EdgeList:
    import pandas as pd

    heads, tails, relations = [], [], []
    for path, header in zip(paths, headers):
        for first, frame in _chunks(path, "\t", TRIPLE_COLUMNS, header=header,
                                    quoting=csv.QUOTE_NONE):
            _require(path, first, frame, TRIPLE_COLUMNS)
            heads.append(frame[["head_type", "head"]].to_numpy())
            tails.append(frame[["tail_type", "tail"]].to_numpy())
            relations.append(frame["relation"])
    if not heads:
        raise JobError(f"{paths[0]}: no triples")
    ends = np.concatenate(heads + tails)
    keys = pd.Series(ends[:, 0]) + "\x1f" + pd.Series(ends[:, 1])
    codes, uniques = pd.factorize(keys, sort=True)
    node_type_names = [key.split("\x1f", 1)[0] for key in uniques]
    type_names = sorted(set(node_type_names))
    half = len(codes) // 2
    rels = _Vocab()
    written = pd.concat(relations, ignore_index=True)
    forward = rels.encode(written)
    backward = rels.encode(written.map(lambda n: stored_reverse("triples", n, False)))
    rel_names, remap = rels.sorted_remap()
    src, dst, rel = _both_directions(codes[:half], codes[half:], remap[forward], remap[backward])
    names = [key.split("\x1f", 1)[1] for key in uniques]
    return EdgeList(
        type_names=type_names, rel_names=rel_names,
        node_type=np.searchsorted(np.array(type_names, dtype=object),
                                  np.array(node_type_names, dtype=object)),
        names=names, ids=names, src=src, dst=dst, rel=rel)


def read_graph(format: str, paths: tuple[str, ...] | list[str]) -> EdgeList:
    """Dispatch on the declared format; the number of paths is checked here."""
    paths = [str(Path(p)) for p in paths]
    folder = next((p for p in paths if Path(p).is_dir()), None)
    if folder is not None:
        raise JobError(f"{folder}: a folder, where a graph file is expected")
    if format == "primekg":
        if len(paths) != 1:
            raise JobError(f"field 'paths': primekg takes one kg.csv, got {len(paths)} paths")
        return read_primekg(paths[0])
    if format == "hetionet":
        if len(paths) != 2:
            raise JobError(f"field 'paths': hetionet takes a nodes TSV and an edges SIF, "
                           f"got {len(paths)} paths")
        return read_hetionet(paths[0], paths[1])
    if format == "triples":
        if not paths:
            raise JobError("field 'paths': triples takes at least one TSV file")
        return read_triples(paths)
    raise JobError(f"field 'format': unknown graph format {format!r}")
