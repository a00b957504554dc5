"""numba kernels of the metapath walker; imported only when a walk runs (see `sampler.py`).

Edge weights are kept as per-row running sums (`cum[k]` = total weight of the row's edges up to
and including k), so a weighted pick inside any sub-range of a row (one relation, one neighbour
type) is a uniform draw plus a binary search: no per-hop allocation, no scan of hub rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def row_cumulative_weights(indptr, indices, node_weight):
    """cum[k] = sum of node_weight[indices[j]] for j from the row start to k (float64)."""
    cum = np.empty(indices.shape[0], np.float64)
    for v in range(indptr.shape[0] - 1):
        acc = 0.0
        for k in range(indptr[v], indptr[v + 1]):
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
def _pick_edge(indices, node_type, cum, row_start, lo, hi, path_row, done, t):
    """A weighted edge in [lo, hi) whose end is of type t and not yet on the path; -1 if none."""
    base = cum[lo - 1] if lo > row_start else 0.0
    span = cum[hi - 1] - base
    if span <= 0.0:
        return -1
    # Rejection first: exact for the conditional distribution and O(log d) when most fit.
    for _ in range(8):
        u = base + np.random.random() * span
        a, b = lo, hi - 1
        while a < b:
            mid = (a + b) >> 1
            if cum[mid] <= u:
                a = mid + 1
            else:
                b = mid
        if _acceptable(indices[a], path_row, done, node_type, t):
            return a
    # Few acceptable ends: weigh them explicitly.
    total = 0.0
    for k in range(lo, hi):
        if _acceptable(indices[k], path_row, done, node_type, t):
            total += cum[k] - (cum[k - 1] if k > row_start else 0.0)
    if total <= 0.0:
        return -1
    u = np.random.random() * total
    last = -1
    for k in range(lo, hi):
        if _acceptable(indices[k], path_row, done, node_type, t):
            last = k
            u -= cum[k] - (cum[k - 1] if k > row_start else 0.0)
            if u < 0.0:
                return k
    return last


@njit(cache=True)
def walk_batch(indptr, indices, rel, node_type, cum, start_nodes, start_cum, hop_rel, hop_type,
               hops_min, hops_max, n_walks, seed):
    """n_walks metapath walks. Returns (paths, edge relations, hops); hops = -1 for a walk that
    got stuck before reaching the hop count drawn for it."""
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
            lo, hi = edge_range(indptr, indices, rel, node_type, v, hop_rel[done], hop_type[done])
            if lo >= hi:
                break
            k = _pick_edge(indices, node_type, cum, indptr[v], lo, hi, paths[w], done,
                           hop_type[done])
            if k < 0:
                break
            v = indices[k]
            rels[w, done] = rel[k]
            done += 1
            paths[w, done] = v
        if done == want:
            hops[w] = want
    return paths, rels, hops
