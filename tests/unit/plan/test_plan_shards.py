"""Sharding in the compiler: `shards = auto` resolved, N shard jobs + a gather planned, the
Snakefile rules they get, and what `fleming diff` says when only the cut changes."""

from __future__ import annotations

import json
from pathlib import Path

from flm_fixtures import MINIMAL, write_project
from plan_fixtures import tiny_experiment

from fleming_dsl import ir
from fleming_dsl.compiler import load_experiment
from fleming_dsl.emit.workflow import render, sha256_text
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan
from fleming_dsl.review import impact

OUT = "generated/tiny"


def cut(exp: ir.Experiment, synthesize: int = 1, distill: int = 1, difficulty: int = 1,
        evaluate: int = 1) -> ir.Experiment:
    """`exp` with each step's shard count set."""
    def sharded(node, count):
        return node.model_copy(update={"sharding": ir.Sharding(shards=count)})

    flt = exp.filters[0]
    steps = tuple(sharded(s, difficulty) if isinstance(s, ir.Difficulty) else s for s in flt.steps)
    return exp.model_copy(update={
        "synthesize": tuple(sharded(s, synthesize) for s in exp.synthesize),
        "distill": tuple(sharded(d, distill) for d in exp.distill),
        "filters": (flt.model_copy(update={"steps": steps}),),
        "evaluations": tuple(sharded(e, evaluate) for e in exp.evaluations)})


def test_auto_divides_the_declared_item_bound(tmp_path: Path) -> None:
    text = MINIMAL.replace("with teacher using ask\n",
                           "with teacher using ask { shards = auto  items_per_shard = 4 }\n", 1)
    text = text.replace('dataset train = mcq("train.jsonl")',
                        'dataset train = mcq("train.jsonl") { limit = 25 }')
    text = text.replace("distill cot from [q, train] with teacher using ask",
                        "distill cot from [q, train] with teacher using ask "
                        "{ shards = auto  items_per_shard = 10 }")
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert exp.synthesize[0].sharding == ir.Sharding(shards=3, items_per_shard=4)  # 10 paths
    assert exp.distill[0].sharding.shards == 4  # 10 questions + 25 rows, 10 a shard


def test_a_sharded_step_is_n_jobs_and_a_gather_writing_the_unsharded_outputs() -> None:
    whole = plan(tiny_experiment(), OUT)
    p = plan(cut(tiny_experiment(), distill=3), OUT)
    names = [job.name for job in p.jobs]
    assert names[names.index("synthesize_questions") + 1:names.index("filter_clean")] == [
        "distill_cot_shard1of3", "distill_cot_shard2of3", "distill_cot_shard3of3", "distill_cot"]
    unsharded = whole.job("distill_cot")
    gather = p.job("distill_cot")
    assert gather.kind == "gather" and gather.config.task == unsharded.config
    assert gather.outputs == unsharded.outputs and gather.data_config == unsharded.config
    parts = [f"runs/tiny/shards/distill_cot/distill_cot_shard{i}of3.jsonl" for i in (1, 2, 3)]
    assert gather.inputs == (*parts, *(f"{part}.meta.json" for part in parts))
    for index in range(3):
        shard = p.job(f"distill_cot_shard{index + 1}of3")
        assert shard.config.shard == jc.Shard(index=index, count=3, of="distill_cot")
        assert shard.inputs == unsharded.inputs and shard.resources == unsharded.resources
        assert [(o.path, o.temp) for o in shard.outputs] == [
            (parts[index], True), (f"{parts[index]}.meta.json", True)]
        assert shard.config.model_copy(update={
            "job": "distill_cot", "shard": None, "output": unsharded.config.output,
            "meta": unsharded.config.meta}) == unsharded.config


def test_a_vllm_teachers_shards_each_ask_for_its_gpus_and_the_gather_for_none() -> None:
    exp = tiny_experiment(gpu_partition="gpu")
    teacher = ir.Model(name="teacher", source="hf", ref="org/teacher-120b",
                       backend=ir.Backend(kind="vllm", tensor_parallel=8))
    exp = cut(exp.model_copy(update={"models": (exp.models[0], teacher)}), distill=4)
    p = plan(exp, OUT)
    assert [p.job(f"distill_cot_shard{i}of4").resources.gpus for i in (1, 2, 3, 4)] == [8] * 4
    assert p.job("distill_cot").resources.gpus == 0


