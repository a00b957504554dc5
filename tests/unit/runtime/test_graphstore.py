"""Graph loaders (PrimeKG, Hetionet, typed triples), the CSR store and the embedded medical KG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.graph.io import PRIMEKG_COLUMNS, read_graph
from fleming_dsl.runtime.graph.store import (
    build_store,
    load_store,
    save_store,
    to_networkx,
)

HEADER = ",".join(PRIMEKG_COLUMNS)
PRIMEKG_ROWS = [
    "indication,indication,2,DB00331,drug,Metformin,DrugBank,0,1234,disease,type 2 diabetes,MONDO",
    "indication,indication,0,1234,disease,type 2 diabetes,MONDO,2,DB00331,drug,Metformin,DrugBank",
    'disease_phenotype_positive,phenotype present,0,1234,disease,type 2 diabetes,MONDO,5,0000103,'
    'effect/phenotype,"Polyuria, nocturnal",HPO',
    'disease_phenotype_positive,phenotype present,5,0000103,effect/phenotype,"Polyuria, nocturnal",'
    'HPO,0,1234,disease,type 2 diabetes,MONDO',
    "disease_protein,associated with,0,1234,disease,type 2 diabetes,MONDO,7,6934,gene/protein,TCF7L2,NCBI",
    "disease_protein,associated with,7,6934,gene/protein,TCF7L2,NCBI,0,1234,disease,type 2 diabetes,MONDO",
]


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def primekg(tmp_path: Path) -> str:
    return write(tmp_path / "kg.csv", [HEADER, *PRIMEKG_ROWS])


def test_primekg_loads_nodes_types_and_both_directions(primekg):
    store = build_store(read_graph("primekg", [primekg]))
    assert store.num_nodes == 4 and store.num_edges == 6
    assert store.type_names == ("disease", "drug", "effect/phenotype", "gene/protein")
    assert store.rel_names == ("disease_phenotype_positive", "disease_protein", "indication")
    names = {store.name(v): store.type_of(v) for v in range(store.num_nodes)}
    assert names == {"type 2 diabetes": "disease", "Metformin": "drug",
                     "Polyuria, nocturnal": "effect/phenotype", "TCF7L2": "gene/protein"}
    dm = store.node_by_name["disease", "type 2 diabetes"]
    assert store.node_id(dm) == "MONDO:1234"
    indication = store.rel_id("indication")
    assert [store.name(v) for v in store.neighbours(dm, indication)] == ["Metformin"]
    metformin = store.node_by_name["drug", "Metformin"]
    assert [store.name(v) for v in store.neighbours(metformin, indication)] == ["type 2 diabetes"]


def test_csr_rows_sorted_by_relation_then_type_and_filters_use_them(tmp_path):
    lines = ["head\thead_type\trelation\ttail\ttail_type"]
    lines += [f"hub\tx\tr{i % 3}\tn{i}\t{'ab'[i % 2]}" for i in range(12)]
    store = build_store(read_graph("triples", [write(tmp_path / "t.tsv", lines)]))
    hub = store.node_by_name["x", "hub"]
    row = slice(store.indptr[hub], store.indptr[hub + 1])
    keys = list(zip(store.rel[row], store.node_type[store.indices[row]], store.indices[row]))
    assert keys == sorted(keys)
    r1, b = store.rel_id("r1"), store.type_id("b")
    assert sorted(store.name(v) for v in store.neighbours(hub, r1)) == ["n1", "n10", "n4", "n7"]
    assert sorted(store.name(v) for v in store.neighbours(hub, r1, b)) == ["n1", "n7"]
    assert sorted(store.name(v) for v in store.neighbours(hub, None, b)) == [
        "n1", "n11", "n3", "n5", "n7", "n9"]


def test_store_round_trip_is_one_npz_without_pickles(primekg, tmp_path):
    store = build_store(read_graph("primekg", [primekg]))
    path = tmp_path / "g.npz"
    save_store(store, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", "kg.csv"]
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
    again = load_store(path)
    assert again.type_names == store.type_names and again.rel_names == store.rel_names
    for field in ("node_type", "indptr", "indices", "rel", "name_blob", "name_offsets"):
        assert np.array_equal(getattr(again, field), getattr(store, field))
    assert again.indices.dtype == np.int32 and again.indptr.dtype == np.int64
    assert again.rel.dtype == np.int8 and again.node_type.dtype == np.int8
    assert [again.name(v) for v in range(again.num_nodes)] == [
        store.name(v) for v in range(store.num_nodes)]


def test_to_networkx_keeps_every_edge_with_its_relation(primekg):
    store = build_store(read_graph("primekg", [primekg]))
    graph = to_networkx(store)
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 6
    dm = store.node_by_name["disease", "type 2 diabetes"]
    assert graph.nodes[dm]["type"] == "disease"
    assert sorted(d["relation"] for _, _, d in graph.out_edges(dm, data=True)) == [
        "disease_phenotype_positive", "disease_protein", "indication"]


def test_hetionet_nodes_and_sif_edges(tmp_path):
    nodes = write(tmp_path / "nodes.tsv", [
        "id\tname\tkind", "Compound::DB00331\tMetformin\tCompound",
        "Disease::DOID:9352\ttype 2 diabetes mellitus\tDisease", "Gene::6934\tTCF7L2\tGene",
        "Gene::3630\tINS\tGene"])
    edges = write(tmp_path / "edges.sif", [
        "source\tmetaedge\ttarget", "Compound::DB00331\tCtD\tDisease::DOID:9352",
        "Disease::DOID:9352\tDaG\tGene::6934", "Gene::6934\tGr>G\tGene::3630"])
    store = build_store(read_graph("hetionet", [nodes, edges]))
    assert store.type_names == ("Compound", "Disease", "Gene")
    # issue 28: a metaedge is walked the way Hetionet writes it (CtD runs Compound -> Disease);
    # the other way is <metaedge>:rev, for every metaedge between two kinds or directed
    assert store.rel_names == ("CtD", "CtD:rev", "DaG", "DaG:rev", "Gr>G", "Gr>G:rev")
    assert store.num_edges == 6
    ins = store.node_by_name["Gene", "INS"]
    assert [store.name(v) for v in store.neighbours(ins, store.rel_id("Gr>G:rev"))] == ["TCF7L2"]
    dm = store.node_by_name["Disease", "type 2 diabetes mellitus"]
    assert [store.name(v) for v in store.neighbours(dm, store.rel_id("CtD"))] == []
    assert [store.name(v) for v in store.neighbours(dm, store.rel_id("CtD:rev"))] == ["Metformin"]
    metformin = store.node_by_name["Compound", "Metformin"]
    assert [store.name(v) for v in store.neighbours(metformin, store.rel_id("CtD"))] == [
        "type 2 diabetes mellitus"]


def test_an_undirected_hetionet_metaedge_within_one_kind_reads_the_same_both_ways(tmp_path):
    nodes = write(tmp_path / "nodes.tsv", ["id\tname\tkind", "G1\tTCF7L2\tGene", "G2\tINS\tGene"])
    edges = write(tmp_path / "edges.sif", ["source\tmetaedge\ttarget", "G1\tGiG\tG2"])
    store = build_store(read_graph("hetionet", [nodes, edges]))
    assert store.rel_names == ("GiG",)
    ins = store.node_by_name["Gene", "INS"]
    assert [store.name(v) for v in store.neighbours(ins, store.rel_id("GiG"))] == ["TCF7L2"]


@pytest.mark.parametrize("header", [True, False])
def test_triples_with_or_without_header(tmp_path, header):
    lines = ["metformin\tdrug\tindication\ttype 2 diabetes\tdisease",
             "type 2 diabetes\tdisease\tdisease_phenotype_positive\tpolyuria\teffect/phenotype"]
    if header:
        lines.insert(0, "head\thead_type\trelation\ttail\ttail_type")
    store = build_store(read_graph("triples", [write(tmp_path / "t.tsv", lines)]))
    assert store.num_nodes == 3 and store.num_edges == 4
    dm = store.node_by_name["disease", "type 2 diabetes"]
    assert sorted(store.name(v) for v in store.neighbours(dm)) == ["metformin", "polyuria"]
    # a fact is head -> tail under its relation, tail -> head under <relation>:rev (issue 26)
    assert store.rel_names == ("disease_phenotype_positive", "disease_phenotype_positive:rev",
                               "indication", "indication:rev")
    assert [store.name(v) for v in store.neighbours(dm, store.rel_id("indication"))] == []
    assert [store.name(v) for v in store.neighbours(dm, store.rel_id("indication:rev"))] == ["metformin"]


# ---------------------------------------------------------------- bad input, word for word


def test_primekg_unknown_column(tmp_path):
    path = write(tmp_path / "kg.csv", [HEADER + ",weight", PRIMEKG_ROWS[0] + ",1"])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value) == (
        f"{path}:1: unknown column 'weight' (expected: relation, display_relation, x_index, x_id, "
        "x_type, x_name, x_source, y_index, y_id, y_type, y_name, y_source)")


def test_primekg_missing_column(tmp_path):
    path = write(tmp_path / "kg.csv", [HEADER.replace(",x_type", ""), "a"])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value) == f"{path}:1: column 'x_type' is missing"


def test_primekg_bad_index_names_line_and_column(tmp_path):
    bad = PRIMEKG_ROWS[1].replace("indication,indication,0,", "indication,indication,zero,")
    path = write(tmp_path / "kg.csv", [HEADER, PRIMEKG_ROWS[0], bad])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value) == f"{path}:3: column 'x_index' must be a non-negative integer, got 'zero'"


def test_primekg_row_with_extra_field(tmp_path):
    path = write(tmp_path / "kg.csv", [HEADER, PRIMEKG_ROWS[0], PRIMEKG_ROWS[1] + ",extra"])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value) == f"{path}:3: expected 12 fields, found 13"


def test_primekg_empty_name(tmp_path):
    path = write(tmp_path / "kg.csv", [HEADER, PRIMEKG_ROWS[0].replace(",Metformin,", ",,")])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value) == f"{path}:2: column 'x_name' is empty"


def test_hetionet_edge_to_unknown_node(tmp_path):
    nodes = write(tmp_path / "nodes.tsv", ["id\tname\tkind", "Gene::1\tA1BG\tGene"])
    edges = write(tmp_path / "edges.sif", ["source\tmetaedge\ttarget", "Gene::1\tGiG\tGene::9"])
    with pytest.raises(JobError) as err:
        read_graph("hetionet", [nodes, edges])
    assert str(err.value) == f"{edges}:2: column 'target': node 'Gene::9' is not in {nodes}"


def test_triples_wrong_field_count(tmp_path):
    path = write(tmp_path / "t.tsv", ["metformin\tdrug\tindication\ttype 2 diabetes"])
    with pytest.raises(JobError) as err:
        read_graph("triples", [path])
    assert str(err.value) == (f"{path}:1: expected 5 tab-separated fields (head, head_type, "
                              "relation, tail, tail_type), found 4")


def test_missing_store_file(tmp_path):
    with pytest.raises(JobError) as err:
        load_store(tmp_path / "none.npz")
    assert str(err.value) == f"{tmp_path / 'none.npz'}: graph store not found (run the graph_load job first)"


def test_wrong_number_of_paths_for_hetionet():
    with pytest.raises(JobError) as err:
        read_graph("hetionet", ["nodes.tsv"])
    assert str(err.value) == "field 'paths': hetionet takes a nodes TSV and an edges SIF, got 1 paths"


# ---------------------------------------------------------------- the embedded KG

KG = REPO / "data" / "medkg" / "kg.csv"


def test_build_script_reproduces_committed_kg_csv():
    done = subprocess.run([sys.executable, str(REPO / "data" / "medkg" / "build_kg.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_embedded_kg_meets_size_and_shape_thresholds():
    store = build_store(read_graph("primekg", [str(KG)]))
    types = store.type_counts()
    assert set(types) == {"disease", "effect/phenotype", "drug", "gene/protein", "anatomy"}
    assert sum(types.values()) >= 300 and store.num_edges >= 1000
    rels = store.relation_counts()
    for relation in ("indication", "contraindication", "off-label use", "disease_phenotype_positive",
                     "drug_effect", "disease_protein", "drug_protein", "anatomy_protein_present",
                     "disease_disease"):
        assert rels[relation] > 0, relation
    dpp = store.rel_id("disease_phenotype_positive")
    diseases = np.flatnonzero(store.node_type == store.type_id("disease"))
    per_disease = [len(store.neighbours(v, dpp)) for v in diseases]
    with_phenotypes = [n for n in per_disease if n]
    assert 80 <= len(with_phenotypes) and min(with_phenotypes) >= 4 and max(with_phenotypes) <= 8
    phenotypes = np.flatnonzero(store.node_type == store.type_id("effect/phenotype"))
    shared = sum(len(store.neighbours(v, dpp)) >= 2 for v in phenotypes)
    assert shared >= 50  # the tiny spec asks "which disease presents with X": needs overlap


def test_embedded_kg_every_fact_in_both_directions():
    import csv

    with open(KG, encoding="utf-8") as handle:
        rows = {(r["relation"], r["x_index"], r["y_index"]) for r in csv.DictReader(handle)}
    assert all((rel, y, x) in rows for rel, x, y in rows)


def test_embedded_kg_holds_textbook_facts():
    store = build_store(read_graph("primekg", [str(KG)]))

    def linked(a_type, a, relation, b_type):
        node = store.node_by_name[a_type, a]
        return {store.name(v) for v in store.neighbours(node, store.rel_id(relation),
                                                         store.type_id(b_type))}

    assert {"polyuria", "polydipsia"} <= linked("disease", "type 2 diabetes mellitus",
                                                "disease_phenotype_positive", "effect/phenotype")
    assert "metformin" in linked("disease", "type 2 diabetes mellitus", "indication", "drug")
    assert "propranolol" in linked("disease", "asthma", "contraindication", "drug")
    assert "CFTR" in linked("disease", "cystic fibrosis", "disease_protein", "gene/protein")


# ---------------------------------------------------------------- the fast reader


def _arrays(store) -> dict[str, bytes]:
    from fleming_dsl.runtime.graph.store import _ARRAYS

    return {name: getattr(store, name).tobytes() for name in _ARRAYS} | {
        "types": repr(store.type_names).encode(), "rels": repr(store.rel_names).encode()}


def _synthetic_primekg(path: Path, nodes: int = 3000, rows: int = 40_000, seed: int = 3) -> str:
    """PrimeKG layout with quoted names holding commas and quotes, several relations and
    types, both directions, and nodes first met as y."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = ["disease", "drug", "gene/protein", "effect/phenotype"]
    rels = ["indication", "contraindication", "target", "disease_phenotype_positive"]
    node_kind = rng.integers(0, len(kinds), nodes)
    lines = [HEADER]
    for _ in range(rows // 2):
        x, y = (int(v) for v in rng.integers(0, nodes, 2))
        rel = rels[int(rng.integers(0, len(rels)))]

        def side(v: int) -> str:
            name = f'"node {v}, ""quoted"""' if v % 7 == 0 else f"node {v}"
            return f"{v},ID{v},{kinds[node_kind[v]]},{name},SRC{v % 3}"

        lines.append(f"{rel},{rel} shown,{side(x)},{side(y)}")
        lines.append(f"{rel},{rel} shown,{side(y)},{side(x)}")
    return write(path, lines)


@pytest.mark.parametrize("which", ["medkg", "synthetic"])
def test_fast_primekg_reader_gives_the_same_arrays_as_the_pandas_reader(which, tmp_path):
    from fleming_dsl.runtime.graph import io

    path = str(KG) if which == "medkg" else _synthetic_primekg(tmp_path / "kg.csv")
    fast = build_store(io._read_primekg_arrow(path))  # raises _Fallback if it gave up
    slow = build_store(io._read_primekg_pandas(path))
    assert fast.num_edges > 0 and _arrays(fast) == _arrays(slow)


def test_fast_hetionet_reader_gives_the_same_arrays_as_the_pandas_reader(tmp_path):
    import numpy as np
    import pandas as pd

    from fleming_dsl.runtime.graph import io

    rng = np.random.default_rng(5)
    kinds = ["Gene", "Compound", "Disease"]
    node_lines = ["id\tname\tkind"] + [f"{kinds[i % 3]}::{i}\tname {i}\t{kinds[i % 3]}"
                                       for i in range(500)]
    metaedges = ["GiG", "Gr>G", "CtD", "DaG", "CbG"]
    edge_lines = ["source\tmetaedge\ttarget"] + [
        f"{kinds[a % 3]}::{a}\t{metaedges[int(rng.integers(0, 5))]}\t{kinds[b % 3]}::{b}"
        for a, b in rng.integers(0, 500, (5000, 2))]
    nodes = write(tmp_path / "nodes.tsv", node_lines)
    edges = write(tmp_path / "edges.sif", edge_lines)
    fast = build_store(io.read_hetionet(nodes, edges))
    frame = pd.read_csv(nodes, sep="\t", dtype=str)
    number = pd.Series(np.arange(len(frame)), index=frame["id"].to_numpy())
    kind = pd.factorize(frame["kind"])[0]
    io._hetionet_edges_arrow(edges, frame["id"].tolist(), kind)  # raises _Fallback if it gave up
    srcs, dsts, codes, rels = io._hetionet_edges_pandas(edges, nodes, number, kind)
    names, remap = rels.sorted_remap()
    slow = build_store(io.EdgeList(
        type_names=sorted(kinds), rel_names=names,
        node_type=np.searchsorted(np.array(sorted(kinds), dtype=object), frame["kind"].to_numpy()),
        names=frame["name"].tolist(), ids=frame["id"].tolist(), src=np.concatenate(srcs),
        dst=np.concatenate(dsts), rel=remap[np.concatenate(codes)]))
    assert {"Gr>G:rev", "CtD:rev", "GiG:rev"} <= set(fast.rel_names)  # GiG between kinds here too
    assert _arrays(fast) == _arrays(slow)


def test_primekg_blank_line_is_a_located_error(tmp_path):
    path = write(tmp_path / "kg.csv", [HEADER, PRIMEKG_ROWS[0], "", PRIMEKG_ROWS[1]])
    with pytest.raises(JobError) as err:
        read_graph("primekg", [path])
    assert str(err.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize("header", [True, False])
def test_fast_triples_reader_gives_the_same_arrays_as_the_pandas_reader(header, tmp_path):
    import numpy as np

    from fleming_dsl.runtime.graph import io

    rng = np.random.default_rng(11)
    kinds = ["disease", "drug", "Gene", "effect/phenotype", "é-type"]
    rels = ["treats", "causes", "associated_with", "Zeta", "ßrel"]
    names = [f"name {i}" if i % 5 else f"Ñame_{i} ü" for i in range(400)]
    lines = ["head\thead_type\trelation\ttail\ttail_type"] if header else []
    lines += [f"{names[a]}\t{kinds[a % 5]}\t{rels[int(r)]}\t{names[b]}\t{kinds[b % 4]}"
              for (a, b), r in zip(rng.integers(0, 400, (3000, 2)), rng.integers(0, 5, 3000))]
    first = write(tmp_path / "a.tsv", lines[:1500])
    second = write(tmp_path / "b.tsv", (lines[:1] if header else []) + lines[1500:])
    paths, headers = [first, second], [header, header]
    fast = build_store(io._read_triples_arrow(paths, headers))  # raises _Fallback if it gave up
    slow = build_store(io._read_triples_pandas(paths, headers))
    assert fast.num_edges > 5000 and _arrays(fast) == _arrays(slow)
    assert _arrays(build_store(read_graph("triples", paths))) == _arrays(slow)


def test_triples_blank_line_is_a_located_error(tmp_path):
    path = write(tmp_path / "t.tsv", ["a\tdisease\tcauses\tb\tphenotype", "",
                                      "c\tdisease\tcauses\td\tphenotype"])
    with pytest.raises(JobError) as err:
        read_graph("triples", [path])
    assert str(err.value) == f"{path}:2: column 'head' is empty"
