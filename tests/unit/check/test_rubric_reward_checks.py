"""`reward NAME = rubric(grader = MODEL, prompt = PROMPT)` at `fleming check` and in the plan, GRPO
stages on HealthBench-format data, and the warning for a TRL outside the GRPO option table."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project
from paths import REPO

from fleming_dsl.check import grpo as grpo_rules
from fleming_dsl.compiler import check_experiment, load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.ir import Backend
from fleming_dsl.lower import options as table
from fleming_dsl.lower.schema import TRAINING_OPTIONS
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan

HB_ROW = ('{"prompt_id": "p1", "prompt": [{"role": "user", "content": "Chest pain?"}], '
          '"rubrics": [{"criterion": "Advises care.", "points": 5, "tags": []}]}\n')
RL = "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  batch = 4 }"


def spec(*lines: str, rl: str | None = None) -> str:
    text = MINIMAL.replace('dataset test = mcq("test.jsonl")\n',
                           'dataset test = mcq("test.jsonl")\ndataset hb = healthbench("hb.jsonl")\n'
                           'model judge = openai(base_url = "http://x/v1", model = "g")\n'
                           'prompt rubric_prompt = template("rubric.j2")\n' + "".join(f"{x}\n" for x in lines))
    return text.replace(RL, rl) if rl is not None else text


def project(tmp_path: Path, text: str) -> Path:
    path = write_project(tmp_path, text)
    (tmp_path / "hb.jsonl").write_text(HB_ROW)
    (tmp_path / "rubric.j2").write_text("Response: {{ response }} Criterion: {{ criterion }} ({{ points }})\n")
    return path


def first_error(tmp_path: Path, text: str) -> tuple[str, str | None]:
    with pytest.raises(SpecError) as info:
        load_experiment(project(tmp_path, text), project_root=tmp_path)
    diag = info.value.diagnostics[0]
    where = f"{diag.span.line}:{diag.span.col}"
    return f"{where} {diag.message}", diag.hint


GRADED = "reward graded = rubric(grader = judge, prompt = rubric_prompt)"
ON_HB = "stage rl = grpo(sft1, hb) { rewards = graded  generations = 2  batch = 4 }"


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_grpo_stage_on_healthbench_data_plans_its_grader(tmp_path: Path) -> None:
    text = spec(GRADED, rl=ON_HB)
    exp = load_experiment(project(tmp_path, text), project_root=tmp_path)
    job = plan(exp, "gen").job("grpo_rl")
    [term] = job.config.rewards
    assert term == jc.RewardTermCfg(name="graded", function="rubric", weight=1.0,
                                    grader=jc.Generator(model="g", backend=Backend(kind="openai",
                                                                                    base_url="http://x/v1")),
                                    prompt="rubric.j2", cache_dir="runs/t/cache/teacher")
    assert job.config.data_source == jc.DataSource(path="hb.jsonl", format="healthbench", name="hb")
    assert "rubric.j2" in job.inputs  # editing the rubric re-runs the stage


def test_the_built_in_prompt_and_a_positional_grader(tmp_path: Path) -> None:
    exp = load_experiment(project(tmp_path, spec("reward graded = rubric(judge)", rl=ON_HB)), project_root=tmp_path)
    [term] = plan(exp, "gen").job("grpo_rl").config.rewards
    assert (term.grader.model, term.prompt) == ("g", None)


@pytest.mark.parametrize(("lines", "rl", "where", "message", "hint"), [
    (["reward graded = rubric(prompt = rubric_prompt)"], ON_HB, "reward graded",
     "rubric() needs 'grader', the model that grades each completion",
     "rubric(grader = judge), where judge is a model with a backend"),
    (["reward graded = rubric(grader = teacher)"], ON_HB, "reward graded",
     "the template teacher 'teacher' cannot grade against a rubric: it answers from an item's provenance "
     "and never reads the completion",
     'grade with a model that generates, e.g. model teacher = local("models/judge") { backend = transformers() }'),
    (["reward graded = rubric(grader = base)"], ON_HB, "reward graded",
     "the grader 'base' has no generation backend", "give model base a block such as { backend = vllm(tp = 8) }"),
    (["reward graded = rubric(grader = hb)"], ON_HB, "reward graded",
     "'hb' is a dataset, but the rubric grader must be a model", "declared model names: base, teacher, judge"),
    (["reward graded = rubric(grader = judge, prompt = judge)"], ON_HB, "reward graded",
     "'judge' is a model, but the rubric prompt must be a prompt", "declared prompt names: rubric_prompt, ask"),
    ([GRADED], "stage rl = grpo(sft1, hb) { rewards = correct + graded  generations = 2  batch = 4 }", "stage rl",
     "reward 'correct' is choice_match(), which needs a right option, but stage rl trains on 'hb', "
     "rubric-graded data (healthbench) with no options",
     "grade it with a rubric() reward: reward graded = rubric(grader = judge)"),
    ([GRADED, 'reward long = overlong(max_tokens = 8, buffer = 2)'],
     "stage rl = grpo(sft1, hb) { rewards = long  generations = 2  batch = 4 }", "stage rl",
     "stage rl trains on 'hb', rubric-graded data (healthbench), but none of its rewards is rubric()",
     "add reward graded = rubric(grader = judge) to its rewards"),
    ([GRADED], "stage rl = grpo(sft1, mine_hard(hb, pass < 0.5)) { rewards = graded  max_steps = 2 }", "stage rl",
     "mine_hard() mines items by whether the policy picks the right option; 'hb' is rubric-graded data "
     "(healthbench) with no options", "train on it directly: grpo(..., hb)"),
    ([GRADED], "stage rl = sft(sft1, hb)", "stage rl",
     "stage rl cannot fine-tune on 'hb': rubric-graded data (healthbench) has no reference answers to imitate",
     "train a grpo stage on it with a rubric() reward"),
])
def test_bad_rubric_rewards_and_stages(tmp_path: Path, lines: list[str], rl: str, where: str, message: str,
                                       hint: str) -> None:
    text = spec(*lines, rl=rl)
    got, got_hint = first_error(tmp_path, text)
    assert got.split(" ", 1)[1] == message and got_hint == hint
    assert int(got.split(":")[0]) == line_of(text, where)


def test_a_model_served_by_the_template_backend_grades_nothing(tmp_path: Path) -> None:
    served = 'model verbaliser = hf("org/m") { backend = template() }'
    got, _ = first_error(tmp_path, spec(served, "reward graded = rubric(verbaliser)", rl=ON_HB))
    assert got.split(" ", 1)[1].startswith("the template teacher 'verbaliser' cannot grade against a rubric")
    text = spec(served, GRADED, rl=ON_HB).replace("evaluate [rl] on [test]",
                                                  "evaluate [rl] on [hb] { grader = verbaliser }")
    got, _ = first_error(tmp_path, text)
    assert got.split(" ", 1)[1] == "the grader 'verbaliser' has no generation backend"


def test_a_grader_written_as_a_string_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(project(tmp_path, spec('reward graded = rubric(grader = "judge")', rl=ON_HB)),
                        project_root=tmp_path)
    assert len(info.value.diagnostics) == 1 and "'grader'" in info.value.diagnostics[0].message


def test_the_choice_match_error_points_at_the_term(tmp_path: Path) -> None:
    rl = "stage rl = grpo(sft1, hb) { rewards = correct + graded  generations = 2  batch = 4 }"
    text = spec(GRADED, rl=rl)
    got, _ = first_error(tmp_path, text)
    assert got.split(" ", 1)[0] == f"{line_of(text, 'stage rl')}:{rl.index('correct') + 1}"


# ---------------------------------------------------------------- the TRL version warning


def trl_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str | None) -> list[str]:
    monkeypatch.setattr(grpo_rules, "installed_trl", lambda: version)
    _, warnings = check_experiment(project(tmp_path, spec()), project_root=tmp_path)
    return [f"{w.span.line}:{w.span.col}: {w.message} | {w.hint}" for w in warnings if "TRL" in w.message]


def test_a_trl_outside_the_table_is_a_located_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = line_of(spec(), "stage rl")
    assert trl_warnings(tmp_path, monkeypatch, "0.19.1") == [
        f"{line}:12: the installed TRL 0.19.1 is outside the versions the GRPO options are validated against "
        "(trl>=1.0,<2.0); stage rl may fail or behave differently when it runs | pip install \"trl>=1.0,<2.0\""]
    assert len(trl_warnings(tmp_path, monkeypatch, "2.0.0")) == 1


@pytest.mark.parametrize("version", ["1.0.0", "1.16.0", "1.16.0.dev0", None])
def test_a_supported_or_absent_trl_is_not_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       version: str | None) -> None:
    assert trl_warnings(tmp_path, monkeypatch, version) == []


def test_no_grpo_stage_no_trl_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpo_rules, "installed_trl", lambda: "0.19.1")
    text = MINIMAL.replace(RL + "\n", "").replace("evaluate [rl]", "evaluate [sft1]").replace(
        'reward correct = choice_match(tag = "answer")\n', "")
    _, warnings = check_experiment(project(tmp_path, text), project_root=tmp_path)
    assert not [w for w in warnings if "TRL" in w.message]


# ---------------------------------------------------------------- the reference and the README


def test_every_reward_function_and_grpo_option_is_documented() -> None:
    from fleming_dsl.runtime.train import rewards

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    language = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    builtins = sorted(set(rewards.BUILTINS) | set(rewards.GRADED))
    assert sorted(table.SOURCES["reward function"]) == builtins
    for name in builtins:
        assert f"{name}()" in table.BY_KEY, name
        assert f"<!-- generated: options {name}() -->" in language, name
        assert f"`{name}(" in readme, name
    for option in TRAINING_OPTIONS:
        if option.methods == ("grpo",):
            assert f"`{option.word}`" in readme, option.word
            assert f"| `{option.word}` |" in language, option.word


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("distill cot from [q, train]", "distill cot from [q, hb]", "distill cot",
     "distill cot reads multiple-choice items; 'hb' is rubric-graded data (healthbench) with no options"),
    ("{ format  difficulty", "{ format  decontaminate(against = [test, hb])  difficulty", "filter clean",
     "the decontaminate step of filter clean reads multiple-choice items; 'hb' is rubric-graded data "
     "(healthbench) with no options"),
])
def test_a_data_job_never_reads_rubric_data(tmp_path: Path, old: str, new: str, where: str, message: str) -> None:
    text = spec().replace(old, new)
    got, hint = first_error(tmp_path, text)
    assert got.split(" ", 1)[1] == message
    assert hint == "evaluate on it, or train a grpo stage on it with a rubric() reward"
    assert int(got.split(":")[0]) == line_of(text, where)


def test_a_rubric_prompt_written_for_another_step_fails_at_check(tmp_path: Path) -> None:
    """issue 28: a synthesis prompt used as the rubric prompt failed at the first grading
    ("'hops' is undefined")."""
    text = spec(GRADED, rl=ON_HB)
    path = project(tmp_path, text)
    (tmp_path / "rubric.j2").write_text("Make a question of {{ hops }} hops from {{ facts }}: {{ response }}\n")
    with pytest.raises(SpecError) as info:
        check_experiment(path, project_root=tmp_path)
    [diag] = [d for d in info.value.diagnostics if "rubric prompt" in d.message]
    assert diag.first_line() == (f"spec.flm:{line_of(text, GRADED)}:49: error: prompt rubric_prompt is not a "
                                 "rubric prompt: it uses facts, hops, which grading does not provide")
    assert diag.expected == ("only conversation, response, criterion, points (and answer, answer_text, "
                             "options for a multiple-choice item)")
    (tmp_path / "rubric.j2").write_text("Response: {{ response }} Criterion: {{ criterion }} ({{ points }})\n")
    check_experiment(path, project_root=tmp_path)
