"""Benchmark: the CSR + numba metapath sampler beside a plain networkx walk, on one graph.

    python bench/sampler.py            # PrimeKG scale: 129,375 nodes, 8M directed edges (minutes)
    python bench/sampler.py --small    # 20K nodes, 400K edges (seconds)

Builds a synthetic typed graph (10 node types, 30 relations, power-law degrees), writes its
facts as a typed-triples TSV (`head head_type relation tail tail_type`, one fact a line; the
loader stores each in both directions, as PrimeKG ships them), and measures in one run:

- CSV -> graph on both sides, each in its own process (wall, CPU, peak RSS): the project's
  `graph_load` path (`read_graph("triples")` + `build_store`), and pandas reading the same file
  in chunks into a networkx MultiDiGraph (node `type`, edge `relation`, both directions),
  time-boxed by --nx-load-seconds (the row then says how far it got, and the full-file time
  extrapolated from its rate);
- resident memory (psutil RSS delta) of the store as the sampler holds it (`load_store` of the
  saved `.npz`), and the time and memory of the sampler's tables (`Walker`: the per-step alias
  tables), built once per sample job;
- throughput of metapath-constrained, inverse-degree-weighted walks (hops of completed walks
  per CPU second of this single-threaded process, and per wall second) of the numba CSR walker:
  the median of `--repeats` runs of the same batch (the best is printed beside it);
- the same walks in networkx: a MultiDiGraph with a `relation` attribute per edge and a `type`
  per node, neighbours filtered by relation and type, weighted by degree^-alpha with
  `random.choices`. Building an 8M-edge MultiDiGraph takes minutes and gigabytes, so by default
  networkx gets the edges of a random node sample (`--nx-edges`, the induced subgraph keeps
  every type and relation and the power-law shape), and its walk is time-boxed
  (`--nx-seconds` of wall time); hops/s is hops of completed walks per CPU second.

Ends with one line `speedup: <N>x` (CSR hops/s over networkx hops/s).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleming_dsl.runtime.graph.sampler import Walker, WalkSpec
from fleming_dsl.runtime.graph.store import (
    EdgeList,
    build_store,
    load_store,
    save_store,
)

N_TYPES, N_RELATIONS = 10, 30


def rss() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


def relation_endpoints(r: int) -> tuple[int, int]:
    """Type pair joined by relation r: relation 0 is type0-type1, 1 is type1-type2, ..."""
    return r % N_TYPES, (r + 1 + r // N_TYPES) % N_TYPES


def _draw_facts(rng, n: int, members, popularity, rel_share):
    per_rel = rng.multinomial(n, rel_share / rel_share.sum())
    src, dst, rel = [], [], []
    for r, count in enumerate(per_rel):
        a, b = relation_endpoints(r)
        for side, t in ((src, a), (dst, b)):
            p = popularity[members[t]]
            side.append(members[t][rng.choice(len(p), count, p=p / p.sum())])
        rel.append(np.full(count, r))
    return np.concatenate(src), np.concatenate(dst), np.concatenate(rel)


def synthetic_graph(nodes: int, directed_edges: int, seed: int) -> EdgeList:
    """Power-law typed graph of exactly `directed_edges` distinct edges: each undirected fact
    becomes two directed edges; repeated draws of a fact are replaced until the count is met."""
    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.full(N_TYPES, 2.0))
    node_type = np.sort(rng.choice(N_TYPES, nodes, p=share))
    members = [np.flatnonzero(node_type == t) for t in range(N_TYPES)]
    popularity = rng.pareto(1.1, nodes) + 1.0  # heavy tail: a few hubs, many rare entities
    rel_share = rng.pareto(1.5, N_RELATIONS) + 1.0
    facts = directed_edges // 2
    keys = np.zeros(0, np.int64)
    while len(keys) < facts:
        src, dst, rel = _draw_facts(rng, int((facts - len(keys)) * 1.3) + 1000, members,
                                    popularity, rel_share)
        # one key per unordered fact, so a fact and its mirror count once
        lo, hi = np.minimum(src, dst), np.maximum(src, dst)
        fresh = (lo.astype(np.int64) * nodes + hi) * N_RELATIONS + rel
        fresh = fresh[lo != hi]
        _, first = np.unique(fresh, return_index=True)
        fresh = fresh[np.sort(first)]
        keys = np.concatenate([keys, fresh[~np.isin(fresh, keys)]])
    keys = keys[:facts]
    rel, pair = keys % N_RELATIONS, keys // N_RELATIONS
    src, dst = pair // nodes, pair % nodes
    return EdgeList(
        type_names=[f"type{t}" for t in range(N_TYPES)],
        rel_names=[f"rel{r:02d}" for r in range(N_RELATIONS)],
        node_type=node_type, names=[f"n{i}" for i in range(nodes)], ids=[str(i) for i in range(nodes)],
        src=np.concatenate([src, dst]), dst=np.concatenate([dst, src]), rel=np.concatenate([rel, rel]))


def write_triples(nodes: int, edges: int, seed: int, path: Path) -> None:
    """The synthetic graph's facts (each once) as a typed-triples TSV; runs in a child process."""
    g = synthetic_graph(nodes, edges, seed)
    facts = len(g.src) // 2  # the first half: each fact once (the second is its mirror)
    names = np.array(g.names, dtype=object)
    types = np.array(g.type_names, dtype=object)[g.node_type]
    rels = np.array(g.rel_names, dtype=object)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("head\thead_type\trelation\ttail\ttail_type\n")
        for start in range(0, facts, 500_000):
            s, d = g.src[start:start + 500_000], g.dst[start:start + 500_000]
            r = g.rel[start:start + 500_000]
            handle.writelines(f"{a}\t{b}\t{c}\t{e}\t{f}\n" for a, b, c, e, f in zip(
                names[s], types[s], rels[r], names[d], types[d]))


