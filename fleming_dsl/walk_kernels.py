"""numba kernels of the metapath walker; imported only when a walk runs (see `sampler.py`).

Each metapath step (relation, neighbour type) gets a per-node [lo, hi) table of its edge block
(the CSR rows are sorted by relation, then neighbour type) and Walker alias tables over those
blocks, so a weighted hop costs a few loads whatever the hub's degree. A step with an open
relation draws from the node's whole row through a running sum of edge weights (`cum`) and a
binary search. Nothing is allocated per hop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ONE = 2147483648.0  # 2**31: alias keep thresholds are fractions of this
_KEEP = np.int32(2147483647)  # keep always (the alias is the edge itself)


@njit(cache=True)
def cumulative_weights(indices, node_weight):
    """cum[k] = sum of node_weight[indices[j]] for j <= k (float64: exact enough at 8M edges)."""
    cum = np.empty(indices.shape[0], np.float64)
    acc = 0.0
    for k in range(indices.shape[0]):
        acc += node_weight[indices[k]]
        cum[k] = acc
    return cum


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
def _acceptable(c, path_row, done, node_type, t):
    if t >= 0 and node_type[c] != t:
        return False
    for j in range(done + 1):
        if path_row[j] == c:
            return False
    return True


@njit(cache=True)
def build_alias(indices, node_weight, table, alias):
    """Walker alias tables (Vose) for every node's block table[v] = [lo, hi). alias[k] holds
    (keep threshold as a 31-bit fraction, alias edge): an edge is drawn in O(1) by one uniform
    u * d whose integer part picks slot k and whose fraction decides k or its alias. The pair
    sits in one 8-byte row so a draw touches one cache line."""
    widest = 0
    for v in range(table.shape[0]):
        widest = max(widest, table[v, 1] - table[v, 0])
    small = np.empty(widest, np.int64)
    large = np.empty(widest, np.int64)
    scaled = np.empty(widest, np.float64)
    for v in range(table.shape[0]):
        lo, hi = table[v, 0], table[v, 1]
        d = hi - lo
        if d == 0:
            continue
        total = 0.0
        for k in range(lo, hi):
            total += node_weight[indices[k]]
        ns = nl = 0
        for j in range(d):
            scaled[j] = node_weight[indices[lo + j]] * d / total if total > 0 else 1.0
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
            alias[lo + j, 0] = np.int32(scaled[j] * _ONE)
            alias[lo + j, 1] = lo + g
            scaled[g] = scaled[g] + scaled[j] - 1.0
            if scaled[g] < 1.0:
                nl -= 1
                small[ns] = g
                ns += 1
        for i in range(nl):
            alias[lo + large[i], 0] = _KEEP
            alias[lo + large[i], 1] = lo + large[i]
        for i in range(ns):  # rounding leftovers
            alias[lo + small[i], 0] = _KEEP
            alias[lo + small[i], 1] = lo + small[i]


@njit(cache=True)
def _draw_alias(alias, lo, hi):
    u = np.random.random() * (hi - lo)
    j = int(u)
    k = lo + j
    return k if (u - j) * _ONE < alias[k, 0] else alias[k, 1]


@njit(cache=True)
def _draw_cum(cum, lo, hi):
    base = cum[lo - 1] if lo > 0 else 0.0
    u = base + np.random.random() * (cum[hi - 1] - base)
    a, b = lo, hi - 1
    while a < b:
        mid = (a + b) >> 1
        if cum[mid] <= u:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True)
def _pick_edge(indices, node_type, node_weight, cum, alias, use_alias, lo, hi, path_row, done, t):
    """A weighted edge in [lo, hi) whose end is of type t and not yet on the path; -1 if none."""
    # Rejection first: exact for the conditional distribution, and cheap when most ends fit.
    for _ in range(8):
        if use_alias:
            k = _draw_alias(alias, lo, hi)
        else:
            k = _draw_cum(cum, lo, hi)
        if _acceptable(indices[k], path_row, done, node_type, t):
            return k
    # Few acceptable ends: weigh them explicitly.
    total = 0.0
    for k in range(lo, hi):
        if _acceptable(indices[k], path_row, done, node_type, t):
            total += node_weight[indices[k]]
    if total <= 0.0:
        return -1
    u = np.random.random() * total
    last = -1
    for k in range(lo, hi):
        if _acceptable(indices[k], path_row, done, node_type, t):
            last = k
            u -= node_weight[indices[k]]
            if u < 0.0:
                return k
    return last


@njit(cache=True)
def slot_ranges(indptr, indices, rel, node_type, r, t):
    """Per node, the [lo, hi) edge range along relation r to type t: one table per metapath
    step, so a hop finds its candidates in one cache line instead of binary searches."""
    n = indptr.shape[0] - 1
    table = np.empty((n, 2), np.int64)
    for v in range(n):
        table[v, 0], table[v, 1] = edge_range(indptr, indices, rel, node_type, v, r, t)
    return table


@njit(cache=True)
def walk_batch(indptr, indices, rel, node_type, node_weight, cum, alias, start_nodes,
               start_cum, slots, hop_slot, hop_rel, hop_check, hops_min, hops_max, n_walks, seed):
    """n_walks metapath walks. Hop h draws from table slots[hop_slot[h]] with the alias tables,
    or, where hop_slot[h] = -1 (any relation), from the node's whole row with `cum`; it keeps
    ends of type hop_check[h] (-1: any). Returns (paths, edge relations, hops); hops = -1 for a
    walk that got stuck before the hop count drawn for it."""
    np.random.seed(seed)
    paths = np.full((n_walks, hops_max + 1), -1, np.int32)
    rels = np.full((n_walks, hops_max), -1, np.int32)
    hops = np.full(n_walks, -1, np.int32)
    start_total = start_cum[start_cum.shape[0] - 1]
    for w in range(n_walks):
        want = hops_min + np.random.randint(hops_max - hops_min + 1)
        u = np.random.random() * start_total
        at = np.searchsorted(start_cum, u, side="right")
        v = start_nodes[min(at, start_nodes.shape[0] - 1)]
        paths[w, 0] = v
        done = 0
        while done < want:
            slot = hop_slot[done]
            if slot >= 0:
                lo = slots[slot, v, 0]
                hi = slots[slot, v, 1]
            else:
                lo = indptr[v]
                hi = indptr[v + 1]
            if lo >= hi:
                break
            k = _pick_edge(indices, node_type, node_weight, cum, alias, slot >= 0, lo, hi,
                           paths[w], done, hop_check[done])
            if k < 0:
                break
            v = indices[k]
            rels[w, done] = hop_rel[done] if slot >= 0 else rel[k]
            done += 1
            paths[w, done] = v
        if done == want:
            hops[w] = want
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
