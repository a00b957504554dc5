"""graph_load: read a KG as published (PrimeKG, Hetionet, typed triples) into one CSR `.npz`."""

from __future__ import annotations

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GraphLoadJob
from fleming_dsl.runtime.jobs.context import JobContext


def run(cfg: GraphLoadJob, ctx: JobContext) -> None:
    from fleming_dsl.runtime.graph.io import read_graph
    from fleming_dsl.runtime.graph.store import build_store, save_store

    with ctx.timed("read"):
        edges = read_graph(cfg.format, cfg.paths)
    if len(edges.src) == 0:  # an empty graph store would look complete
        raise JobError(f"{cfg.paths[-1]}: no edges (the file has a header but no rows)")
    with ctx.timed("build"):
        store = build_store(edges)
    with ctx.timed("save"):
        save_store(store, cfg.output)
    ctx.counts.update({
        "nodes": store.num_nodes,
        "edges": store.num_edges,
        "input_edges": len(edges.src),
        "node_types": store.type_counts(),
        "relations": store.relation_counts(),
    })
    ctx.metrics["store_bytes"] = store.nbytes
    ctx.metrics["bytes_per_edge"] = round(store.nbytes / max(store.num_edges, 1), 2)