def _report(out: Path, started: tuple[float, float], **fields) -> None:
    import json
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"wall": time.perf_counter() - started[0],
                               "cpu": time.process_time() - started[1],
                               "rss_mb": usage.ru_maxrss / 1024, **fields}))


def load_ours(tsv: Path, npz: Path, out: Path) -> None:
    """CSV -> store as the graph_load job does it, then saved for the walks (not timed)."""
    from fleming_dsl.runtime.graph.io import read_graph

    started = (time.perf_counter(), time.process_time())
    store = build_store(read_graph("triples", [str(tsv)]))
    _report(out, started, edges=int(store.num_edges), stopped=False)
    save_store(store, npz)


def load_networkx(tsv: Path, seconds: float, out: Path) -> None:
    """CSV -> MultiDiGraph the plain way (pandas chunks, both directions), time-boxed."""
    import networkx as nx
    import pandas as pd

    started = (time.perf_counter(), time.process_time())
    deadline = started[0] + seconds
    graph = nx.MultiDiGraph()
    rows = stopped = 0
    for frame in pd.read_csv(tsv, sep="\t", dtype=str, chunksize=200_000):
        graph.add_nodes_from((n, {"type": t}) for n, t in zip(frame["head"], frame["head_type"]))
        graph.add_nodes_from((n, {"type": t}) for n, t in zip(frame["tail"], frame["tail_type"]))
        for a, b in (("head", "tail"), ("tail", "head")):
            graph.add_edges_from(zip(frame[a], frame[b], ({"relation": r}
                                                          for r in frame["relation"])))
        rows += len(frame)
        if time.perf_counter() > deadline:
            stopped = True
            break
    _report(out, started, edges=graph.number_of_edges(), rows=rows, stopped=bool(stopped))


def in_child(target, *args) -> dict:
    """Run `target(*args, out)` in a fresh interpreter (its own peak RSS); its JSON report."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        child = multiprocessing.get_context("spawn").Process(target=target, args=(*args, out))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"{target.__name__} failed (exit {child.exitcode})")
        return json.loads(out.read_text())


def warm_up_kernels() -> None:
    """Compile (or load cached) numba kernels before anything is measured."""
    tiny = build_store(EdgeList(["a"], ["r"], np.zeros(3, np.int64), ["x", "y", "z"], ["x", "y", "z"],
                                np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), np.zeros(4, np.int64)))
    Walker(tiny, WalkSpec("a", ("r",), ("a",), 1, 2)).batch(10, 0)


class Timer:
    """Wall and CPU seconds of a block: CPU time is what one core gave us on a shared machine."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def csr_throughput(walker: Walker, walks: int, seed: int, repeats: int) -> tuple[int, list[Timer]]:
    """Hops of completed walks in one batch and the timers of `repeats` runs of that batch (same
    seed, same work): on a shared machine one run can lose its core for a while."""
    walker.batch(1000, seed)  # compile (or load the numba cache) outside the timing
    timers, hops_done = [], set()
    for _ in range(repeats):
        with Timer() as timer:
            _, _, hops = walker.batch(walks, seed + 1)
        timers.append(timer)
        hops_done.add(int(hops[hops > 0].sum()))
    assert len(hops_done) == 1, "the same seed walked differently"
    return hops_done.pop(), timers


