"""numba kernels of the metapath walker; imported only when a walk runs (see `sampler.py`).

Each metapath step (relation, neighbour type; either may be open) gets its own compact edge
table: rows `step_ptr[s, v]` .. `step_ptr[s, v + 1]` are v's edges along the relation to the
type, and a row is (keep threshold, end node, alias end node, relations of both): a Walker alias
table entry that names the nodes themselves, so a weighted hop is one random number and two
cache lines (v's pointer pair and one 16-byte row) whatever the hub's degree, with no detour
through `indices`, `rel` or `node_type`. Walks advance in lockstep groups, so the memory stalls
of independent walkers overlap instead of queueing one behind the other, and random numbers
come from a splitmix64 stream kept in a register, so a seed fixes every walk. Nothing is
allocated per hop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ONE = 2147483648.0  # 2**31: alias keep thresholds are fractions of this
_KEEP = np.int32(2147483647)  # keep always (the alias is the edge itself)
_LOW31 = np.uint64(0x7FFFFFFF)
_LOW16 = 0xFFFF  # row[3] = relation of the row's end | relation of its alias end << 16
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
GROUP = 32  # walkers in lockstep: enough independent loads in flight to cover memory latency
TRIES = 8  # rejection draws before an explicit scan of the acceptable ends


@njit(cache=True, inline="always")
def _next(state):
    """splitmix64: (new state, 64 random bits)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _unit(z):
    """A uniform float in [0, 1) from 64 random bits."""
    return np.float64(z >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline="always")
