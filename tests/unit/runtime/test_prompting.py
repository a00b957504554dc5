"""Prompt templates render in a sandbox: confined to their folder, bounded in time and size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fleming_dsl.runtime import prompting
from fleming_dsl.runtime.prompting import PromptError, call_macro, render


@pytest.fixture
def prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "prompts"
    folder.mkdir()
    prompting.load_template.cache_clear()
    yield folder
    prompting.load_template.cache_clear()


def write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return f"prompts/{name}"


def test_a_template_renders_and_includes_its_neighbours(prompts: Path) -> None:
    write(prompts, "part.j2", "Q: {{ question }}")
    path = write(prompts, "ask.j2", "{% include 'part.j2' %}\n\nAnswer with a letter.\n")
    assert render(path, question="Which drug?") == "Q: Which drug?\nAnswer with a letter."


def test_an_include_through_a_symlink_out_of_the_folder_is_refused(prompts: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("PASSWORD=hunter2\n")
    os.symlink(secret, prompts / "notes.j2")
    path = write(prompts, "ask.j2", "{% include 'notes.j2' %}")
    with pytest.raises(PromptError) as err:
        render(path)
    assert str(err.value) == ("prompts/ask.j2: template reads 'notes.j2', which lies outside the "
                              "prompt folder (symlinks are resolved)")
    assert "hunter2" not in str(err.value)


def test_a_template_that_is_a_symlink_out_of_the_folder_is_refused(prompts: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.j2").write_text("outside")
    os.symlink(tmp_path / "elsewhere.j2", prompts / "ask.j2")
    with pytest.raises(PromptError) as err:
        render("prompts/ask.j2")
    assert str(err.value) == ("prompts/ask.j2: template reads 'ask.j2', which lies outside the "
                              "prompt folder (symlinks are resolved)")


def test_a_loop_cannot_extend_the_list_it_walks(prompts: Path) -> None:
    path = write(prompts, "loop.j2", "{% set xs = [1] %}{% for x in xs %}{{ xs.append(x) }}{% endfor %}")
    started = time.monotonic()
    with pytest.raises(PromptError) as err:
        render(path)
    assert time.monotonic() - started < 5
    assert str(err.value).startswith("prompts/loop.j2: template blocked by the sandbox: ")


def test_output_is_bounded(prompts: Path) -> None:
    path = write(prompts, "big.j2", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    with pytest.raises(PromptError) as err:
        render(path)
    assert str(err.value) == "prompts/big.j2: rendered prompt is longer than 1,000,000 characters"


def test_render_time_is_bounded_even_when_nothing_is_written(prompts: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompting, "RENDER_SECONDS", 0.5)
    path = write(prompts, "slow.j2",
                 "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    started = time.monotonic()
    with pytest.raises(PromptError) as err:
        render(path)
    assert time.monotonic() - started < 5
    assert str(err.value) == "prompts/slow.j2: template took longer than 0.5 s to render"


def test_macro_calls_are_bounded_too(prompts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompting, "RENDER_SECONDS", 0.5)
    path = write(prompts, "m.j2", "{% macro stem() %}{% for i in range(100000) %}{% for j in range(100000) %}"
                                  "{% endfor %}{% endfor %}{% endmacro %}")
    with pytest.raises(PromptError) as err:
        call_macro(path, "stem")
    assert str(err.value) == "prompts/m.j2: template took longer than 0.5 s to render"
    ok = write(prompts, "ok.j2", "{% macro stem(x) %}about {{ x }}{% endmacro %}")
    assert call_macro(ok, "stem", x="aspirin") == "about aspirin"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text, message", [
    ("{{ (9**(9**9)) > 0 }}", "9 ** 387420489 is a number of about 1,549,681,956 bits"),
    ("{% set n = 9 %}{{ n ** (n ** n) }}", "9 ** 387420489 is a number of about 1,549,681,956 bits"),
    ("{{ 'a' * 10 ** 12 }}", "1 characters or items repeated 1,000,000,000,000 times, longer than a prompt"),
    ("{{ 'a'|center(999999999) }}", "filter 'center' given 999,999,999, longer than a prompt"),
    ("{{ '%999999999d' % 1 }}", "a %-format width longer than a prompt"),
    ("{{ '%999999999d'|format(1) }}", "a %-format width longer than a prompt"),
    ("{{ '{:>999999999}'.format(1) }}", "a format width or precision longer than a prompt"),
    ("{{ '{:.999999999f}'.format(1.5) }}", "a format width or precision longer than a prompt"),
    ("{{ '{x:{w}}'.format(x=1, w=10 ** 9) }}", "a format width or precision longer than a prompt"),
    ("{{ '{x:>99999999999999999999999}'.format_map({'x': 1}) }}",
     "a format width or precision longer than a prompt"),
])
def test_loading_and_rendering_are_bounded_whatever_the_constants(prompts: Path, text: str,
                                                                  message: str) -> None:
    """issue 28: jinja2 folded `9 ** (9 ** 9)` while compiling, before the render bound began."""
    path = write(prompts, "ask.j2", text)
    with pytest.raises(PromptError) as info:
        render(path)
    assert str(info.value) == f"prompts/ask.j2: template blocked by the sandbox: {message}"


def test_bounded_operators_and_filters_still_compute(prompts: Path) -> None:
    path = write(prompts, "ask.j2", "{{ 2 ** 10 }} {{ '-' * 3 }} {{ '%03d' % n }} {{ 'x'|center(5) }}|"
                                    "{{ items|join(',') }} {{ n * 3 }} {{ '{:>3}|{:.2f}'.format(n, 0.5) }} "
                                    "{{ '%02d'|format(n) }}")
    assert render(path, n=7, items=["a", "b"]) == "1024 --- 007   x  |a,b 21   7|0.50 07"