def networkx_graph(store, max_edges: int, seed: int):
    """MultiDiGraph of the subgraph induced by a random node sample holding about max_edges."""
    import networkx as nx

    n, m = store.num_nodes, store.num_edges
    keep_share = min(1.0, (max_edges / m) ** 0.5)  # induced edges scale with the square
    rng = np.random.default_rng(seed)
    keep = rng.random(n) < keep_share
    src = np.repeat(np.arange(n), np.diff(store.indptr))
    mask = keep[src] & keep[store.indices]
    graph = nx.MultiDiGraph()
    graph.add_nodes_from((int(v), {"type": int(store.node_type[v])}) for v in np.flatnonzero(keep))
    graph.add_edges_from((int(s), int(d), {"relation": int(r)})
                         for s, d, r in zip(src[mask], store.indices[mask], store.rel[mask]))
    return graph


def networkx_walks(graph, hop_rel, hop_type, start_type, hops_min, hops_max, alpha, seconds,
                   seed) -> tuple[int, int, Timer]:
    """The same constrained, weighted walk written the plain networkx way, time-boxed."""
    rng = random.Random(seed)
    starts = [v for v, t in graph.nodes(data="type") if t == start_type and graph.out_degree(v)]
    start_w = [graph.out_degree(v) ** -alpha for v in starts]
    hops_done = walks = 0
    deadline = time.perf_counter() + seconds
    timer = Timer().__enter__()
    while time.perf_counter() < deadline:
        want = rng.randint(hops_min, hops_max)
        path = [rng.choices(starts, start_w)[0]]
        for h in range(want):
            here = path[-1]
            candidates = [u for _, u, r in graph.out_edges(here, data="relation")
                          if r == hop_rel[h] and graph.nodes[u]["type"] == hop_type[h]
                          and u not in path]
            if not candidates:
                break
            weights = [graph.out_degree(u) ** -alpha for u in candidates]
            path.append(rng.choices(candidates, weights)[0])
        walks += 1
        if len(path) == want + 1:
            hops_done += want
    timer.__exit__()
    return hops_done, walks, timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20K nodes, 400K edges")
    parser.add_argument("--nodes", type=int, default=129_375)
    parser.add_argument("--edges", type=int, default=8_000_000, help="directed edges")
    parser.add_argument("--walks", type=int, default=1_000_000)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--nx-edges", type=int, default=1_000_000,
                        help="edges of the networkx subgraph (0 = the whole graph)")
    parser.add_argument("--nx-seconds", type=float, default=20.0)
    parser.add_argument("--nx-load-seconds", type=float, default=120.0,
                        help="time box of networkx's CSV -> MultiDiGraph build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs of the CSR batch; the median is reported")
    args = parser.parse_args(argv)
    if args.small:
        args.nodes, args.edges, args.walks, args.nx_seconds = 20_000, 400_000, 200_000, 5.0

    with tempfile.TemporaryDirectory() as tmp:
        tsv, path = Path(tmp) / "graph.tsv", Path(tmp) / "graph.npz"
        t0 = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(
            target=write_triples, args=(args.nodes, args.edges, args.seed, tsv))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the synthetic graph failed (exit {child.exitcode})")
        build_s = time.perf_counter() - t0
        csv_mb = tsv.stat().st_size / 2**20
        ours = in_child(load_ours, tsv, path)
        theirs = in_child(load_networkx, tsv, args.nx_load_seconds)
        file_mb = path.stat().st_size / 2**20
        warm_up_kernels()
        gc.collect()
        before = rss()
        t0 = time.perf_counter()
        store = load_store(path)
        load_s = time.perf_counter() - t0
        store_mb = (rss() - before) / 2**20

    # metapath type0 -[rel00]-> type1 -[rel01]-> type2, walked back along itself past 2 hops
    spec = WalkSpec("type0", ("rel00", "rel01"), ("type1", "type2"), 2, 4, "inverse_degree",
                    args.alpha)
    before = rss()
    with Timer() as table_t:
        walker = Walker(store, spec)  # the per-step alias tables the walks draw from
    sampler_mb = (rss() - before) / 2**20
    csr_hops, csr_runs = csr_throughput(walker, args.walks, args.seed, max(args.repeats, 1))
    csr_t = sorted(csr_runs, key=lambda t: t.cpu)[len(csr_runs) // 2]  # median by CPU time
    csr_best = min(t.cpu for t in csr_runs)

    nx_edges = store.num_edges if args.nx_edges <= 0 else min(args.nx_edges, store.num_edges)
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    graph = networkx_graph(store, nx_edges, args.seed)
    nx_build_s = time.perf_counter() - t0
    nx_mb = (rss() - before) / 2**20
    m = walker.metapath
    nx_hops, nx_walks, nx_t = networkx_walks(
        graph, m.hop_rel.tolist(), m.hop_type.tolist(), m.start_type, spec.hops_min,
        spec.hops_max, args.alpha, args.nx_seconds, args.seed)

    e = store.num_edges
    g = graph.number_of_edges()
    print(f"graph: {store.num_nodes:,} nodes, {e:,} directed edges, {N_TYPES} node types, "
          f"{N_RELATIONS} relations (synthetic, power-law; built in {build_s:.1f} s)")
    print(f"metapath: {spec.start_type} -[{spec.relations[0]}]-> {spec.node_types[0]} "
          f"-[{spec.relations[1]}]-> {spec.node_types[1]}, hops {spec.hops_min}..{spec.hops_max}, "
          f"inverse_degree(alpha={args.alpha})")
    print()
    print(f"{'':26}{'CSR + numba':>16}{'networkx':>16}")
    print(f"{'edges walked on':26}{e:>16,}{g:>16,}")
    full = theirs["wall"] * ours["edges"] / max(theirs["edges"], 1)
    print(f"{'CSV -> graph, wall (s)':26}{ours['wall']:>16.1f}{theirs['wall']:>16.1f}"
          + (f"  stopped at the time box: {theirs['edges']:,} of {ours['edges']:,} edges; "
             f"~{full:,.0f} s for all at that rate" if theirs["stopped"] else ""))
    print(f"{'CSV -> graph, CPU (s)':26}{ours['cpu']:>16.1f}{theirs['cpu']:>16.1f}")
    print(f"{'CSV -> graph, peak RSS (MB)':26}{ours['rss_mb']:>15.0f} {theirs['rss_mb']:>15.0f}")
    print(f"{'load_store of .npz (s)':26}{load_s:>16.2f}{'':>16}")
    print(f"{'walk subgraph build (s)':26}{'':>16}{nx_build_s:>16.1f}")
    print(f"{'sampler tables, wall (s)':26}{table_t.wall:>16.2f}{'-':>16}")
    print(f"{'sampler tables, CPU (s)':26}{table_t.cpu:>16.2f}{'-':>16}")
    print(f"{'resident graph (MB)':26}{store_mb:>16.1f}{nx_mb:>16.1f}")
    print(f"{'bytes per edge':26}{store_mb * 2**20 / e:>16.1f}{nx_mb * 2**20 / max(g, 1):>16.1f}")
    print(f"{'+ sampler tables (MB)':26}{sampler_mb:>16.1f}{'':>16}")
    print(f"{'store file (MB)':26}{file_mb:>16.1f}{'':>16}")
    print(f"{'triples TSV (MB)':26}{csv_mb:>16.1f}{csv_mb:>16.1f}")
    print(f"{'hops timed':26}{csr_hops:>16,}{nx_hops:>16,}")
    print(f"{'wall seconds':26}{csr_t.wall:>16.2f}{nx_t.wall:>16.1f}")
    print(f"{'CPU seconds':26}{csr_t.cpu:>16.2f}{nx_t.cpu:>16.1f}")
    print(f"{'hops/s (wall)':26}{csr_hops / csr_t.wall:>16,.0f}{nx_hops / nx_t.wall:>16,.0f}")
    csr_rate, nx_rate = csr_hops / csr_t.cpu, nx_hops / max(nx_t.cpu, 1e-9)
    print(f"{'hops/s (one core, CPU)':26}{csr_rate:>16,.0f}{nx_rate:>16,.0f}")
    print(f"{'  best of ' + str(len(csr_runs)) + ' runs':26}{csr_hops / csr_best:>16,.0f}{'':>16}")
    print(f"{'load average (1 min)':26}{os.getloadavg()[0]:>16.1f}  on {os.cpu_count()} CPUs")
    print()
    print(f"networkx: MultiDiGraph of the induced subgraph of a random node sample "
          f"({g:,} of {e:,} edges), walk time-boxed to {args.nx_seconds:.0f} s ({nx_walks:,} walks)")
    print("hops/s counts hops of completed walks per CPU second of this process (both sides "
          "single-threaded), so other load on the machine does not distort the ratio; CSR "
          f"figures are the median of {len(csr_runs)} runs of the same batch")
    print("CSV -> graph: both sides read the same TSV in their own process (peak RSS is that "
          "process's); the store is then saved as .npz, which a sample job loads "
          "('load_store'). What differs: networkx walks a sampled subgraph of the store "
          "(built in memory: 'walk subgraph build'), and draws starts "
          "with random.choices by degree^-alpha among start-type nodes with out-edges; the CSR "
          "walker draws from its own seeded tables, so the walks are the same distribution, "
          "not the same paths.")
    print(f"speedup: {csr_rate / max(nx_rate, 1e-9):,.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
