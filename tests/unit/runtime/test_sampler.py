"""The metapath sampler: determinism, hop ranges, metapath types, weighting, masking, distractors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.graph.io import read_graph
from fleming_dsl.runtime.graph.sampler import (
    Walker,
    WalkSpec,
    WalkStats,
    hop_positions,
    sample_rows,
)
from fleming_dsl.runtime.graph.store import GraphStore, build_store

DPP = "disease_phenotype_positive"


def store_of(tmp_path: Path, triples: list[tuple[str, str, str, str, str]]) -> GraphStore:
    path = tmp_path / "t.tsv"
    path.write_text("".join("\t".join(t) + "\n" for t in triples), encoding="utf-8")
    return build_store(read_graph("triples", [str(path)]))


@pytest.fixture(scope="module")
def medkg() -> GraphStore:
    return build_store(read_graph("primekg", [str(REPO / "data" / "medkg" / "kg.csv")]))


def rows_of(store, spec, count=200, seed=7, mask="anchor", k=3, near=True, stats=None):
    return sample_rows(store, spec, count=count, seed=seed, mask=mask, distractors=k, near=near,
                       stats=stats or WalkStats())


RARE_DX = WalkSpec("disease", (DPP,), ("effect/phenotype",), 1, 2, "inverse_degree", 0.75)


def test_same_seed_same_rows_other_seed_other_rows(medkg):
    first = rows_of(medkg, RARE_DX, seed=11)
    assert first == rows_of(medkg, RARE_DX, seed=11)
    assert first != rows_of(medkg, RARE_DX, seed=12)
    assert len(first) == 200 and len({r["id"] for r in first}) == 200


def test_paths_are_distinct_and_never_revisit(medkg):
    rows = rows_of(medkg, RARE_DX, count=400)
    keys = [tuple(s["node"] for s in r["path"]) + tuple(r["relations"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert all(len({s["node"] for s in r["path"]}) == len(r["path"]) for r in rows)


def test_hop_range_honoured_and_both_ends_used(medkg):
    spec = WalkSpec("disease", (DPP,), ("effect/phenotype",), 2, 4)
    hops = Counter(len(r["relations"]) for r in rows_of(medkg, spec, count=300))
    assert set(hops) == {2, 3, 4}


def test_open_metapath_walks_back_along_itself(medkg):
    rows = rows_of(medkg, WalkSpec("disease", (DPP,), ("effect/phenotype",), 3, 3), count=100)
    for row in rows:
        assert [s["type"] for s in row["path"]] == ["disease", "effect/phenotype"] * 2
        assert row["relations"] == [DPP] * 3


def test_two_step_metapath_types_and_relations(medkg):
    spec = WalkSpec("drug", ("indication", DPP), ("disease", "effect/phenotype"), 2, 3)
    rows = rows_of(medkg, spec, count=100, mask="target")
    for row in rows:
        types = [s["type"] for s in row["path"]]
        assert types == ["drug", "disease", "effect/phenotype", "disease"][:len(types)]
        assert row["relations"] == ["indication", DPP, DPP][:len(row["relations"])]


def test_any_relation_with_type_filter(medkg):
    rows = rows_of(medkg, WalkSpec("drug", (None,), ("gene/protein",), 1, 1), count=50)
    assert rows and all(r["path"][1]["type"] == "gene/protein" for r in rows)
    assert {r["relations"][0] for r in rows} == {"drug_protein"}


def test_hop_positions_cycle_closed_and_bounce_open_patterns():
    assert hop_positions(2, 4, closed=True) == [(0, 1), (1, 2), (0, 1), (1, 2)]
    assert hop_positions(1, 3, closed=False) == [(0, 1), (0, 0), (0, 1)]
    assert hop_positions(2, 5, closed=False) == [(0, 1), (1, 2), (1, 1), (0, 0), (0, 1)]


@pytest.mark.parametrize("mask,index", [("anchor", 0), ("target", -1), (1, 1)])
def test_masked_entity_is_the_answer(medkg, mask, index):
    for row in rows_of(medkg, RARE_DX, count=100, mask=mask):
        m = row["mask_index"]
        assert m == (len(row["path"]) - 1 if index == -1 else index)
        assert row["answer"] == row["path"][m]["node"]
        assert row["answer_type"] == row["path"][m]["type"]


def test_distractors_same_type_not_the_answer_not_repeated_and_really_wrong(medkg):
    dpp = medkg.rel_id(DPP)
    for row in rows_of(medkg, RARE_DX, count=300):
        wrong = row["distractors"]
        assert len(wrong) == 3 and len(set(wrong)) == 3 and row["answer"] not in wrong
        assert all((row["answer_type"], d) in medkg.node_by_name for d in wrong)
        # none of them presents with the phenotype the question names
        phenotype = medkg.node_by_name["effect/phenotype", row["path"][1]["node"]]
        fits = {medkg.name(v) for v in medkg.neighbours(phenotype, dpp)}
        assert not fits & set(wrong)


VIGNETTE = WalkSpec("effect/phenotype", (DPP, DPP), ("disease", "effect/phenotype"), 2, 2, "uniform")


def test_clues_add_findings_of_the_masked_disease_and_keep_distractors_clear_of_them(medkg):
    from fleming_dsl.runtime.teachers.verbalise import path_facts

    dpp = medkg.rel_id(DPP)
    plain = rows_of(medkg, VIGNETTE, count=100, mask=1)
    rows = sample_rows(medkg, VIGNETTE, count=100, seed=7, mask=1, distractors=3, near=True,
                       stats=WalkStats(), clues=4)
    assert [r["path"] for r in rows] == [r["path"] for r in plain]  # the same walks, more clues
    assert all("extra" not in r for r in plain)
    for row in rows:
        disease = medkg.node_by_name["disease", row["answer"]]
        findings = {medkg.name(v) for v in medkg.neighbours(disease, dpp)}
        clues = path_facts(row)["clues"]
        extra = [e["node"] for e in row["extra"]]
        assert len(clues) == min(4, len(findings)) and len(set(clues)) == len(clues)
        assert set(extra) <= findings - {row["path"][0]["node"], row["path"][2]["node"]}
        assert clues[2:] == [f"presents with {name}" for name in extra]
        for name in extra:  # no distractor presents with a finding the question shows
            shown = medkg.node_by_name["effect/phenotype", name]
            assert not {medkg.name(v) for v in medkg.neighbours(shown, dpp)} & set(row["distractors"])
    again = sample_rows(medkg, VIGNETTE, count=100, seed=7, mask=1, distractors=3, near=True,
                        stats=WalkStats(), clues=4)
    assert again == rows


def test_near_distractors_come_from_the_neighbourhood_first(tmp_path):
    # d0 - p0 - d1 - p1 - d2 ... : a chain of diseases sharing phenotypes, plus far-away diseases
    triples = [(f"d{i}", "disease", DPP, f"p{i}", "phenotype") for i in range(6)]
    triples += [(f"d{i + 1}", "disease", DPP, f"p{i}", "phenotype") for i in range(5)]
    triples += [(f"far{i}", "disease", DPP, f"q{i}", "phenotype") for i in range(30)]
    store = store_of(tmp_path, triples)
    spec = WalkSpec("disease", (DPP,), ("phenotype",), 1, 1, "uniform")
    inner = {"d1", "d2", "d3", "d4"}  # each has a sibling sharing its *other* phenotype
    rows = rows_of(store, spec, count=40, k=1)
    assert sum(r["answer"] in inner for r in rows) >= 5
    for row in rows:
        if row["answer"] in inner:
            assert row["distractors"][0] in {"d0", "d1", "d2", "d3", "d4", "d5"}, row
    far_only = rows_of(store, spec, count=40, k=1, near=False)
    assert any(r["distractors"][0].startswith("far") for r in far_only
               if r["path"][0]["node"].startswith("d"))


def test_walk_skipped_when_type_has_too_few_entities(tmp_path):
    store = store_of(tmp_path, [("a", "disease", DPP, "x", "phenotype"),
                                ("b", "disease", DPP, "y", "phenotype")])
    stats = WalkStats()
    rows = rows_of(store, WalkSpec("disease", (DPP,), ("phenotype",), 1, 1), count=5, k=2,
                   stats=stats)
    assert rows == [] and stats.short_of_distractors == 2


def hub_graph(tmp_path: Path) -> GraphStore:
    """start s joins a leaf L (degree 1) and a hub H (degree 50)."""
    triples = [("s", "a", "r", "L", "b"), ("s", "a", "r", "H", "b")]
    triples += [("H", "b", "other", f"x{i}", "c") for i in range(49)]
    return store_of(tmp_path, triples)


def ends(store, spec, n=20_000, seed=3):
    paths, _, hops = Walker(store, spec).batch(n, seed)
    assert (hops == 1).all()
    return Counter(store.name(int(v)) for v in paths[:, 1])


def test_inverse_degree_favours_low_degree_neighbours(tmp_path):
    store = hub_graph(tmp_path)
    alpha = 0.75
    counts = ends(store, WalkSpec("a", ("r",), ("b",), 1, 1, "inverse_degree", alpha))
    expected = 1.0 / (1.0 + 50.0 ** -alpha)  # P(L) with weights 1^-a : 50^-a
    share = counts["L"] / 20_000
    assert abs(share - expected) < 0.01, (share, expected)
    uniform = ends(store, WalkSpec("a", ("r",), ("b",), 1, 1, "uniform", alpha))
    assert abs(uniform["L"] / 20_000 - 0.5) < 0.02


def test_inverse_degree_favours_rare_start_nodes(tmp_path):
    # two diseases: rare (1 phenotype) and common (16 phenotypes)
    triples = [("rare", "disease", DPP, "p0", "phenotype")]
    triples += [("common", "disease", DPP, f"p{i}", "phenotype") for i in range(1, 17)]
    store = store_of(tmp_path, triples)
    spec = WalkSpec("disease", (DPP,), ("phenotype",), 1, 1, "inverse_degree", 1.0)
    paths, _, _ = Walker(store, spec).batch(20_000, 5)
    starts = Counter(store.name(int(v)) for v in paths[:, 0])
    assert abs(starts["rare"] / 20_000 - 16 / 17) < 0.01


def test_unknown_type_and_relation_are_located_errors(medkg):
    with pytest.raises(JobError) as err:
        Walker(medkg, WalkSpec("diseas", (DPP,), ("effect/phenotype",), 1, 2), "g.npz")
    assert str(err.value) == ("g.npz: field 'start_type': node type 'diseas' is not in the graph; "
                              "did you mean 'disease'?")
    with pytest.raises(JobError) as err:
        Walker(medkg, WalkSpec("disease", ("has_symptom",), ("effect/phenotype",), 1, 2), "g.npz")
    assert str(err.value).startswith("g.npz: field 'relations': relation 'has_symptom' is not in "
                                     "the graph; known: anatomy_anatomy, ")


def test_mask_index_beyond_shortest_path_is_an_error(medkg):
    with pytest.raises(JobError) as err:
        sample_rows(medkg, RARE_DX, count=5, seed=1, mask=2, distractors=3, near=True,
                    stats=WalkStats(), where="g.npz")
    assert str(err.value) == "g.npz: field 'mask': index 2 is outside the shortest path (0..1)"


def test_walk_kernel_matches_python_reference_on_every_hop(medkg):
    """Every sampled hop is a real edge of the stated relation (checked against the CSR)."""
    spec = WalkSpec(None, (None,), (None,), 1, 4, "inverse_degree", 0.5)
    paths, rels, hops = Walker(medkg, spec).batch(2000, 9)
    for path, rel, n in zip(paths, rels, hops):
        for h in range(max(int(n), 0)):
            assert path[h + 1] in medkg.neighbours(int(path[h]), int(rel[h]))
    assert (hops >= 1).mean() > 0.5  # long-tail weighting walks into leaves: some dead-end


def test_start_type_that_cannot_take_the_first_step(medkg):
    with pytest.raises(JobError) as err:
        Walker(medkg, WalkSpec("anatomy", (DPP,), ("effect/phenotype",), 1, 2), "g.npz")
    assert str(err.value) == ("g.npz: field 'start_type': no node of type 'anatomy' has an edge "
                              "matching the first step of the path")


@pytest.mark.parametrize("relation", ["r", None])  # alias tables, and the open-relation path
def test_neighbour_shares_follow_degree_power(tmp_path, relation):
    # s joins m0..m4 whose degrees are 1, 2, 4, 8, 16 (extra edges to leaves of another type)
    triples = [("s", "a", "r", f"m{i}", "b") for i in range(5)]
    triples += [(f"m{i}", "b", "x", f"leaf{i}_{j}", "c") for i in range(5) for j in range(2**i - 1)]
    store = store_of(tmp_path, triples)
    alpha = 1.0
    paths, _, _ = Walker(store, WalkSpec("a", (relation,), ("b",), 1, 1, "inverse_degree",
                                         alpha)).batch(40_000, 1)
    counts = Counter(store.name(int(v)) for v in paths[:, 1])
    weights = np.array([2.0 ** -i for i in range(5)])
    expected = weights / weights.sum()
    observed = np.array([counts[f"m{i}"] for i in range(5)]) / 40_000
    assert np.abs(observed - expected).max() < 0.01, (observed, expected)


def test_pattern_already_repeated_to_hops_max_means_the_same_walk(medkg):
    once = rows_of(medkg, WalkSpec("disease", (DPP,), ("effect/phenotype",), 1, 2), count=50)
    repeated = WalkSpec("disease", (DPP, DPP), ("effect/phenotype", "effect/phenotype"), 1, 2)
    assert rows_of(medkg, repeated, count=50) == once


@pytest.mark.parametrize("others", [2, 12])  # a block weighed explicitly, one drawn by rejection
def test_walking_back_skips_the_path_and_keeps_the_weighting(tmp_path, others):
    # d0..d{others} all present with phenotype p; d_j also has 2**j - 1 other edges (degree 2**j)
    n = others + 1
    triples = [(f"d{j}", "disease", DPP, "p", "phenotype") for j in range(n)]
    triples += [(f"d{j}", "disease", "x", f"leaf{j}_{i}", "c") for j in range(n) for i in range(2**j - 1)]
    store = store_of(tmp_path, triples)
    walks = 40_000
    paths, _, hops = Walker(store, WalkSpec("disease", (DPP,), ("phenotype",), 2, 2,
                                            "inverse_degree", 1.0)).batch(walks, 4)
    assert (hops == 2).all() and (paths[:, 2] != paths[:, 0]).all()
    number = {store.node_by_name["disease", f"d{j}"]: j for j in range(n)}
    weight = 2.0 ** -np.arange(n)
    start_counts = np.bincount([number[int(v)] for v in paths[:, 0]], minlength=n)
    # the end given the start is the start's rivals by weight: the start itself is off limits
    expected = sum(c * np.where(np.arange(n) == s, 0.0, weight) / (weight.sum() - weight[s])
                   for s, c in enumerate(start_counts)) / walks
    observed = np.bincount([number[int(v)] for v in paths[:, 2]], minlength=n) / walks
    assert np.abs(observed - expected).max() < 0.01, (observed, expected)
    assert abs(start_counts[0] / walks - weight[0] / weight.sum()) < 0.01


def test_stuck_walk_keeps_its_partial_path(tmp_path):
    # a leaf's only way back is where it came from
    store = store_of(tmp_path, [("s", "a", "r", "L", "b")])
    paths, rels, hops = Walker(store, WalkSpec("a", ("r",), ("b",), 2, 2)).batch(50, 0)
    s, leaf = store.node_by_name["a", "s"], store.node_by_name["b", "L"]
    assert (hops == -1).all()
    assert paths.tolist() == [[s, leaf, -1]] * 50 and rels.tolist() == [[0, -1]] * 50


@pytest.mark.parametrize("seed", [0, 5, -3, 2**70])
def test_batches_repeat_for_a_seed_whatever_the_batch_size(medkg, seed):
    walker = Walker(medkg, WalkSpec("drug", ("indication", DPP), ("disease", "effect/phenotype"),
                                    2, 4))
    for size in (1, 31, 33, 100):  # around the lockstep group size
        first = walker.batch(size, seed)
        again = walker.batch(size, seed)
        assert all((a == b).all() for a, b in zip(first, again))
        paths, rels, hops = first
        assert paths.shape == (size, 5) and rels.shape == (size, 4) and hops.shape == (size,)
        assert set(hops.tolist()) <= {-1, 2, 3, 4}
    assert not (walker.batch(100, seed)[0] == walker.batch(100, seed + 1)[0]).all()
