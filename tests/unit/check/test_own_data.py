"""What `fleming check` accepts, the jobs read: a researcher's own graph, questions and prompts
are judged at check time against what graph_load, the dataset loader and each step's prompt
rendering will do with them (issue 26), each mistake as a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEMING_CACHE_DIR", str(tmp_path / "cache"))


def errors_of(tmp_path: Path, files: dict[str, str], spec: str = MINIMAL) -> list[str]:
    path = write_project(tmp_path, spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        check_experiment(path, project_root=tmp_path)
    return [d.render(info.value.sources.get(d.span.file)) for d in info.value.diagnostics]


def test_a_three_column_triples_file_is_an_error_at_its_path(tmp_path: Path) -> None:
    assert errors_of(tmp_path, {"kg.tsv": "flu\tcauses\tfever\n"}) == [
        'spec.flm:4:20: error: graph kg: kg.tsv line 1 has 3 tab-separated fields; the triples '
        'format has 5: head, head_type, relation, tail, tail_type\n'
        '  graph kg = triples("kg.tsv")\n'
        '                     ^^^^^^^^\n'
        '  expected triples columns: head, head_type, relation, tail, tail_type\n'
        '  hint: one fact per line: head, head_type, relation, tail, tail_type separated by tabs; '
        'a header line is optional (docs/data.md)']


def test_a_triples_header_of_other_names_is_an_error(tmp_path: Path) -> None:
    found = errors_of(tmp_path, {"kg.tsv": "head\trelation\ttail\thead_type\ttail_type\n"})
    assert found[0].splitlines()[0] == (
        "spec.flm:4:20: error: graph kg: kg.tsv has the header head, relation, tail, head_type, "
        "tail_type; the triples format reads head, head_type, relation, tail, tail_type")


def test_a_primekg_file_without_its_columns_is_an_error(tmp_path: Path) -> None:
    spec = MINIMAL.replace('triples("kg.tsv")', 'primekg("kg.csv")')
    found = errors_of(tmp_path, {"kg.csv": "relation,x_name,y_name\nr,a,b\n"}, spec)
    assert found[0].splitlines()[0] == (
        "spec.flm:4:20: error: graph kg: kg.csv has no column 'display_relation' in its header")


def test_an_mcq_answer_written_as_the_option_text_is_an_error(tmp_path: Path) -> None:
    row = '{"question": "q?", "options": {"A": "flu", "B": "cold"}, "answer": "cold"}\n'
    assert errors_of(tmp_path, {"train.jsonl": row}) == [
        "spec.flm:6:21: error: dataset train: record 1 of train.jsonl: field 'answer' is 'cold', "
        "not one of the option letters AB\n"
        '  dataset train = mcq("train.jsonl")\n'
        '                      ^^^^^^^^^^^^^\n'
        '  expected the mcq format: {"question": "...", "options": {"A": "...", "B": "..."} or '
        '["...", "..."], "answer": "A" (a letter, or a 0-based index)}\n'
        '  hint: the answer is the text of option B: write "answer": "B"']


def test_a_misspelt_prompt_variable_is_an_error_at_the_prompt(tmp_path: Path) -> None:
    prompt = ("{% macro stem(facts, clues, all_facts, answer, answer_type, hops) %}Which?{% endmacro %}\n"
              "The answer:\n{{ anwser }}\n")
    assert errors_of(tmp_path, {"ask.j2": prompt}) == [
        "spec.flm:8:23: error: prompt template ask.j2:3 reads 'anwser', which synthesize q does "
        "not pass\n"
        '  prompt ask = template("ask.j2")\n'
        '                        ^^^^^^^^\n'
        "  expected the variables synthesize passes: facts, clues, all_facts, answer, answer_type, hops\n"
        "  hint: did you mean 'answer'?",
        "spec.flm:8:23: error: prompt template ask.j2:3 reads 'anwser', which distill cot does "
        "not pass\n"
        '  prompt ask = template("ask.j2")\n'
        '                        ^^^^^^^^\n'
        "  expected the variables distill passes: question, options, answer, answer_text, facts, "
        "strategy, previous\n"
        "  hint: did you mean 'answer'?"]


def test_a_synthesize_prompt_without_stem_fails_with_the_template_teacher(tmp_path: Path) -> None:
    found = errors_of(tmp_path, {"ask.j2": "Write a question about {{ answer }}.\n"})
    assert found == [
        "spec.flm:8:23: error: prompt template ask.j2 defines no macro 'stem', which the template "
        "teacher of synthesize q answers with\n"
        '  prompt ask = template("ask.j2")\n'
        '                        ^^^^^^^^\n'
        "  hint: add {% macro stem(facts, clues, all_facts, answer, answer_type, hops) %}..."
        "{% endmacro %} (see prompts/question.j2), or use a model as the teacher"]


@pytest.mark.parametrize("signature, missing", [
    ("stem(facts, clues)", "parameters all_facts, answer, answer_type, hops"),
    ("stem(facts, clues, all_facts, answer, answer_type)", "parameter hops"),
])
def test_a_stem_macro_without_every_variable_fails_with_the_template_teacher(
        tmp_path: Path, signature: str, missing: str) -> None:
    """The template teacher calls stem with each of the six by keyword: jinja2 refuses the rest."""
    found = errors_of(tmp_path, {"ask.j2": f"{{# a prompt #}}\n{{% macro {signature} %}}{{{{ facts }}}}"
                                           "{% endmacro %}\n"})
    assert found == [
        f"spec.flm:8:23: error: prompt template ask.j2:2 defines macro 'stem' without the {missing}, "
        "which the template teacher of synthesize q passes\n"
        '  prompt ask = template("ask.j2")\n'
        '                        ^^^^^^^^\n'
        "  hint: write {% macro stem(facts, clues, all_facts, answer, answer_type, hops) %} "
        "(see prompts/question.j2)"]


def test_a_stem_macro_taking_kwargs_passes(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    (tmp_path / "ask.j2").write_text("{% macro stem(facts) %}{{ facts }}{{ kwargs }}{% endmacro %}\n")
    check_experiment(path, project_root=tmp_path)


def test_variables_set_in_the_template_and_jinja_globals_are_not_reported(tmp_path: Path) -> None:
    prompt = ("{% macro stem(facts, clues, all_facts, answer, answer_type, hops) %}{% set ns = namespace(n=0) %}{% if clues %}{% set n = 1 %}"
              "{{ n }}{% endif %}{% for i in range(2) %}{{ loop.index }}{% endfor %}{% endmacro %}"
              "{{ answer }}\n")
    path = write_project(tmp_path)
    (tmp_path / "ask.j2").write_text(prompt)
    check_experiment(path, project_root=tmp_path)


def test_one_check_reports_every_independent_problem(tmp_path: Path) -> None:
    """Four mistakes, found by the rules and by lowering: all four in one check."""
    spec = (MINIMAL.replace("stage sft1 = sft(base, clean) { lr = 1e-4 }",
                            "stage sft1 = sft(base, clean) { lr = 1e-4  epoch = 1 }")
            .replace("rewards = correct", "rewards = corect"))
    found = [e.splitlines()[0] for e in errors_of(
        tmp_path, {"kg.tsv": "flu\tcauses\tfever\n", "ask.j2": "{{ anwser }}\n"}, spec)]
    assert found == [
        "spec.flm:4:20: error: graph kg: kg.tsv line 1 has 3 tab-separated fields; the triples "
        "format has 5: head, head_type, relation, tail, tail_type",
        "spec.flm:8:23: error: prompt template ask.j2:1 reads 'anwser', which synthesize q does not pass",
        "spec.flm:8:23: error: prompt template ask.j2 defines no macro 'stem', which the template "
        "teacher of synthesize q answers with",
        "spec.flm:8:23: error: prompt template ask.j2:1 reads 'anwser', which distill cot does not pass",
        "spec.flm:13:44: error: unknown option 'epoch' for stage sft1",
        "spec.flm:14:48: error: undefined name 'corect' (a reward)"]


def test_the_option_count_warning_reads_what_synthesize_fixes(tmp_path: Path) -> None:
    """distractors = same_type(k = 8) gives up to 9 options, but `options = 4` fixes each item at 4:
    a reward accepting [A-D] covers them, and no warning is given."""
    spec = (MINIMAL.replace("count = 10 }", "count = 10  distractors = same_type(k = 8) }")
            .replace("distill cot from [q, train]", "distill cot from [q]")
            .replace('reward correct = choice_match(tag = "answer")',
                     'reward correct = regex("<answer>[A-D]</answer>")'))
    path = write_project(tmp_path, spec)
    assert [w.first_line() for w in check_experiment(path, project_root=tmp_path)[1]
            if "accepts answers" in w.message] == [
        "spec.flm:14:48: warning: reward correct accepts answers [A-D], but stage rl trains on items "
        "with up to 9 options (A-I)"]
    path.write_text(spec.replace("synthesize q from s with teacher using ask",
                                 "synthesize q from s with teacher using ask { options = 4 }"))
    assert not [w for w in check_experiment(path, project_root=tmp_path)[1]
                if "accepts answers" in w.message]
