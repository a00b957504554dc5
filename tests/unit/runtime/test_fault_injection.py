"""Bad inputs and torn state (issue 11, fault injection): each job fails with one clear line that
names the file, leaves no output, and never shows a traceback; an empty result is an error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from paths import REPO

from fleming_dsl.errors import JobError
from fleming_dsl.ir import Backend
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.runtime.jobs import run_job

KG_HEADER = ("relation,display_relation,x_index,x_id,x_type,x_name,x_source,y_index,y_id,y_type,"
             "y_name,y_source\n")


def _base(tmp_path: Path, job: str, output: str) -> dict:
    return {"job": job, "experiment": "t", "seed": 1, "meta": str(tmp_path / f"{job}.meta.json"),
            "output": str(tmp_path / output)}


def _write(tmp_path: Path, cfg: jc.JobBase) -> str:
    path = tmp_path / f"{cfg.job}.json"
    path.write_text(cfg.model_dump_json())
    return str(path)


def _fails(tmp_path: Path, kind: str, config: str) -> str:
    with pytest.raises(JobError) as info:
        run_job(kind, config)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("out")]
    assert leftovers == [], leftovers
    return message


def graph_load(tmp_path: Path, kg: Path) -> str:
    return _write(tmp_path, jc.GraphLoadJob(**_base(tmp_path, "load", "out.npz"), format="primekg",
                                            paths=(str(kg),), inputs=(str(kg),)))


def sample(tmp_path: Path, graph: Path, **changes) -> str:
    fields = dict(**_base(tmp_path, "sample", "out.jsonl"), kind="sample", graph=str(graph), start_type="disease",
                  relations=("disease_phenotype_positive",), node_types=("effect/phenotype",),
                  hops_min=1, hops_max=1, weight="uniform", alpha=0.75, mask="anchor", distractors=1,
                  near_distractors=False, count=5, inputs=[str(graph)])
    fields.update(changes)
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(fields))
    return str(path)


def test_kg_csv_with_invalid_utf8(tmp_path: Path) -> None:
    kg = tmp_path / "kg.csv"
    kg.write_bytes(KG_HEADER.encode() + b"indication,ind,0,a,drug,\xff\xfe,s,1,b,disease,flu,s\n")
    assert _fails(tmp_path, "graph_load", graph_load(tmp_path, kg)) == (
        f"{kg}:2: not UTF-8 text (invalid start byte at byte 24 of the line)")


def test_a_folder_where_a_file_is_expected(tmp_path: Path) -> None:
    kg = tmp_path / "kg.csv"
    kg.mkdir()
    assert _fails(tmp_path, "graph_load", graph_load(tmp_path, kg)) == (
        f"{kg}: is a folder, expected a file (field 'paths')")


def test_header_only_kg_csv(tmp_path: Path) -> None:
    kg = tmp_path / "kg.csv"
    kg.write_text(KG_HEADER)
    assert _fails(tmp_path, "graph_load", graph_load(tmp_path, kg)) == (
        f"{kg}: no edges (the file has a header but no rows)")


def test_zero_byte_and_truncated_graph_store(tmp_path: Path) -> None:
    store = tmp_path / "g.npz"
    store.write_bytes(b"")
    assert _fails(tmp_path, "sample", sample(tmp_path, store)) == (
        f"{store}: is empty (0 bytes) (field 'graph')")
    run_job("graph_load", graph_load(tmp_path, REPO / "data" / "medkg" / "kg.csv"))
    whole = (tmp_path / "out.npz").read_bytes()
    (tmp_path / "out.npz").unlink()
    store.write_bytes(whole[: len(whole) // 2])
    assert _fails(tmp_path, "sample", sample(tmp_path, store)).startswith(
        f"{store}: not a graph store .npz (")


def test_negative_and_impossible_counts_in_a_job_config(tmp_path: Path) -> None:
    store = tmp_path / "g.npz"
    store.write_bytes(b"x")
    assert _fails(tmp_path, "sample", sample(tmp_path, store, count=-5)).endswith(
        "invalid job config: field 'count': Input should be greater than or equal to 1")
    assert _fails(tmp_path, "sample", sample(tmp_path, store, count=10**18)).endswith(
        "invalid job config: field 'count': Input should be less than or equal to 100000000")


def test_nan_learning_rate_in_a_job_config(tmp_path: Path) -> None:
    cfg = json.loads((REPO / "generated" / "tiny" / "jobs" / "sft_cold_start.json").read_text())
    cfg["training"]["lr"] = math.nan
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(cfg))  # json writes NaN, as a hand edit would
    assert _fails(tmp_path, "sft", str(path)) == (
        f"{path}: invalid job config: field 'training.lr': Input should be a finite number")


def test_zero_byte_samples_file(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b"")
    cfg = jc.SynthesizeJob(**_base(tmp_path, "synthesize", "out.jsonl"), samples=str(samples),
                           prompt=str(REPO / "prompts" / "question.j2"),
                           teacher=jc.Generator(model="", backend=Backend(kind="template")),
                           cache_dir=str(tmp_path / "cache"),
                           inputs=(str(samples), str(REPO / "prompts" / "question.j2")))
    assert _fails(tmp_path, "synthesize", _write(tmp_path, cfg)) == (
        f"{samples}: is empty (0 bytes) (field 'samples')")


def test_zero_byte_dataset(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_bytes(b"")
    cfg = jc.FilterJob(**_base(tmp_path, "filter", "out.jsonl"),
                       source=jc.DataSource(path=str(data), format="mcq"), steps=(jc.FormatStep(),),
                       cache_dir=str(tmp_path / "cache"), review=str(tmp_path / "out.review.jsonl"),
                       inputs=(str(data),))
    assert _fails(tmp_path, "filter", _write(tmp_path, cfg)) == (
        f"{data}: is empty (0 bytes) (field 'source')")


def test_a_filter_that_keeps_nothing_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"id": "1", "question": "q?", "options": {"A": "a", "B": "a"},
                                "answer": "A"}) + "\n")
    cfg = jc.FilterJob(**_base(tmp_path, "filter", "out.jsonl"),
                       source=jc.DataSource(path=str(data), format="items"), steps=(jc.FormatStep(),),
                       cache_dir=str(tmp_path / "cache"), review=str(tmp_path / "out.review.jsonl"))
    assert _fails(tmp_path, "filter", _write(tmp_path, cfg)) == (
        "filter: no items left of 1 (removed: format 1); nothing for later jobs to use")
