"""Metapath-constrained multi-hop walks over a `GraphStore`, masked into question seeds.

A walk starts at a node of `start_type` and takes hop i along relation `hop_rel[i]` to a node of
type `hop_type[i]` (-1 = any). The declared pattern is extended to `hops_max` hops: a closed
pattern (it ends on its start type, or a type is open) repeats; an open one such as
`disease -> phenotype` walks back along itself (disease -> phenotype -> disease -> phenotype ...):
a hop back follows the relation's reverse, `<relation>:rev`, where the graph files one (Hetionet,
triples; PrimeKG ships both directions under one name). Weighting `inverse_degree` draws start nodes and
neighbours with probability proportional to degree^-alpha, favouring long-tail entities.

The walk itself is a numba kernel (`walk_kernels.py`); this module is the numpy glue: pattern
resolution, dedupe, masking and distractor choice.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.graph.store import GraphStore
from fleming_dsl.vocabulary import REVERSED


@dataclass(frozen=True)
class WalkSpec:
    start_type: str | None
    relations: tuple[str | None, ...]
    node_types: tuple[str | None, ...]
    hops_min: int
    hops_max: int
    weight: str = "inverse_degree"  # or "uniform"
    alpha: float = 0.75


@dataclass(frozen=True)
class Metapath:
    """The pattern resolved to vocabulary ids, one entry per hop up to hops_max (-1 = any)."""

    start_type: int
    hop_rel: np.ndarray
    hop_type: np.ndarray


def _lookup(kind: str, field: str, name: str | None, vocab: tuple[str, ...], where: str) -> int:
    if name is None:
        return -1
    if name in vocab:
        return vocab.index(name)
    close = difflib.get_close_matches(name, vocab, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(vocab)}"
    raise JobError(f"{where}: field {field!r}: {kind} {name!r} is not in the graph{hint}")


def hop_positions(pattern_len: int, hops: int, closed: bool) -> list[tuple[int, int]]:
    """For each hop, (pattern step used, pattern position reached); positions 0..pattern_len."""
    steps = []
    for h in range(hops):
        if closed:
            steps.append((h % pattern_len, h % pattern_len + 1))
            continue
        period = 2 * pattern_len
        here, there = h % period, (h + 1) % period
        here = here if here <= pattern_len else period - here
        there = there if there <= pattern_len else period - there
        steps.append((max(here, there) - 1, there))
    return steps


def shortest_period(rels: list[int], types: list[int]) -> tuple[list[int], list[int]]:
    """The pattern's smallest repeating unit: a pattern already repeated out to hops_max, like
    (r, r) to (t, t), is the one-step pattern (r,) to (t,), which may then walk back along itself."""
    k = len(rels)
    for p in range(1, k):
        if k % p == 0 and all(rels[i] == rels[i % p] and types[i] == types[i % p] for i in range(k)):
            return rels[:p], types[:p]
    return rels, types


def resolve_metapath(store: GraphStore, spec: WalkSpec, where: str) -> Metapath:
    """Names -> ids, pattern extended to hops_max hops; unknown names are located JobErrors."""
    if len(spec.relations) != len(spec.node_types):
        raise JobError(f"{where}: fields 'relations' and 'node_types' differ in length "
                       f"({len(spec.relations)} and {len(spec.node_types)})")
    if not 1 <= spec.hops_min <= spec.hops_max:
        raise JobError(f"{where}: field 'hops_min': need 1 <= hops_min <= hops_max, "
                       f"got {spec.hops_min}..{spec.hops_max}")
    start = _lookup("node type", "start_type", spec.start_type, store.type_names, where)
    rels = [_lookup("relation", "relations", r, store.rel_names, where) for r in spec.relations]
    types = [_lookup("node type", "node_types", t, store.type_names, where) for t in spec.node_types]
    if not rels:  # no pattern: any relation to any node
        rels, types = [-1], [-1]
    rels, types = shortest_period(rels, types)
    closed = start < 0 or types[-1] < 0 or types[-1] == start
    position_type = [start, *types]
    hop_rel, hop_type = [], []
    here = 0
    for step, reached in hop_positions(len(rels), spec.hops_max, closed):
        hop_rel.append(_reverse(store, rels[step]) if reached < here else rels[step])
        hop_type.append(position_type[reached])
        here = reached
    return Metapath(start, np.array(hop_rel, np.int64), np.array(hop_type, np.int64))


def _reverse(store: GraphStore, rel: int) -> int:
    """The relation a hop walked back along `rel` follows: its stored reverse, or `rel` itself
    where the graph files both directions under one name."""
    if rel < 0:
        return rel
    name = store.rel_names[rel]
    back = name.removesuffix(REVERSED) if name.endswith(REVERSED) else name + REVERSED
    return store.rel_names.index(back) if back in store.rel_names else rel


def node_weights(store: GraphStore, weight: str, alpha: float) -> np.ndarray:
    """Per-node draw weight: degree^-alpha for inverse_degree, 1 for uniform (0 if isolated)."""
    degree = store.degree().astype(np.float64)
    if weight == "uniform":
        return (degree > 0).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(degree > 0, degree ** -alpha, 0.0)


@dataclass
class WalkStats:
    attempted: int = 0
    stuck: int = 0
    duplicates: int = 0
    kept: int = 0  # distinct walks
    hops: int = 0
    short_of_distractors: int = 0


class Walker:
    """Holds the per-run arrays (weights, start table) so batches of walks are cheap."""

    def __init__(self, store: GraphStore, spec: WalkSpec, where: str = "sample") -> None:
        from fleming_dsl.runtime.graph import walk_kernels

        self.store, self.spec, self.kernels = store, spec, walk_kernels
        self.metapath = resolve_metapath(store, spec, where)
        weight = node_weights(store, spec.weight, spec.alpha)
        starts = np.flatnonzero((store.node_type == self.metapath.start_type)
                                if self.metapath.start_type >= 0 else np.ones(store.num_nodes, bool))
        starts = starts[weight[starts] > 0].astype(np.int64)
        # Only nodes that can take the first hop start a walk: a start without it is no walk.
        mp = self.metapath
        starts = starts[walk_kernels.first_hop_ok(store.indptr, store.indices, store.rel,
                                                  store.node_type, starts, mp.hop_rel[0],
                                                  mp.hop_type[0])]
        if not len(starts):
            raise JobError(f"{where}: field 'start_type': no node of type {spec.start_type!r} "
                           f"has an edge matching the first step of the path")
        self.starts = starts
        self.weight = weight
        # the start draw is one alias block over the start nodes, weighted like any end
        self.start_rows = walk_kernels.build_alias_rows(
            np.array([0, len(starts)], np.int64), starts.astype(np.int32),
            np.zeros(len(starts), np.int32), weight)
        self._hop_tables()

    def _hop_tables(self) -> None:
        """One compact alias table per distinct (relation, type) step of the path, all in one
        array of rows (an open relation's table holds v's edges of every relation)."""
        s, mp, kernels = self.store, self.metapath, self.kernels
        steps = sorted({(int(r), int(t)) for r, t in zip(mp.hop_rel, mp.hop_type)})
        ptrs, rows, offset = [], [], 0
        for r, t in steps:
            ptr, ends, rels = kernels.step_block(s.indptr, s.indices, s.rel, s.node_type, r, t)
            rows.append(kernels.build_alias_rows(ptr, ends, rels, self.weight))
            ptrs.append(ptr + offset)
            offset += len(ends)
        self.step_ptr = np.stack(ptrs)
        self.step_rows = np.concatenate(rows)
        self.hop_slot = np.array([steps.index((int(r), int(t)))
                                  for r, t in zip(mp.hop_rel, mp.hop_type)], np.int64)

    def batch(self, n_walks: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.kernels.walk_batch(
            self.weight, self.step_ptr, self.step_rows, self.start_rows, self.hop_slot,
            self.spec.hops_min, self.spec.hops_max, n_walks, self.kernels.seed_state(seed))

    def unique_walks(self, seed: int, stats: WalkStats, budget: int,
                     batch_size: int = 4096) -> Iterator[tuple[list[int], list[int]]]:
        """Distinct (nodes, relations) walks in a seed-determined order until `budget` walks
        have been attempted; the caller stops early by closing the generator."""
        seen: set[tuple[int, ...]] = set()
        batch_no = 0
        while stats.attempted < budget:
            size = min(batch_size, budget - stats.attempted)
            paths, rels, hops = self.batch(size, seed * 1_000_003 + batch_no)
            batch_no += 1
            for w in range(size):
                stats.attempted += 1
                n = int(hops[w])
                if n < 0:
                    stats.stuck += 1
                    continue
                key = (*paths[w, :n + 1].tolist(), -1, *rels[w, :n].tolist())
                if key in seen:
                    stats.duplicates += 1
                    continue
                seen.add(key)
                stats.kept += 1
                stats.hops += n
                yield paths[w, :n + 1].tolist(), rels[w, :n].tolist()


def mask_position(mask: str | int, path_len: int) -> int:
    if mask == "anchor":
        return 0
    if mask == "target":
        return path_len - 1
    return int(mask)


def answer_alternatives(store: GraphStore, path: list[int], rels: list[int], m: int) -> np.ndarray:
    """Nodes that would answer the masked slot as well: joined to the masked node's path
    neighbours by the same relation and of the same type (both directions are edges)."""
    t = int(store.node_type[path[m]])
    found = [np.array(path, dtype=np.int32)]
    if m > 0:
        found.append(store.neighbours(path[m - 1], rels[m - 1], t))
    if m + 1 < len(path):
        found.append(store.neighbours(path[m + 1], rels[m], t))
    return np.unique(np.concatenate(found))


def clue_edges(store: GraphStore, path: list[int], rels: list[int], m: int) -> list[tuple[int, int, int]]:
    """(path edge, relation from the masked node, type of the node it reaches) of each path edge
    touching the masked node: where more clues about it are found."""
    found = []
    if m > 0:
        found.append((m - 1, _reverse(store, rels[m - 1]), int(store.node_type[path[m - 1]])))
    if m + 1 < len(path):
        found.append((m, rels[m], int(store.node_type[path[m + 1]])))
    return found


def extra_clues(store: GraphStore, path: list[int], rels: list[int], m: int, want: int,
                rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to `want` (node, path edge): more neighbours of the masked node, each joined to it as
    a path edge's other end is (same relation, same type), off the path, in seeded order. They
    make a question of several clues (a vignette of 3-4 findings) from a 2-hop walk."""
    on_path = set(path)
    pool: dict[int, int] = {}
    for edge, rel, node_type in clue_edges(store, path, rels, m):
        for v in store.neighbours(path[m], rel if rel >= 0 else None, node_type).tolist():
            if v not in on_path:
                pool.setdefault(int(v), edge)
    chosen = rng.permutation(np.array(sorted(pool), dtype=np.int64))[:want].tolist()
    return [(int(v), pool[int(v)]) for v in chosen]