def test_the_filter_gather_reads_what_the_global_steps_read() -> None:
    p = plan(cut(tiny_experiment(), difficulty=2), OUT)
    gather = p.job("filter_clean")
    task = gather.config.task
    against = [a.path for s in task.steps if isinstance(s, jc.DecontaminateStep) for a in s.against]
    assert gather.inputs[4:] == (task.source.path, *against)
    assert p.job("filter_clean_shard1of2").config.review == ""
    assert [o.path for o in gather.outputs] == [task.output, task.review, task.meta]


def test_only_the_cut_changes_no_downstream_config_and_no_report_input() -> None:
    whole = {j.name: j.config for j in plan(tiny_experiment(), OUT).jobs}
    sharded = {j.name: j.data_config
               for j in plan(cut(tiny_experiment(), 3, 2, 2, 2), OUT).jobs if not j.is_shard}
    assert sharded == whole  # every gather's task is the unsharded job, the rest is untouched


def _rule(snakefile: str, name: str) -> str:
    rule = snakefile[snakefile.index(f"rule {name}:"):]
    return rule[:rule.index("\n\n\n")] if "\n\n\n" in rule else rule


def test_the_snakefile_reruns_a_gather_by_its_task_and_keeps_parts_temporary() -> None:
    whole = render(plan(tiny_experiment(), OUT))
    files = render(plan(cut(tiny_experiment(), distill=2), OUT))
    rows = {row["name"]: row for row in json.loads(files["jobs.json"])["jobs"]}
    snakefile = files["Snakefile"]
    # the gather re-runs by its task's hash: that of the unsharded job's config file
    gather = rows["distill_cot"]
    assert gather["kind"] == "gather"
    assert gather["config_hash"] == sha256_text(whole["jobs/distill_cot.json"])
    assert gather["named_inputs"] == {"config": "generated/tiny/jobs/distill_cot.json"}
    rule = _rule(snakefile, gather["rule"])
    assert f'unpack(ancient_config("{gather["rule"]}")),' in rule
    assert '"fleming job gather --config' in rule
    shard = rows["distill_cot_shard2of2"]
    assert shard["outputs"]["main"] == "runs/tiny/shards/distill_cot/distill_cot_shard2of2.jsonl"
    assert shard["config_hash"] == sha256_text(files["jobs/distill_cot_shard2of2.json"])
    rule = _rule(snakefile, shard["rule"])
    assert f'unpack(ancient_config("{shard["rule"]}")),' in rule
    assert 'main=temp("runs/tiny/shards/distill_cot/{stem}.jsonl"),' in rule
    assert 'meta=temp("runs/tiny/shards/distill_cot/{stem}.jsonl.meta.json"),' in rule
    assert '"shard": {' in files["jobs/distill_cot_shard2of2.json"]
    assert '"shard"' not in whole["jobs/distill_cot.json"]
    # unsharded, nothing is ancient or temporary
    assert "ancient" not in whole["Snakefile"] and "temp(" not in whole["Snakefile"]


def _impact(old: ir.Experiment, new: ir.Experiment) -> impact.Impact:
    return impact.plan_impact(impact.jobs_of(plan(old, OUT)), impact.jobs_of(plan(new, OUT)))


def test_diff_calls_a_new_cut_a_recut_and_reruns_nothing() -> None:
    result = _impact(cut(tiny_experiment(), distill=2), cut(tiny_experiment(), distill=3))
    assert result.rerun == () and result.gpu_hours == 0
    assert {(j.name, j.reason) for j in result.jobs} == {
        *((f"distill_cot_shard{i}of3", "recut") for i in (1, 2, 3)),
        *((f"distill_cot_shard{i}of2", "recut") for i in (1, 2))}
    text = impact.render_text(result)
    assert text.splitlines()[0] == ("Plan: 0 to run (0 new, 0 changed, 0 invalidated), 0 removed, "
                                    "5 re-cut (no data change), 13 unchanged; 0 GPU-hours")
    assert "% distill_cot_shard1of3  distill     re-cut, no data change" in text


def test_a_real_change_to_a_sharded_step_still_reruns_downstream() -> None:
    old = cut(tiny_experiment(), distill=2)
    distill = old.distill[0].model_copy(update={"max_rounds": 3})
    result = _impact(old, old.model_copy(update={"distill": (distill,)}))
    reasons = {j.name: j.reason for j in result.jobs}
    assert reasons["distill_cot"] == reasons["distill_cot_shard1of2"] == "changed"
    assert reasons["filter_clean"] == reasons["sft_cold_start"] == "invalidated"
