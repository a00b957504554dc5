"""The planner: IR -> one job config per Snakemake rule (pure, no files)."""

from __future__ import annotations

import pytest
from plan_fixtures import gpu_experiment, tiny_experiment

from fleming_dsl import ir
from fleming_dsl.errors import PlanError
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan

OUT = "generated/tiny"


def _configs(exp: ir.Experiment) -> dict[str, str]:
    return {job.name: job.config.model_dump_json() for job in plan(exp, OUT).jobs}


def test_tiny_plan_has_one_job_per_step_in_dependency_order() -> None:
    names = [job.name for job in plan(tiny_experiment(), OUT).jobs]
    assert names == [
        "build_model_base", "graph_load_medkg", "sample_rare_dx", "synthesize_questions",
        "distill_cot", "filter_clean", "sft_cold_start", "grpo_rl1", "grpo_rl2",
        "eval_cold_start", "eval_rl1", "eval_rl2", "report",
    ]


def test_outputs_follow_the_workdir_layout_with_meta_beside_the_main_output() -> None:
    p = plan(tiny_experiment(), OUT)
    expected = {
        "build_model_base": ["runs/tiny/models/base", "runs/tiny/models/base.meta.json"],
        "graph_load_medkg": ["runs/tiny/graph/medkg.npz", "runs/tiny/graph/medkg.npz.meta.json"],
        "filter_clean": ["runs/tiny/data/clean.jsonl", "runs/tiny/data/clean.review.jsonl",
                         "runs/tiny/data/clean.jsonl.meta.json"],
        "grpo_rl1": ["runs/tiny/stages/rl1", "runs/tiny/stages/rl1.metrics.jsonl",
                     "runs/tiny/stages/rl1.meta.json"],
        "eval_rl2": ["runs/tiny/eval/rl2.json", "runs/tiny/eval/rl2.json.predictions.jsonl",
                     "runs/tiny/eval/rl2.json.meta.json"],
        "report": ["runs/tiny/report", "runs/tiny/report.meta.json"],
    }
    for name, paths in expected.items():
        assert [o.path for o in p.job(name).outputs] == paths, name
    directories = sorted(job.name for job in p.jobs if job.main_output.directory)
    assert directories == ["build_model_base", "grpo_rl1", "grpo_rl2", "report", "sft_cold_start"]


def test_data_jobs_share_one_teacher_cache() -> None:
    p = plan(tiny_experiment(), OUT)
    caches = {p.job(n).config.cache_dir for n in ("synthesize_questions", "distill_cot",
                                                    "filter_clean")}
    assert caches == {"runs/tiny/cache/teacher"}


def test_references_resolve_to_paths_and_become_inputs() -> None:
    p = plan(tiny_experiment(), OUT)
    distill = p.job("distill_cot")
    assert [(s.name, s.path, s.format) for s in distill.config.sources] == [
        ("questions", "runs/tiny/data/questions.jsonl", "items"),
        ("medqa_train", "data/train/medqa_train.jsonl", "medqa"),
    ]
    assert distill.config.teacher.model == ""  # template teacher: no weights
    assert distill.inputs == ("runs/tiny/data/questions.jsonl", "data/train/medqa_train.jsonl",
                              "prompts/reason.j2")
    sft = p.job("sft_cold_start")
    assert sft.config.model == "runs/tiny/models/base"
    assert sft.inputs == ("runs/tiny/models/base", "runs/tiny/data/clean.jsonl")
    assert p.job("grpo_rl1").config.buckets == ("easy", "moderate")
    assert p.job("eval_rl1").config.model == "runs/tiny/stages/rl1"


def test_build_model_corpus_covers_every_text_file_the_spec_reads() -> None:
    corpus = plan(tiny_experiment(), OUT).job("build_model_base").config.corpus
    assert corpus == ("data/eval/medmcqa_dev.jsonl", "data/eval/medqa_test.jsonl",
                      "data/eval/pubmedqa.json", "data/medkg/kg.csv",
                      "data/train/medqa_train.jsonl", "prompts/question.j2", "prompts/reason.j2")


def test_declaration_order_does_not_change_any_job() -> None:
    exp = tiny_experiment()
    reordered = exp.model_copy(update={"datasets": tuple(reversed(exp.datasets)),
                                       "prompts": tuple(reversed(exp.prompts))})
    assert {j.name: j.config for j in plan(exp, OUT).jobs} == \
        {j.name: j.config for j in plan(reordered, OUT).jobs}


def test_miner_pool_is_resolved_to_the_data_path() -> None:
    cfg = plan(tiny_experiment(), OUT).job("grpo_rl2").config
    assert isinstance(cfg, jc.GrpoJob)
    assert cfg.data == "runs/tiny/data/clean.jsonl"
    assert cfg.miner is not None and cfg.miner.pool == "runs/tiny/data/clean.jsonl"
    assert (cfg.miner.refresh, cfg.miner.samples) == (4, 2)


def test_verify_label_judge_defaults_to_the_upstream_distill_teacher() -> None:
    steps = plan(tiny_experiment(), OUT).job("filter_clean").config.steps
    judge = next(s for s in steps if s.step == "verify_label").judge
    assert judge.backend.kind == "template"
    against = next(s for s in steps if s.step == "decontaminate").against
    assert [a.path for a in against] == ["data/eval/medqa_test.jsonl",
                                         "data/eval/medmcqa_dev.jsonl", "data/eval/pubmedqa.json"]