def near_candidates(store: GraphStore, path: list[int], m: int, rng: np.random.Generator,
                    fanout: int = 32) -> np.ndarray:
    """Same-type nodes within two hops of the path (hubs sampled down to `fanout` pivots), in
    random order. Two hops from the answer are its siblings (diseases sharing other phenotypes
    with it): plausible but wrong. Its direct same-type neighbours (parent or subtype) are left
    out as too close to be fairly wrong."""
    t = store.node_type[path[m]]
    one = np.unique(np.concatenate([store.neighbours(v) for v in path]))
    pivots = one if len(one) <= fanout else rng.choice(one, fanout, replace=False)
    two = np.concatenate([store.neighbours(int(v)) for v in pivots]) if len(pivots) else one[:0]
    near = np.union1d(one, two)
    near = near[store.node_type[near] == t]
    return rng.permutation(np.setdiff1d(near, store.neighbours(path[m])))


def choose_distractors(store: GraphStore, path: list[int], rels: list[int], m: int, k: int,
                       near: bool, rng: np.random.Generator, type_nodes: np.ndarray,
                       extra: tuple[int, ...] = ()) -> list[int]:
    """k distinct same-type wrong answers: near neighbours first, then random nodes of the type.
    Never the answer, never a node that also fits the masked slot (or shares an extra clue),
    never a repeated name."""
    excluded = set(answer_alternatives(store, path, rels, m).tolist())
    t = int(store.node_type[path[m]])
    for v in extra:
        excluded.update(store.neighbours(v, None, t).tolist())
    names = {store.name(path[m])}
    chosen: list[int] = []

    def offer(candidates) -> None:
        for c in candidates:
            c = int(c)
            if len(chosen) == k:
                return
            if c in excluded:
                continue
            excluded.add(c)
            name = store.name(c)
            if name not in names:
                names.add(name)
                chosen.append(c)

    if near:
        offer(near_candidates(store, path, m, rng))
    for start in range(0, len(type_nodes), 256):  # a few random draws usually suffice
        if len(chosen) == k:
            break
        offer(rng.choice(type_nodes, min(256, len(type_nodes)), replace=False))
        if start == 0 and len(type_nodes) <= 256:
            break
    if len(chosen) < k:
        offer(rng.permutation(type_nodes))
    return chosen


