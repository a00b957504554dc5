"""Load a PrimeKG-format kg.csv three ways, each in its own process: wall, CPU and peak memory.

    python bench/graph_load.py [--rows 8100498] [--nodes 129375] [--file PATH] [--nx-seconds 120]

Writes (or reuses) a synthetic kg.csv in PrimeKG's layout at the chosen scale (default: full
PrimeKG, 8,100,498 rows over 129,375 nodes, its 10 node types with their published counts and
its 30 relations, power-law degrees, every edge in both directions), then times:

- graph_load: the project's reader (`read_primekg`, streamed pyarrow) + `build_store`;
- pyarrow: `pyarrow.csv.read_csv` of the whole file, then the same node/relation encoding and
  `build_store` (the reference the issue names);
- pandas + networkx: `pd.read_csv` and a `networkx.MultiDiGraph` of every edge, stopped after
  --nx-seconds (the row says how many rows it had built by then, and the whole file's time at
  that rate).

Peak memory is each process's own maximum RSS. graph_load's arrays are compared with the pyarrow
reference's byte for byte.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# PrimeKG (Chandak et al. 2023): node types with their counts (129,375 in all) and relations.
NODE_TYPES = {"biological_process": 28642, "gene/protein": 27671, "disease": 17080,
              "effect/phenotype": 15311, "anatomy": 14035, "molecular_function": 11169,
              "drug": 7957, "cellular_component": 4176, "pathway": 2516, "exposure": 818}
RELATIONS = ("anatomy_anatomy", "anatomy_protein_absent", "anatomy_protein_present",
             "bioprocess_bioprocess", "bioprocess_protein", "cellcomp_cellcomp",
             "cellcomp_protein", "contraindication", "disease_disease",
             "disease_phenotype_negative", "disease_phenotype_positive", "disease_protein",
             "drug_drug", "drug_effect", "drug_protein", "exposure_bioprocess",
             "exposure_cellcomp", "exposure_disease", "exposure_exposure", "exposure_molfunc",
             "exposure_protein", "indication", "molfunc_molfunc", "molfunc_protein",
             "off-label use", "pathway_pathway", "pathway_protein", "phenotype_phenotype",
             "phenotype_protein", "protein_protein")
COLUMNS = ("relation", "display_relation", "x_index", "x_id", "x_type", "x_name", "x_source",
           "y_index", "y_id", "y_type", "y_name", "y_source")


def write_kg(path: Path, rows: int, nodes: int, seed: int = 0) -> None:
    """A PrimeKG-layout file: rows/2 edges, each written in both directions."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    total = sum(NODE_TYPES.values())
    counts = [max(1, round(c * nodes / total)) for c in NODE_TYPES.values()]
    counts[0] += nodes - sum(counts)
    kinds = np.repeat(np.arange(len(NODE_TYPES)), counts)
    rng.shuffle(kinds)
    type_names = np.array(list(NODE_TYPES), dtype=object)
    names = np.array([f"entity {i}" if i % 11 else f"entity {i}, variant" for i in range(nodes)],
                     dtype=object)
    ids = np.array([str(10_000 + i) for i in range(nodes)], dtype=object)
    sources = np.array(["NCBI", "MONDO", "HPO", "DrugBank", "GO", "UBERON", "REACTOME", "CTD"],
                       dtype=object)[np.arange(nodes) % 8]
    weight = 1.0 / np.arange(1, nodes + 1) ** 0.8  # power-law degrees
    weight /= weight.sum()
    rank = rng.permutation(nodes)
    rels = np.array(RELATIONS, dtype=object)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for start in range(0, rows // 2, 1_000_000):
            n = min(1_000_000, rows // 2 - start)
            x = rank[rng.choice(nodes, n, p=weight)]
            y = rank[rng.choice(nodes, n, p=weight)]
            rel = rels[rng.integers(0, len(rels), n)]
            a = np.concatenate([x, y])
            b = np.concatenate([y, x])
            r = np.concatenate([rel, rel])
            frame = pd.DataFrame({
                "relation": r, "display_relation": np.char.replace(r.astype(str), "_", " "),
                "x_index": a, "x_id": ids[a], "x_type": type_names[kinds[a]], "x_name": names[a],
                "x_source": sources[a], "y_index": b, "y_id": ids[b],
                "y_type": type_names[kinds[b]], "y_name": names[b], "y_source": sources[b]})
            frame.to_csv(handle, header=False, index=False)


# ---------------------------------------------------------------- the three loaders (children)


def load_graph_load(path: str) -> dict:
    from fleming_dsl.runtime.graph.io import read_primekg
    from fleming_dsl.runtime.graph.store import build_store

    store = build_store(read_primekg(path))
    return {"edges": int(store.num_edges), "digest": _digest(store)}


def load_pyarrow(path: str) -> dict:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from fleming_dsl.runtime.graph.store import EdgeList, build_store

    table = pacsv.read_csv(path)
    x = table["x_index"].to_numpy().astype(np.int64)
    y = table["y_index"].to_numpy().astype(np.int64)
    both = np.stack([x, y], axis=1).ravel()
    keys, first = np.unique(both, return_index=True)
    rows, side = first // 2, first % 2

    def node_column(field: str) -> list:
        xs = table[f"x_{field}"].take(rows).to_pylist()
        ys = table[f"y_{field}"].take(rows).to_pylist()
        return [str(b) if s else str(a) for a, b, s in zip(xs, ys, side)]

    types = node_column("type")
    type_names = sorted(set(types))
    rel = pc.dictionary_encode(table["relation"]).combine_chunks()
    rel_names = sorted(rel.dictionary.to_pylist())
    remap = np.array([rel_names.index(n) for n in rel.dictionary.to_pylist()], dtype=np.int64)
    edges = EdgeList(
        type_names=type_names, rel_names=rel_names,
        node_type=np.searchsorted(np.array(type_names, dtype=object),
                                  np.array(types, dtype=object)),
        names=node_column("name"),
        ids=[f"{s}:{i}" for s, i in zip(node_column("source"), node_column("id"))],
        src=np.searchsorted(keys, x), dst=np.searchsorted(keys, y),
        rel=remap[rel.indices.to_numpy()])
    store = build_store(edges)
    return {"edges": int(store.num_edges), "digest": _digest(store)}


def load_networkx(path: str, seconds: float) -> dict:
    import networkx as nx
    import pandas as pd

    deadline = time.monotonic() + seconds
    graph = nx.MultiDiGraph()
    built = 0
    for frame in pd.read_csv(path, chunksize=250_000, low_memory=False):
        graph.add_edges_from(zip(frame["x_index"], frame["y_index"],
                                 ({"relation": r} for r in frame["relation"])))
        built += len(frame)
        if time.monotonic() > deadline:
            return {"edges": built, "stopped": True}
    return {"edges": built, "stopped": False}


def _digest(store) -> str:
    import hashlib

    from fleming_dsl.runtime.graph.store import _ARRAYS

    digest = hashlib.sha256(repr((store.type_names, store.rel_names)).encode())
    for name in _ARRAYS:
        digest.update(getattr(store, name).tobytes())
    return digest.hexdigest()[:16]


def child(kind: str, path: str, seconds: float) -> None:
    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    result = {"graph_load": lambda: load_graph_load(path), "pyarrow": lambda: load_pyarrow(path),
              "networkx": lambda: load_networkx(path, seconds)}[kind]()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(wall=time.perf_counter() - start, cpu=usage.ru_utime + usage.ru_stime,
                  rss_mb=usage.ru_maxrss / 1024)
    print(json.dumps(result))


def run(kind: str, path: Path, seconds: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--file", str(path),
                          "--nx-seconds", str(seconds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_100_498)
    parser.add_argument("--nodes", type=int, default=129_375)
    parser.add_argument("--file", type=Path, help="kg.csv to use (written if missing)")
    parser.add_argument("--nx-seconds", type=float, default=120.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, str(args.file), args.nx_seconds)
        return 0
    path = args.file or Path(tempfile.gettempdir()) / f"fleming-kg-{args.rows}-{args.nodes}.csv"
    if not path.is_file():
        start = time.perf_counter()
        write_kg(path, args.rows, args.nodes)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s")
    rows = {kind: run(kind, path, args.nx_seconds)
            for kind in ("graph_load", "pyarrow", "networkx")}
    ref = rows["pyarrow"]
    header = f"{'loader':<18} {'wall':>8} {'CPU':>8} {'peak RSS':>10} {'edges':>10}   vs pyarrow"
    print(header)
    print("-" * len(header))
    for kind, row in rows.items():
        note = ""
        if row.get("stopped"):
            rate = row["wall"] / max(row["edges"], 1)
            note = (f" (stopped at the {args.nx_seconds:.0f} s time box: {row['edges']:,} of "
                    f"{args.rows:,} rows built; ~{rate * args.rows:,.0f} s "
                    "for the whole file at that rate)")
        ratio = f"{row['wall'] / ref['wall']:.2f}x wall, {row['cpu'] / ref['cpu']:.2f}x CPU"
        print(f"{kind:<18} {row['wall']:>7.1f}s {row['cpu']:>7.1f}s {row['rss_mb']:>8.0f}MB "
              f"{row['edges']:>10}   {ratio}{note}")
    same = rows["graph_load"]["digest"] == ref["digest"]
    print(f"\n{path}: graph_load arrays {'identical to' if same else 'DIFFER from'} the "
          "pyarrow reference's")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
