"""Bad input never gives a traceback, and a spec cannot read or write outside the project.

Each case is a finding of issue 11 (a fuzzer, a new user, an adversarial review): the first
line of the error, and its hint, are asserted word for word."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flm_fixtures import FILES, MINIMAL, write_project

from fleming_dsl.compiler import check_experiment, load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.spec.parser import parse_module


def R(old: str, new: str) -> str:  # noqa: N802 - reads like the edit it makes
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new, 1)


def error_of(tmp_path: Path, text: str | None = None, *, spec: Path | None = None) -> SpecError:
    path = spec if spec is not None else write_project(tmp_path, text or MINIMAL)
    with pytest.raises(SpecError) as info:
        load_experiment(path, project_root=tmp_path)
    assert "Traceback" not in str(info.value)
    return info.value


def first(err: SpecError) -> tuple[str, str | None]:
    return err.diagnostics[0].first_line(), err.diagnostics[0].hint


# ---------------------------------------------------------------- tracebacks the fuzzer found


def test_a_path_too_long_for_the_file_system(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + 'include "' + "a" * 300 + '.flm"\n')
    assert first(err) == ("spec.flm:16:9: error: included file not found: " + "a" * 77
                          + "... (File name too long)", "paths are relative to the folder of spec.flm")
    err = error_of(tmp_path, R('"train.jsonl"', '"' + "b" * 300 + '.jsonl"'))
    assert first(err) == ("spec.flm:6:21: error: cannot use data path: File name too long", None)


def test_an_infinite_number(tmp_path: Path) -> None:
    err = error_of(tmp_path, R("{ lr = 1e-4 }", "{ lr = 1e999  resources { time = 1e999 } }"))
    assert [d.first_line() for d in err.diagnostics] == [
        "spec.flm:13:38: error: 'lr' must be a finite number, got inf",
        "spec.flm:13:64: error: 'time' must be a duration such as 30m, 48h or 2d, got a number"]
    err = error_of(tmp_path, R("{ lr = 1e-4 }", "{ resources { time = " + "9" * 400 + "h } }"))
    assert first(err) == ("spec.flm:13:52: error: 'time' is too large", "at most 366d")


def test_a_whole_number_too_long_for_an_int(tmp_path: Path) -> None:
    # Python refuses to read an int of more than 4,300 digits: such a number reads as inf
    huge = "9" * 5000
    err = error_of(tmp_path, R("{ lr = 1e-4 }", "{ lr = " + huge + "  max_steps = -" + huge + " }"))
    assert [d.first_line() for d in err.diagnostics] == [
        "spec.flm:13:38: error: 'lr' must be a finite number, got inf",
        "spec.flm:13:5052: error: 'max_steps' must be a whole number, got a number"]
    err = error_of(tmp_path, MINIMAL.replace("count = 10", "count = 10  hops = 1.." + huge, 1))
    assert first(err)[0] == ("spec.flm:5:75: error: 'hops' goes up to inf, but the metapath has 1 "
                             "step: a metapath is walked as written")
    err = error_of(tmp_path, MINIMAL.replace("path = disease -[causes]-> symptom", "hops = 1.." + huge, 1))
    assert "spec.flm:5:27: error: 'hops' must be a range of whole numbers, got 1..inf" in [
        d.first_line() for d in err.diagnostics]


def test_nesting_500_deep(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "cluster { x = " + "[" * 500 + "]" * 500 + " }\n")
    assert first(err) == ("spec.flm:16:78: error: nesting is too deep: more than 64 brackets inside "
                          "each other", None)


def test_a_long_chain_of_stages_written_last_to_first(tmp_path: Path) -> None:
    chain = [f"stage s{i + 1} = sft({'base' if i == 0 else f's{i}'}, clean) {{ lr = 1e-4 }}\n"
             for i in range(3000)]
    exp, _ = check_experiment(write_project(tmp_path, MINIMAL + "".join(reversed(chain))),
                              project_root=tmp_path)
    assert exp.stages[-1].init == "base"


# ---------------------------------------------------------------- encodings


def test_latin1_is_located_at_the_first_bad_byte(tmp_path: Path) -> None:
    spec = tmp_path / "spec.flm"
    write_project(tmp_path)
    spec.write_bytes(MINIMAL.replace("# ", "").encode() + "# café au lait\n".encode("latin-1"))
    err = error_of(tmp_path, spec=spec)
    assert first(err) == ("spec.flm:16:6: error: the file is not UTF-8: byte 0xe9 cannot start a "
                          "character here", "the file looks like Latin-1 or Windows-1252 text: save it as UTF-8")


def test_utf16_gets_its_own_hint(tmp_path: Path) -> None:
    spec = tmp_path / "spec.flm"
    write_project(tmp_path)
    spec.write_bytes(MINIMAL.encode("utf-16"))
    err = error_of(tmp_path, spec=spec)
    assert first(err) == ("spec.flm:1:1: error: the file is not UTF-8: byte 0xff cannot start a "
                          "character here", "the file looks like UTF-16: save it as UTF-8")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    spec = write_project(tmp_path)
    spec.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_experiment(spec, project_root=tmp_path).name == "t"


# ---------------------------------------------------------------- what a new user saw


def test_a_missing_closing_brace_says_so(tmp_path: Path) -> None:
    text = R("{ lr = 1e-4 }", "{\n  lr = 1e-4\n")
    err = error_of(tmp_path, text)
    assert first(err) == ("spec.flm:14:12: error: unclosed block: missing '}'",
                          "the '{' at spec.flm:13:31 is not closed")
    with pytest.raises(SpecError) as info:
        parse_module('model m = hf("x") {\n  temperature = 0.5\n\nmodel r = hf("y")\n', "x.flm")
    assert info.value.diagnostics[0].first_line() == "x.flm:2:20: error: unclosed block: missing '}'"


def test_a_duplicate_name_does_not_suggest_itself(tmp_path: Path) -> None:
    err = error_of(tmp_path, R("dataset test =", "dataset teacher ="))
    assert [(d.first_line(), d.hint) for d in err.diagnostics] == [
        ("spec.flm:7:9: error: 'teacher' is already declared (as a model at spec.flm:3)",
         "give it another name, or drop one of them"),
        ("spec.flm:15:19: error: undefined name 'test' (a benchmark)", None)]


def test_an_error_in_a_spec_that_extends_a_swept_base_is_printed_once(tmp_path: Path) -> None:
    write_project(tmp_path, R("{ lr = 1e-4 }", "{ sweep lr in [1e-4, 1e-5] }"), name="base.flm")
    child = tmp_path / "child.flm"
    child.write_text('experiment "c" extends "base.flm" { }\n'
                     "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  "
                     "batch = 4  lrr = 1 }\n")
    err = error_of(tmp_path, spec=child)
    assert str(err).count("unknown option 'lrr'") == 1
    assert len(err.diagnostics) == 1


@pytest.mark.parametrize("written,message,hint", [
    ("mem = 64", "'mem' must be a size such as 512MB or 80GB, got a number", "write the unit: 64GB"),
    ("time = 48", "'time' must be a duration such as 30m, 48h or 2d, got a number", "write the unit: 48h"),
    ("time = 0h", "'time' must be > 0, got 0h", None),
    ("mem = 0GB", "'mem' must be > 0, got 0GB", None),
])
def test_sizes_and_durations_need_a_unit_and_are_never_zero(tmp_path: Path, written: str, message: str,
                                                           hint: str | None) -> None:
    err = error_of(tmp_path, R("{ lr = 1e-4 }", f"{{ resources {{ {written} }} }}"))
    assert first(err) == (f"spec.flm:13:{47 + len(written.split('=')[0])}: error: {message}", hint)


# ---------------------------------------------------------------- the project boundary


def test_include_of_the_environment_prints_nothing_of_it(tmp_path: Path) -> None:
    os.environ["FLEMING_TEST_SECRET"] = "s3cr3t-value"
    try:
        err = error_of(tmp_path, MINIMAL + 'include "/proc/self/environ"\n')
    finally:
        del os.environ["FLEMING_TEST_SECRET"]
    assert first(err) == ("spec.flm:16:9: error: included file must be a .flm spec: /proc/self/environ",
                          "fleming reads .flm specs only")
    assert "s3cr3t" not in str(err)


def test_include_of_a_system_file_prints_nothing_of_it(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + 'include "../../../../../../../../etc/passwd"\n')
    assert "root:" not in str(err)
    assert first(err)[0] == ("spec.flm:16:9: error: included file must be a .flm spec: "
                             "../../../../../../../../etc/passwd")


def test_specs_outside_the_project_are_refused(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "base.flm").write_text(MINIMAL)
    spec = write_project(project, MINIMAL + 'include "../outside/base.flm"\n')
    with pytest.raises(SpecError) as info:
        load_experiment(spec, project_root=project)
    assert first(info.value) == (
        "spec.flm:16:9: error: included file '../outside/base.flm' lies outside the project",
        "source files (includes, bases, prompt templates) must be inside the project root (the "
        "folder fleming runs in); list other trusted folders in FLEMING_ALLOW_PATHS")
    # a symlink inside the project that points out is outside too
    os.symlink(outside / "base.flm", project / "linked.flm")
    spec.write_text('experiment "c" extends "linked.flm" { }\n')
    with pytest.raises(SpecError) as info:
        load_experiment(spec, project_root=project)
    assert first(info.value)[0] == "spec.flm:1:24: error: base spec file 'linked.flm' lies outside the project"


def test_an_allowed_folder_may_hold_a_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    shared.mkdir()
    write_project(shared, MINIMAL, name="base.flm")
    spec = project / "spec.flm"
    spec.write_text('experiment "c" extends "../shared/base.flm" { }\n')
    monkeypatch.setenv("FLEMING_ALLOW_PATHS", str(shared))
    assert load_experiment(spec, project_root=project).name == "c"


def test_a_prompt_template_outside_the_project_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "evil.j2").write_text("{{ x }}")
    err = error_of(project, spec=write_project(project, R('template("ask.j2")', 'template("../evil.j2")')))
    assert first(err)[0] == "spec.flm:8:23: error: prompt template '../evil.j2' lies outside the project"


def test_a_non_spec_top_level_file_is_never_read(tmp_path: Path) -> None:
    write_project(tmp_path)
    secret = tmp_path / "notes.txt"
    secret.write_text("API_KEY=abc123 is here\n")
    err = error_of(tmp_path, spec=secret)
    assert str(err) == ("notes.txt:1:1: error: spec file must be a .flm spec: notes.txt\n"
                        "  hint: fleming reads .flm specs only")


def test_a_spec_linked_to_the_environment_prints_nothing_of_it(tmp_path: Path) -> None:
    """issue 28: `specs/env.flm -> /proc/self/environ` printed the environment in the parse error."""
    (tmp_path / "specs").mkdir()
    os.symlink("/proc/self/environ", tmp_path / "specs" / "env.flm")
    os.environ["FLEMING_TEST_SECRET"] = "s3cr3t-value"
    try:
        err = error_of(tmp_path, spec=tmp_path / "specs" / "env.flm")
    finally:
        del os.environ["FLEMING_TEST_SECRET"]
    assert first(err)[0] == "specs/env.flm:1:1: error: spec file 'specs/env.flm' lies outside the project"
    assert "s3cr3t" not in str(err)


def test_a_spec_linked_to_a_project_file_that_is_not_a_spec_is_refused(tmp_path: Path) -> None:
    """A link inside the project to its `.env` is judged by what it points at."""
    (tmp_path / ".env").write_text("HF_TOKEN=hf_s3cr3t\n")
    os.symlink(tmp_path / ".env", tmp_path / "env.flm")
    err = error_of(tmp_path, spec=tmp_path / "env.flm")
    assert str(err) == ("env.flm:1:1: error: spec file 'env.flm' is a link to a file that is not a .flm spec\n"
                        "  hint: fleming reads .flm specs only; link to the spec itself or copy it")
    err = error_of(tmp_path, MINIMAL + 'include "env.flm"\n')
    assert first(err)[0] == "spec.flm:16:9: error: included file 'env.flm' is a link to a file that is not a .flm spec"


@pytest.mark.parametrize("workdir,message", [
    ("/etc", "'workdir' must be a folder inside the project, got '/etc'"),
    ("../../../..", "'workdir' must be a folder inside the project, got '../../../..'"),
    (".", "'workdir' is the project root itself: jobs would write among the sources"),
    ("runs/{name}", "'workdir' may not contain '{', '}'"),
])
def test_outputs_stay_inside_the_project(tmp_path: Path, workdir: str, message: str) -> None:
    err = error_of(tmp_path, R("seed = 1", f'seed = 1  workdir = "{workdir}"'))
    assert first(err)[0] == f"spec.flm:1:38: error: {message}"


def test_a_workdir_up_from_the_spec_folder_but_inside_the_project_is_fine(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    for f, text in FILES.items():
        (tmp_path / "specs" / f).write_text(text)
    spec = tmp_path / "specs" / "s.flm"
    spec.write_text(R("seed = 1", 'seed = 1  workdir = "../runs/tiny"'))
    assert load_experiment(spec, project_root=tmp_path).workdir == "runs/tiny"


@pytest.mark.parametrize("start", ["é", "ß", "Ω", "数"])
def test_a_line_starting_with_a_non_ascii_letter_after_a_syntax_error(start: str) -> None:
    """issue 28: spec/grammar.py `unclosed_block` matched keywords on any letter and crashed."""
    text = f'experiment "t" {{ seed = 1 }}\nmodel base = tiny(hidden = 32\n{start}valuate x\n'
    with pytest.raises(SpecError) as info:
        parse_module(text, "u.flm")
    assert str(info.value).splitlines()[0] == f"u.flm:3:1: error: unexpected character '{start}'"
