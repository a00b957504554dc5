"""graph_load and sample end to end through `fleming_dsl.runtime.jobs.run_job` with config JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import GraphLoadJob, SampleJob
from fleming_dsl.runtime.io import read_jsonl
from fleming_dsl.runtime.jobs import run_job

KG = str(REPO / "data" / "medkg" / "kg.csv")


def write_config(path: Path, cfg) -> str:
    path.write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
    return str(path)


def load_config(tmp_path: Path, paths=(KG,), fmt="primekg") -> GraphLoadJob:
    return GraphLoadJob(job="load_medkg", experiment="tiny", seed=7,
                        meta=str(tmp_path / "load.meta.json"), format=fmt, paths=tuple(paths),
                        inputs=tuple(paths), output=str(tmp_path / "medkg.npz"))


def sample_config(tmp_path: Path, **changes) -> SampleJob:
    fields = dict(job="rare_dx", experiment="tiny", seed=7, meta=str(tmp_path / "rare_dx.meta.json"),
                  graph=str(tmp_path / "medkg.npz"), start_type="disease",
                  relations=("disease_phenotype_positive",), node_types=("effect/phenotype",),
                  hops_min=1, hops_max=1, weight="inverse_degree", alpha=0.75, mask="anchor",
                  distractors=3, near_distractors=True, count=600,
                  output=str(tmp_path / "rare_dx.jsonl"))
    fields.update(changes)
    return SampleJob(**fields)


def test_graph_load_then_sample_like_the_tiny_spec(tmp_path):
    run_job("graph_load", write_config(tmp_path / "load.json", load_config(tmp_path)))
    meta = json.loads((tmp_path / "load.meta.json").read_text())
    assert meta["counts"]["nodes"] == 1197 and meta["counts"]["edges"] == 4080
    assert meta["counts"]["node_types"]["disease"] >= 80
    assert KG in meta["inputs"]

    cfg_path = write_config(tmp_path / "sample.json", sample_config(tmp_path))
    run_job("sample", cfg_path)
    rows = read_jsonl(tmp_path / "rare_dx.jsonl")
    assert len(rows) == 600
    first = rows[0]
    assert set(first) == {"id", "path", "relations", "mask_index", "answer", "answer_type",
                          "distractors", "seed"}
    assert first["id"] == "rare_dx-000000" and first["seed"] == 7
    assert first["answer_type"] == "disease" and first["mask_index"] == 0
    counts = json.loads((tmp_path / "rare_dx.meta.json").read_text())["counts"]
    assert counts["rows"] == 600 and counts["walks_attempted"] >= 600
    assert counts["walks_attempted"] == (counts["walks_distinct"] + counts["walks_duplicate"]
                                         + counts["walks_stuck"])

    before = (tmp_path / "rare_dx.jsonl").read_bytes()
    run_job("sample", cfg_path)
    assert (tmp_path / "rare_dx.jsonl").read_bytes() == before  # deterministic for the seed


def test_graph_load_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "kg.csv"
    bad.write_text("relation,x_index\nindication,0\n", encoding="utf-8")
    with pytest.raises(JobError) as err:
        run_job("graph_load", write_config(tmp_path / "load.json", load_config(tmp_path, [str(bad)])))
    assert str(err.value) == f"{bad}:1: column 'display_relation' is missing"
    assert not (tmp_path / "medkg.npz").exists()


def test_sample_with_unknown_relation_names_graph_and_field(tmp_path):
    run_job("graph_load", write_config(tmp_path / "load.json", load_config(tmp_path)))
    cfg = sample_config(tmp_path, relations=("disease_phenotype_postive",))
    with pytest.raises(JobError) as err:
        run_job("sample", write_config(tmp_path / "sample.json", cfg))
    assert str(err.value) == (
        f"{cfg.graph} (job rare_dx): field 'relations': relation 'disease_phenotype_postive' is "
        "not in the graph; did you mean 'disease_phenotype_positive'?")
    assert not Path(cfg.output).exists()


def test_sample_job_refuses_hops_past_its_metapath_before_writing_anything(tmp_path):
    """A hand-written config with hops longer than its metapath would walk past it (12 of 50
    paths ended at the wrong type); the job asks the check rule's question and stops."""
    run_job("graph_load", write_config(tmp_path / "load.json", load_config(tmp_path)))
    cfg = sample_config(tmp_path, hops_min=1, hops_max=3)
    with pytest.raises(JobError) as err:
        run_job("sample", write_config(tmp_path / "sample.json", cfg))
    assert str(err.value) == (
        "job rare_dx: fields 'hops_min'/'hops_max' (1..3): 'hops' goes up to 3, but the metapath "
        "has 1 step: a metapath is walked as written; write hops = 1, or write a longer path out "
        "step by step")
    assert "\n" not in str(err.value)
    assert not Path(cfg.output).exists() and not Path(cfg.meta).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["load.json", "load.meta.json", "medkg.npz",
                                                          "sample.json"]
