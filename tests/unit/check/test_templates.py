"""`fleming check` parses prompt templates and the templates they name (never rendering them):
syntax errors, names that lead outside the prompt folder or do not exist are located errors at
the prompt's template path; a name computed at render time is a warning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.check import templates
from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError

# MINIMAL's prompt: `prompt ask = template("ask.j2")`, line 8; the path string starts at col 23
AT = "spec.flm:8:23"
# what the template teacher of synthesize q calls, with each variable synthesize passes
STEM = "{% macro stem(facts, clues, all_facts, answer, answer_type, hops) %}q{% endmacro %}"
HINT = ("a template's {% include %}, {% import %} and {% extends %} read files inside the folder "
        "of the prompt's template (symlinks resolved), named relative to it")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEMING_CACHE_DIR", str(tmp_path / "cache"))


def project(tmp_path: Path, files: dict[str, str], text: str = MINIMAL) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    spec = write_project(root, text)
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    return spec


def problems(spec: Path) -> list[tuple[str, str | None]]:
    with pytest.raises(SpecError) as info:
        check_experiment(spec, project_root=spec.parent)
    return [(d.first_line(), d.hint) for d in info.value.diagnostics]


def warnings(spec: Path) -> list[str]:
    return [w.first_line() for w in check_experiment(spec, project_root=spec.parent)[1]]


@pytest.mark.parametrize("files, first_line", [
    ({"ask.j2": "{% if x %}never closed\n"},
     f"{AT}: error: prompt template ask.j2: syntax error at line 1: Unexpected end of template. "
     "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost block "
     "that needs to be closed is 'if'."),
    ({"ask.j2": "{% include 'part.j2' %}\n", "part.j2": "{{ x }\n"},
     f"{AT}: error: prompt template ask.j2 -> part.j2: syntax error at line 1: unexpected '}}'"),
    ({"ask.j2": "{% include 'missing.j2' %}\n"},
     f"{AT}: error: prompt template ask.j2 reads 'missing.j2', which does not exist in the prompt folder"),
    ({"ask.j2": "{% include '../secret.j2' %}\n"},
     f"{AT}: error: prompt template ask.j2 reads '../secret.j2', which lies outside the prompt folder"),
    ({"ask.j2": "{% extends 'sub/base.j2' %}\n", "sub/base.j2": "{% import 'sub/../../x.j2' as m %}\n"},
     f"{AT}: error: prompt template ask.j2 -> sub/base.j2 reads 'sub/../../x.j2', which lies outside "
     "the prompt folder"),
    # issue 28: what the job's sandbox refuses, `fleming check` refuses when constants decide it
    ({"ask.j2": "{{ (9**(9**9)) > 0 }}\n"},
     f"{AT}: error: prompt template ask.j2: line 1: 9 ** 387420489 is a number of about "
     "1,549,681,956 bits: its job refuses it"),
    ({"ask.j2": "x\n{{ 'ab' * (10 ** 7) }}\n"},
     f"{AT}: error: prompt template ask.j2: line 2: 2 characters or items repeated 10,000,000 "
     "times, longer than a prompt: its job refuses it"),
    ({"ask.j2": "{{ q|center(999999999) }}\n"},
     f"{AT}: error: prompt template ask.j2: line 1: filter 'center' given 999,999,999, longer than "
     "a prompt: its job refuses it"),
    ({"ask.j2": "{{ '%999999999d' % 1 }}\n"},
     f"{AT}: error: prompt template ask.j2: line 1: a %-format width longer than a prompt: its job "
     "refuses it"),
    ({"ask.j2": "x\n{{ '%999999999d'|format(1) }}\n"},
     f"{AT}: error: prompt template ask.j2: line 2: a %-format width longer than a prompt: its job "
     "refuses it"),
    ({"ask.j2": "{{ '{}: {:>999999999}'.format(q, a) }}\n"},
     f"{AT}: error: prompt template ask.j2: line 1: a format width or precision longer than a "
     "prompt: its job refuses it"),
])
def test_template_problems_are_located_at_the_prompt(tmp_path: Path, files: dict, first_line: str) -> None:
    found = problems(project(tmp_path, files))
    assert found[0][0] == first_line
    assert len(found) == 1


def test_an_include_through_a_symlink_out_of_the_prompt_folder_is_an_error(tmp_path: Path) -> None:
    """The finding of issue 11: a link in the prompt folder let {% include %} render /etc/passwd."""
    spec = project(tmp_path, {"ask.j2": "{% include 'leak.j2' %}\n"})
    os.symlink("/etc/passwd", spec.parent / "leak.j2")
    assert problems(spec) == [(f"{AT}: error: prompt template ask.j2 reads 'leak.j2', which lies "
                               "outside the prompt folder", HINT)]


def test_a_prompt_folder_inside_the_project_may_not_reach_the_rest_of_it(tmp_path: Path) -> None:
    text = MINIMAL.replace('template("ask.j2")', 'template("prompts/ask.j2")')
    spec = project(tmp_path, {"prompts/ask.j2": "{% include 'notes.j2' %}\n", "private.j2": "x\n"}, text)
    os.symlink(spec.parent / "private.j2", spec.parent / "prompts" / "notes.j2")
    assert problems(spec)[0][0] == ("spec.flm:8:23: error: prompt template ask.j2 reads 'notes.j2', "
                                    "which lies outside the prompt folder")


def test_a_dynamic_include_is_a_warning(tmp_path: Path) -> None:
    spec = project(tmp_path, {"ask.j2": STEM + "{% include answer ~ '.j2' %}\n"})
    assert f"{AT}: warning: prompt template ask.j2 includes a template whose name is computed when " \
           "it renders: fleming check cannot follow it" in warnings(spec)


def test_nested_includes_inside_the_folder_are_followed_and_accepted(tmp_path: Path) -> None:
    spec = project(tmp_path, {
        "ask.j2": "{% from 'lib/macros.j2' import stem %}{% include ['lib/a.j2', 'lib/b.j2'] %}\n",
        "lib/macros.j2": "{% macro stem(q) %}{{ q }}{% endmacro %}\n",
        "lib/a.j2": "{% include 'lib/b.j2' %}\n", "lib/b.j2": "{% if deep %}{% include 'ask.j2' %}{% endif %}\n"})
    assert not any("prompt template" in w for w in warnings(spec)), warnings(spec)


def test_nesting_is_followed_to_a_bound(tmp_path: Path) -> None:
    depth = templates.MAX_DEPTH + 3
    files = {"ask.j2": STEM + "{% include 't1.j2' %}\n"}
    files.update({f"t{i}.j2": f"{{% include 't{i + 1}.j2' %}}\n" for i in range(1, depth)})
    files[f"t{depth}.j2"] = "{% if %}\n"  # a syntax error past the bound is not reached
    lines = warnings(project(tmp_path, files))
    assert any(f"nests templates deeper than {templates.MAX_DEPTH}" in w for w in lines)


def test_a_template_named_by_many_prompts_is_parsed_once(tmp_path: Path, monkeypatch) -> None:
    spec = project(tmp_path, {}, MINIMAL + "".join(f'prompt p{i} = template("ask.j2")\n'
                                                   for i in range(200)))
    calls = []
    real = templates._read
    monkeypatch.setattr(templates, "_read", lambda path: calls.append(path) or real(path))
    check_experiment(spec, project_root=spec.parent)
    assert len(calls) == 1


def test_a_template_that_is_not_utf8_is_located_at_the_prompt(tmp_path: Path) -> None:
    spec = project(tmp_path, {"ask.j2": "{% include 'latin.j2' %}\n"})
    (spec.parent / "latin.j2").write_bytes("Fièvre {{ x }}\n".encode("latin-1"))
    assert problems(spec)[0][0] == (f"{AT}: error: prompt template ask.j2 -> latin.j2 is not UTF-8 "
                                    "text (byte 2)")


def test_parse_findings_come_back_from_the_sidecar_and_names_are_judged_again(tmp_path: Path) -> None:
    spec = project(tmp_path, {"ask.j2": "{% include 'part.j2' %}{{ x }\n", "part.j2": "x\n"})
    first = problems(spec)
    assert first == problems(spec)  # the second check reads the sidecar: the same finding
    assert first[0][0] == f"{AT}: error: prompt template ask.j2: syntax error at line 1: unexpected '}}'"
    (spec.parent / "ask.j2").write_text(STEM + "{% include 'part.j2' %}\n")
    check_experiment(spec, project_root=spec.parent)  # parsed (and kept) anew
    (spec.parent / "part.j2").unlink()  # same text, but the name now leads nowhere
    assert problems(spec)[0][0] == (f"{AT}: error: prompt template ask.j2 reads 'part.j2', which "
                                    "does not exist in the prompt folder")


def test_small_constants_and_variables_in_arithmetic_pass(tmp_path: Path) -> None:
    spec = project(tmp_path, {"ask.j2": "{% macro stem(facts, clues, all_facts, answer, answer_type, hops) %}"
                                         "{{ hops ** 3 }}{% endmacro %}"
                                         "{{ '=' * 40 }} {{ '%03d' % 5 }} {{ 2 ** 64 }}\n"})
    assert warnings(spec) == []