def test_a_reward_weight_edit_changes_only_the_grpo_configs() -> None:
    before, after = _configs(tiny_experiment(0.2)), _configs(tiny_experiment(0.3))
    assert sorted(n for n in before if before[n] != after[n]) == ["grpo_rl1", "grpo_rl2"]


def test_moving_a_declaration_changes_no_config() -> None:
    exp = tiny_experiment()
    moved = exp.model_copy(update={"stages": tuple(
        s.model_copy(update={"span": ir.Span(file="specs/tiny.flm", line=99, col=1,
                                             end_line=99, end_col=2)}) for s in exp.stages)})
    assert _configs(exp) == _configs(moved)


def test_cpu_stages_get_no_deepspeed_or_accelerate_config() -> None:
    cfg = plan(tiny_experiment(), OUT).job("sft_cold_start").config
    assert (cfg.deepspeed_config, cfg.accelerate_config) == (None, None)


def test_gpu_stages_get_emitted_config_paths_and_cluster_resources() -> None:
    p = plan(gpu_experiment(), OUT)
    job = p.job("grpo_rl2")
    assert job.config.deepspeed_config == "generated/tiny/deepspeed/grpo_rl2.json"
    assert job.config.accelerate_config == "generated/tiny/accelerate/grpo_rl2.yaml"
    assert job.deepspeed_stage == "zero3_offload"
    assert (job.resources.nodes, job.resources.gpus, job.threads) == (2, 8, 16)
    assert (job.resources.partition, job.resources.account) == ("gpu", "medlab")
    cpu_job = p.job("filter_clean")
    assert (cpu_job.resources.partition, cpu_job.resources.account) == ("cpu", "medlab")


def test_short_cpu_jobs_are_grouped_only_when_the_cluster_asks() -> None:
    grouped = {j.name for j in plan(tiny_experiment(), OUT).jobs if j.group}
    assert grouped == {"build_model_base", "graph_load_medkg", "sample_rare_dx"}
    assert not any(j.group for j in plan(tiny_experiment(group_cpu_jobs=False), OUT).jobs)


def test_a_vllm_teacher_asks_for_its_tensor_parallel_gpus() -> None:
    exp = tiny_experiment(gpu_partition="gpu")
    teacher = ir.Model(name="teacher", source="hf", ref="deepseek-ai/DeepSeek-R1",
                       backend=ir.Backend(kind="vllm", tensor_parallel=8))
    exp = exp.model_copy(update={"models": (exp.models[0], teacher)})
    p = plan(exp, OUT)
    job = p.job("distill_cot")
    assert job.config.teacher.model == "deepseek-ai/DeepSeek-R1"
    assert (job.resources.gpus, job.resources.partition) == (8, "gpu")
    assert (job.resources.cpus, job.resources.mem_mb, job.resources.time_min) == (32, 262144, 1440)
    assert job.inputs[-1] == "prompts/reason.j2"  # a hub model is no workflow input


def test_report_reads_every_meta_metric_and_eval() -> None:
    p = plan(tiny_experiment(), OUT)
    report = p.job("report").config
    assert len(report.metas) == len(p.jobs) - 1
    assert report.metrics == ("runs/tiny/stages/rl1.metrics.jsonl",
                              "runs/tiny/stages/rl2.metrics.jsonl")
    assert report.evals == ("runs/tiny/eval/cold_start.json", "runs/tiny/eval/rl1.json",
                            "runs/tiny/eval/rl2.json")
    # each evaluation's per-item predictions, in the same order: an input Snakemake tracks
    assert report.predictions == tuple(f"{path}.predictions.jsonl" for path in report.evals)
    assert set(report.predictions) <= set(report.inputs)
    for path in report.predictions:
        assert path in [o.path for job in p.jobs if job.kind == "eval" for o in job.outputs]


def test_a_target_evaluated_twice_gets_one_job_per_declaration() -> None:
    exp = tiny_experiment()
    again = ir.Evaluate(name="quick", targets=("rl2",), benchmarks=("pubmedqa",), limit=10)
    exp = exp.model_copy(update={"evaluations": (*exp.evaluations, again)})
    names = [j.name for j in plan(exp, OUT).jobs if j.kind == "eval"]
    assert names == ["eval_cold_start", "eval_rl1", "eval_evaluate_69_rl2", "eval_quick_rl2"]


def test_sources_point_back_to_the_spec_line() -> None:
    p = plan(tiny_experiment(), OUT)
    assert p.job("grpo_rl1").source == "specs/tiny.flm:56"
    assert p.job("report").source == "specs/tiny.flm"


def test_an_undeclared_reference_is_a_located_plan_error() -> None:
    exp = tiny_experiment()
    bad = exp.stages[0].model_copy(update={"init": "bsae"})
    exp = exp.model_copy(update={"stages": (bad, *exp.stages[1:])})
    with pytest.raises(PlanError, match=r"^specs/tiny\.flm: 'bsae' is not declared$"):
        plan(exp, OUT)