def sample_rows(store: GraphStore, spec: WalkSpec, *, count: int, seed: int, mask: str | int,
                distractors: int, near: bool, stats: WalkStats, id_prefix: str = "path-",
                where: str = "sample", progress: bool = False, clues: int | None = None) -> list[dict]:
    """Walks -> masked rows {id, path, relations, mask_index, answer, answer_type, distractors,
    seed}, and with `clues` an `extra` list of {node, type, edge} (`extra_clues`) that brings the
    masked entity's clues up to that many where it has them. A walk whose masked type has too
    few other entities for k distractors is skipped."""
    if not isinstance(mask, str) and not 0 <= mask <= spec.hops_min:
        raise JobError(f"{where}: field 'mask': index {mask} is outside the shortest path "
                       f"(0..{spec.hops_min})")
    walker = Walker(store, spec, where)
    rng = np.random.default_rng(seed)
    by_type = {t: np.flatnonzero(store.node_type == t) for t in range(len(store.type_names))}
    rows = []
    budget = max(50 * count, 10_000)
    walks = walker.unique_walks(seed, stats, budget, batch_size=min(max(2 * count, 1024), 1 << 16))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc="sample", unit="path")
    for path, rels in walks if count > 0 else ():
        m = mask_position(mask, len(path))
        answer_type = int(store.node_type[path[m]])
        want = 0 if clues is None else clues - len(clue_edges(store, path, rels, m))
        extra = extra_clues(store, path, rels, m, want, rng) if want > 0 else []
        wrong = choose_distractors(store, path, rels, m, distractors, near, rng, by_type[answer_type],
                                   tuple(v for v, _ in extra))
        if len(wrong) < distractors:
            stats.short_of_distractors += 1
            continue
        rows.append({
            "id": f"{id_prefix}{len(rows):06d}",
            "path": [{"node": store.name(v), "type": store.type_of(v)} for v in path],
            "relations": [store.rel_names[r] for r in rels],
            "mask_index": m,
            "answer": store.name(path[m]),
            "answer_type": store.type_names[answer_type],
            "distractors": [store.name(v) for v in wrong],
            "seed": seed,
        })
        if extra:
            rows[-1]["extra"] = [{"node": store.name(v), "type": store.type_of(v), "edge": e}
                                 for v, e in extra]
        if bar is not None:
            bar.update(1)
        if len(rows) == count:
            break
    if bar is not None:
        bar.close()
    return rows
