"""docs/language.md: its option tables are what `fleming reference` generates from the table the
checker is held to, and every `flm` example in it passes `fleming check`."""

from __future__ import annotations

import re

import pytest
from paths import REPO

from fleming_dsl.cli.reference import render, section
from fleming_dsl.compiler import check_experiment
from fleming_dsl.lower import options as table

REFERENCE = REPO / "docs" / "language.md"
TEXT = REFERENCE.read_text(encoding="utf-8")
EXAMPLES = re.findall(r"^```flm\n(.*?)^```$", TEXT, re.S | re.M)


def test_generated_sections_are_up_to_date():
    assert render(TEXT) == TEXT, "run `fleming reference` and commit docs/language.md"


def test_every_block_and_the_sources_have_a_section():
    generated = set(re.findall(r"<!-- generated: ([^>]+?) -->", TEXT))
    assert generated == {f"options {key}" for key in table.BY_KEY} | {"sources"}


def test_a_changed_table_shows_up_as_a_difference():
    stale = TEXT.replace(section("options stage"), section("options stage").replace("learning rate", "lr"))
    assert stale != TEXT and render(stale) == TEXT


def test_the_reference_has_examples_for_every_declaration():
    kinds = {"model", "graph", "sample", "dataset", "prompt", "synthesize", "distill", "filter",
             "reward", "stage", "evaluate", "cluster", "include", "drop", "extends", "sweep"}
    written = {k for k in kinds if any(re.search(rf"(^|\s){k}\s", e, re.M) for e in EXAMPLES)}
    assert kinds <= written


@pytest.mark.parametrize("n", range(len(EXAMPLES)))
def test_every_example_passes_fleming_check(n: int):
    # checked as if it were a file in docs/, so its relative paths resolve from there
    exp, warnings = check_experiment(REPO / "docs" / f"_example_{n}.flm", REPO, text=EXAMPLES[n])
    assert exp.name