def _below(z, n):
    """A uniform int in [0, n) from the high 32 bits (multiply-shift; n < 2**32)."""
    return np.int64(((z >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _alias_end(rows, k, z):
    """(end, relation) drawn at alias row k: its own end or its alias, by the low 31 bits."""
    keep = np.int64(z & _LOW31) < rows[k, 0]
    if keep:
        return rows[k, 1], rows[k, 3] & _LOW16
    return rows[k, 2], rows[k, 3] >> 16


def seed_state(seed: int) -> np.uint64:
    """The splitmix64 state a seed starts from (any int: negative and big seeds wrap)."""
    return np.uint64(seed % 2**64)


@njit(cache=True)
def _lower_bound_rel(rel, lo, hi, value):
    while lo < hi:
        mid = (lo + hi) >> 1
        if rel[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _lower_bound_type(indices, node_type, lo, hi, value):
    while lo < hi:
        mid = (lo + hi) >> 1
        if node_type[indices[mid]] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def edge_range(indptr, indices, rel, node_type, v, r, t):
    """Edges of v along relation r (-1 any) to type t (-1 any, only narrowed when r is set)."""
    lo = indptr[v]
    hi = indptr[v + 1]
    if r >= 0:
        lo2 = _lower_bound_rel(rel, lo, hi, r)
        hi = _lower_bound_rel(rel, lo2, hi, r + 1)
        lo = lo2
        if t >= 0:
            lo2 = _lower_bound_type(indices, node_type, lo, hi, t)
            hi = _lower_bound_type(indices, node_type, lo2, hi, t + 1)
            lo = lo2
    return lo, hi


@njit(cache=True)
def _step_edges(indptr, indices, rel, node_type, v, r, t, ends, rels, at):
    """Count v's edges along r (-1 any) to type t (-1 any), writing them from `at` if ends."""
    lo, hi = edge_range(indptr, indices, rel, node_type, v, r, t)
    count = 0
    for k in range(lo, hi):
        if r < 0 and t >= 0 and node_type[indices[k]] != t:
            continue  # an open relation's row is not sorted by type: filter it
        if ends.shape[0]:
            ends[at + count] = indices[k]
            rels[at + count] = rel[k]
        count += 1
    return count


@njit(cache=True)
def step_block(indptr, indices, rel, node_type, r, t):
    """The compact edge list of one metapath step: (ptr[n + 1], ends, relations) where v's
    edges along relation r (-1 any) to type t (-1 any) are [ptr[v], ptr[v + 1]), in CSR order."""
    n = indptr.shape[0] - 1
    ptr = np.zeros(n + 1, np.int64)
    none = np.empty(0, np.int32)
    for v in range(n):
        ptr[v + 1] = ptr[v] + _step_edges(indptr, indices, rel, node_type, v, r, t, none, none, 0)
    ends = np.empty(ptr[n], np.int32)
    rels = np.empty(ptr[n], np.int32)
    for v in range(n):
        _step_edges(indptr, indices, rel, node_type, v, r, t, ends, rels, ptr[v])
    return ptr, ends, rels


@njit(cache=True)
def build_alias_rows(ptr, ends, rels, node_weight):
    """Walker alias tables (Vose), one per block [ptr[b], ptr[b + 1]) of `ends`, weighted by
    node_weight of the end. Row k = (keep threshold as a 31-bit fraction, ends[k], the alias
    end, rels[k] | the alias end's relation << 16): a draw's integer part picks row k, its
    fraction keeps k's end or takes the alias. The row is 16 bytes: a draw touches one line."""
    rows = np.zeros((ends.shape[0], 4), np.int32)
    widest = 0
    for b in range(ptr.shape[0] - 1):
        widest = max(widest, ptr[b + 1] - ptr[b])
    small = np.empty(widest, np.int64)
    large = np.empty(widest, np.int64)
    scaled = np.empty(widest, np.float64)
    for b in range(ptr.shape[0] - 1):
        lo, hi = ptr[b], ptr[b + 1]
        d = hi - lo
        if d == 0:
            continue
        total = 0.0
        for k in range(lo, hi):
            total += node_weight[ends[k]]
            rows[k, 1] = ends[k]
            rows[k, 3] = rels[k]
        ns = nl = 0
        for j in range(d):
            scaled[j] = node_weight[ends[lo + j]] * d / total if total > 0 else 1.0
            if scaled[j] < 1.0:
                small[ns] = j
                ns += 1
            else:
                large[nl] = j
                nl += 1
        while ns > 0 and nl > 0:
            ns -= 1
            j = small[ns]
            g = large[nl - 1]
            rows[lo + j, 0] = np.int32(scaled[j] * _ONE)
            rows[lo + j, 2] = ends[lo + g]
            rows[lo + j, 3] |= rels[lo + g] << 16
            scaled[g] = scaled[g] + scaled[j] - 1.0
            if scaled[g] < 1.0:
                nl -= 1
                small[ns] = g
                ns += 1
        for i in range(nl):
            rows[lo + large[i], 0] = _KEEP
            rows[lo + large[i], 2] = ends[lo + large[i]]
            rows[lo + large[i], 3] |= rels[lo + large[i]] << 16
        for i in range(ns):  # rounding leftovers
            rows[lo + small[i], 0] = _KEEP
            rows[lo + small[i], 2] = ends[lo + small[i]]
            rows[lo + small[i], 3] |= rels[lo + small[i]] << 16
    return rows


@njit(cache=True, inline="always")
def _on_path(c, paths, w, done):
    for j in range(done + 1):
        if paths[w, j] == c:
            return True
    return False


@njit(cache=True)
def _pick_step_end(rows, lo, hi, node_weight, paths, w, done, state):
    """(end, relation) of alias rows [lo, hi) not yet on the path, -1 if none; the first draw
    (already rejected) was made by the caller. Rejection is exact for the conditional
    distribution; a small block, or one whose draws keep hitting the path, is weighed
    explicitly instead."""
    d = hi - lo
    if d > TRIES:
        for _ in range(TRIES - 1):
            state, z = _next(state)
            c, r = _alias_end(rows, lo + _below(z, d), z)
            if not _on_path(c, paths, w, done):
                return c, r, state
    total = 0.0
    for k in range(lo, hi):
        if not _on_path(rows[k, 1], paths, w, done):
            total += node_weight[rows[k, 1]]
    if total <= 0.0:
        return -1, -1, state
    state, z = _next(state)
    u = _unit(z) * total
    last = -1
    for k in range(lo, hi):
        if not _on_path(rows[k, 1], paths, w, done):
            last = k
            u -= node_weight[rows[k, 1]]
            if u < 0.0:
                break
    return rows[last, 1], rows[last, 3] & _LOW16, state


@njit(cache=True)
def walk_batch(node_weight, step_ptr, step_rows, start_rows, hop_slot, hops_min, hops_max,
               n_walks, state):
    """n_walks metapath walks from splitmix64 state `state`. A walk starts at an end drawn from
    the alias rows `start_rows` (one block); hop h draws from step hop_slot[h]'s alias rows.
    Returns (paths, edge relations, hops); hops = -1 for a walk that got stuck before the hop
    count drawn for it (its path so far is kept)."""
    paths = np.full((n_walks, hops_max + 1), -1, np.int32)
    rels = np.full((n_walks, hops_max), -1, np.int32)
    hops = np.full(n_walks, -1, np.int32)
    n_starts = start_rows.shape[0]
    span = hops_max - hops_min + 1
    want = np.empty(GROUP, np.int64)
    here = np.empty(GROUP, np.int64)
    for base in range(0, n_walks, GROUP):
        size = min(GROUP, n_walks - base)
        for i in range(size):
            state, z = _next(state)
            want[i] = hops_min + _below(z, span)
            state, z = _next(state)
            here[i] = _alias_end(start_rows, _below(z, n_starts), z)[0]
            paths[base + i, 0] = here[i]
        # hop h of every live walker of the group before hop h + 1 of any: their loads overlap
        for h in range(hops_max):
            slot = hop_slot[h]
            for i in range(size):
                if want[i] <= h:  # finished, or stuck (want set to -1)
                    continue
                w = base + i
                lo = step_ptr[slot, here[i]]
                hi = step_ptr[slot, here[i] + 1]
                if lo >= hi:
                    want[i] = -1
                    continue
                state, z = _next(state)
                c, r = _alias_end(step_rows, lo + _below(z, hi - lo), z)
                if _on_path(c, paths, w, h):
                    c, r, state = _pick_step_end(step_rows, lo, hi, node_weight, paths, w, h,
                                                 state)
                    if c < 0:
                        want[i] = -1
                        continue
                here[i] = c
                paths[w, h + 1] = c
                rels[w, h] = r
                if want[i] == h + 1:
                    hops[w] = h + 1
    return paths, rels, hops


@njit(cache=True)
def first_hop_ok(indptr, indices, rel, node_type, candidates, r, t):
    """Which candidates have at least one edge along relation r to a node of type t."""
    ok = np.zeros(candidates.shape[0], np.bool_)
    for i in range(candidates.shape[0]):
        v = candidates[i]
        lo, hi = edge_range(indptr, indices, rel, node_type, v, r, t)
        if r >= 0 or t < 0:
            ok[i] = hi > lo
        else:
            for k in range(lo, hi):
                if node_type[indices[k]] == t:
                    ok[i] = True
                    break
    return ok
