"""The grader's declared rubric prompt and `resources { ... }` blocks on data steps, from the
spec text through checks and lowering to the planned rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project
from paths import REPO
from plan_fixtures import tiny_experiment

from fleming_dsl import ir
from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.plan.planner import plan
from fleming_dsl.spec.fmt import format_source

OUT = "generated/t"
PASS_RATE = "difficulty(model = base)"
SYNTH = "synthesize q from s with teacher using ask\n"
DISTILL = "distill cot from [q, train] with teacher using ask\n"
VLLM_TEACHER = 'model teacher = hf("org/teacher") { backend = vllm(tp = 4) }'


def R(*edits: tuple[str, str]) -> str:
    text = MINIMAL
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def load(tmp_path: Path, text: str) -> ir.Experiment:
    (tmp_path / "grader.j2").write_text("{{ question }}\n")
    return load_experiment(write_project(tmp_path, text), project_root=tmp_path)


GRADED = R((PASS_RATE, "difficulty(grader, model = teacher, prompt = rubric)"),
           ('prompt ask = template("ask.j2")',
            'prompt ask = template("ask.j2")\nprompt rubric = template("grader.j2")'))

# (case, spec text, first rendered line, hint or None)
BAD_SPECS = [
    ('grader_without_rubric', R((PASS_RATE, "difficulty(grader, model = base)")),
     "spec.flm:11:33: error: difficulty(grader) needs prompt = <the rubric prompt>",
     ('declare prompt rubric = template("prompts/grader.j2") and write '
      'difficulty(grader, model = ..., prompt = rubric)')),
    ('rubric_on_pass_rate', R((PASS_RATE, "difficulty(model = base, prompt = ask)")),
     ("spec.flm:11:58: error: 'prompt' applies only to difficulty(grader): pass_rate samples "
      "the student prompt"),
     None),
    ('rubric_undefined', R((PASS_RATE, "difficulty(grader, model = base, prompt = aks)")),
     "spec.flm:11:75: error: undefined name 'aks' (the grader rubric)",
     "did you mean 'ask'?"),
    ('rubric_wrong_kind', R((PASS_RATE, "difficulty(grader, model = base, prompt = train)")),
     "spec.flm:11:75: error: 'train' is a dataset, but the grader rubric must be a prompt",
     'declared prompt names: ask'),
    ('rubric_a_path', R((PASS_RATE, 'difficulty(grader, model = base, prompt = "grader.j2")')),
     "spec.flm:11:75: error: 'prompt' must be a name, got a string",
     None),
    ('sample_resources_typo', R(("count = 10 }", "count = 10  resources { gpu = 8 } }")),
     "spec.flm:5:80: error: unknown option 'gpu' for resources of sample s",
     "did you mean 'gpus'?"),
    ('synthesize_block_typo', R((SYNTH, SYNTH[:-1] + " { resource { gpus = 1 } }\n")),
     "spec.flm:9:46: error: unexpected 'resource' in synthesize q",
     "did you mean 'resources'?"),
    ('distill_negative_gpus', R((DISTILL, DISTILL[:-1] + " { resources { gpus = -1 } }\n")),
     "spec.flm:10:73: error: 'gpus' must be >= 0, got -1",
     None),
    ('too_few_gpus_for_the_teacher', R(("model teacher = template()", VLLM_TEACHER),
                                       (SYNTH, SYNTH[:-1] + " { resources { gpus = 2 } }\n")),
     ("spec.flm:9:56: error: synthesize q asks for 2 GPUs, but its teacher 'teacher' is served "
      "by vllm on 4"),
     'write gpus = 4 in its resources block'),
    ('filter_resources_bad_size', R(("{ format ", '{ format  resources { mem = "lots" } ')),
     "spec.flm:11:51: error: 'mem' must be a size such as 512MB or 80GB, got a string",
     None),
    ('filter_resources_without_block', R(("{ format ", "{ format  resources ")),
     "spec.flm:11:33: error: resources is a block: resources { gpus = 8  time = 24h }",
     None),
    ('filter_resources_as_call', R(("{ format ", "{ format  resources(gpus = 2) ")),
     "spec.flm:11:33: error: resources is a block: resources { gpus = 8  time = 24h }",
     None),
]


@pytest.mark.parametrize("case,text,first_line,hint", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec(tmp_path: Path, case: str, text: str, first_line: str, hint: str | None) -> None:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    diag = info.value.diagnostics[0]
    assert diag.first_line() == first_line
    assert diag.hint == hint
    assert str(info.value).splitlines()[0] == first_line
    assert "Traceback" not in str(info.value)


# ---------------------------------------------------------------- the rubric


def test_the_rubric_is_in_the_ir_and_its_path_in_the_filter_config_and_inputs(tmp_path: Path) -> None:
    exp = load(tmp_path, GRADED)
    step = exp.filters[0].steps[1]
    assert (step.method, step.prompt) == ("grader", "rubric")
    job = plan(exp, OUT).job("filter_clean")
    difficulty = job.config.steps[1]
    assert difficulty.prompt == "grader.j2"
    assert "grader.j2" in job.inputs


def test_editing_the_rubric_path_changes_only_the_filter_job(tmp_path: Path) -> None:
    (tmp_path / "strict.j2").write_text("{{ question }}\n")
    before = {j.name: j.config.model_dump_json() for j in plan(load(tmp_path, GRADED), OUT).jobs}
    edited = GRADED.replace('template("grader.j2")', 'template("strict.j2")')
    after = {j.name: j for j in plan(load(tmp_path, edited), OUT).jobs}
    changed = {n for n, j in after.items() if j.config.model_dump_json() != before[n]}
    assert changed == {"filter_clean", "build_model_base"}  # the tokenizer reads every prompt
    assert "strict.j2" in after["filter_clean"].inputs


def test_a_pass_rate_difficulty_reads_no_rubric(tmp_path: Path) -> None:
    job = plan(load(tmp_path, MINIMAL), OUT).job("filter_clean")
    assert job.config.steps[1].method == "pass_rate"
    assert not any(p.endswith(".j2") for p in job.inputs)


def test_a_hand_built_grader_without_a_rubric_keeps_the_default_as_an_input() -> None:
    exp = tiny_experiment()
    flt = exp.filters[0]
    assert any(isinstance(s, ir.Difficulty) and s.method == "grader" and s.prompt is None
               for s in flt.steps)
    job = plan(exp, OUT).job(f"filter_{flt.name}")
    assert "prompts/grader.j2" in job.inputs


# ---------------------------------------------------------------- resources on data steps


def test_data_steps_without_a_block_keep_the_planner_defaults(tmp_path: Path) -> None:
    p = plan(load(tmp_path, R(("model teacher = template()", VLLM_TEACHER))), OUT)
    for name in ("synthesize_q", "distill_cot"):
        res = p.job(name).resources
        assert (res.gpus, res.cpus, res.mem_mb, res.time_min) == (4, 16, 4 * 32 * 1024, 1440)
    assert p.job("sample_s").resources.gpus == 0


def test_a_written_block_replaces_the_defaults_on_every_data_step(tmp_path: Path) -> None:
    block = ' { resources { gpus = 4  cpus = 6  mem = 64GB  time = 3h  partition = "big" } }'
    text = R(("model teacher = template()", VLLM_TEACHER),
             ("count = 10 }", "count = 10  resources { cpus = 3  time = 2h } }"),
             (SYNTH, SYNTH[:-1] + block + "\n"), (DISTILL, DISTILL[:-1] + block + "\n"),
             ("{ format ", '{ format  resources { gpus = 1  mem = 8GB } '))
    exp = load(tmp_path, text)
    assert exp.samples[0].resources == ir.Resources(cpus=3, time_min=120)
    p = plan(exp, OUT)
    for name in ("synthesize_q", "distill_cot"):
        job = p.job(name)
        assert (job.resources.gpus, job.threads, job.resources.mem_mb, job.resources.time_min,
                job.resources.partition) == (4, 6, 64 * 1024, 180, "big")
    sample = p.job("sample_s")
    assert (sample.threads, sample.resources.time_min) == (3, 120)
    flt = p.job("filter_clean").resources
    assert (flt.gpus, flt.mem_mb, flt.cpus) == (1, 8 * 1024, 1)


def test_fmt_lays_out_resources_in_data_steps_and_the_rubric_argument(tmp_path: Path) -> None:
    text = R((SYNTH, SYNTH[:-1] + " { resources { gpus = 8  time = 24h } }\n"),
             (PASS_RATE, "difficulty(grader, model = teacher, prompt = ask)"))
    out = format_source(text, "spec.flm")
    assert ("synthesize q from s with teacher using ask {\n  resources {\n    gpus = 8\n"
            "    time = 24h\n  }\n}\n") in out
    assert "difficulty(grader, model = teacher, prompt = ask) {" in out
    assert format_source(out, "spec.flm") == out


def test_the_base_spec_declares_its_vllm_steps_8_gpus_and_the_rubric() -> None:
    root = REPO
    exp = load_experiment(root / "specs" / "fleming_r1_base.flm", project_root=root)
    declared = [d for d in (*exp.synthesize, *exp.distill, *exp.filters) if d.resources is not None]
    assert {d.name for d in declared} == {"kg_questions", "moa_questions", "cot", "clean"}
    assert all(d.resources.gpus == 8 for d in declared)
    rubric = next(s for s in exp.filters[0].steps if isinstance(s, ir.Difficulty))
    assert rubric.prompt == "rubric"
    assert plan(exp, OUT).job("filter_clean").config.steps[-1].prompt == "prompts/grader.j2"
