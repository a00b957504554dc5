"""`fmt`: canonical layout that keeps comments, is idempotent and keeps the IR."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import REPO

from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.spec.fmt import format_source
from fleming_dsl.spec.grammar import parse_tokens

SPECS = sorted(p for p in (REPO / "specs").glob("*.flm") if not p.name.startswith("."))
# standalone specs (an extending spec's IR depends on its base file, which stays as is)
PERTURBABLE = [REPO / "specs" / "tiny.flm", REPO / "specs" / "fleming_r1_base.flm"]


def without_spans(value):
    if isinstance(value, dict):
        return {k: without_spans(v) for k, v in value.items() if k != "span"}
    if isinstance(value, list):
        return [without_spans(v) for v in value]
    return value


def ir_of(text: str, like: Path) -> dict:
    """The IR of `text` as if it were the spec file `like` (nothing is written)."""
    exp = load_experiment(like, project_root=REPO, text=text)
    return without_spans(exp.model_dump(mode="json"))


def tokens_with_comments(text: str) -> list[str]:
    """The source's tokens as written, comments included, in order."""
    tokens, whole = parse_tokens(text)
    assert whole
    return [str(t) for t in tokens]


def relayout(tokens: list[str], seps: list[str]) -> str:
    out = []
    for i, tok in enumerate(tokens):
        out.append(tok)
        sep = seps[i % len(seps)]
        out.append(sep if not tok.startswith("#") or "\n" in sep else sep + "\n")
    return "".join(out)


SEPARATORS = st.lists(st.sampled_from([" ", "  ", "\n", "\n\n", "\t", " \n  ", "  # note\n"]),
                      min_size=1, max_size=12)


# ---------------------------------------------------------------- exact layout


def test_layout_of_a_messy_spec() -> None:
    messy = ('# header comment\n\n\n'
             'experiment   "x"{seed=1 workdir="w"}   # trailing\n'
             'model   m=tiny( hidden=8,layers = 1 ,)\n'
             '\n'
             'stage s=sft(m,d){lr=1e-5 epochs = 2   # why two\n'
             '  # about resources\n'
             '  resources{gpus=1 mem=8GB}\n'
             '  sweep lr in [1e-5,2e-5]\n'
             '}\n'
             'evaluate s on [a,b]{}\n'
             '# the end\n')
    assert format_source(messy) == (
        '# header comment\n'
        '\n'
        'experiment "x" {\n'
        '  seed = 1\n'
        '  workdir = "w"\n'
        '}  # trailing\n'
        'model m = tiny(hidden = 8, layers = 1)\n'
        '\n'
        'stage s = sft(m, d) {\n'
        '  lr = 1e-5\n'
        '  epochs = 2  # why two\n'
        '  # about resources\n'
        '  resources {\n'
        '    gpus = 1\n'
        '    mem = 8GB\n'
        '  }\n'
        '  sweep lr in [1e-5, 2e-5]\n'
        '}\n'
        'evaluate s on [a, b] {}\n'
        '# the end\n')


def test_equals_signs_align_over_runs_of_declarations() -> None:
    text = ('model base = hf("a")\nmodel teacher = hf("b")\n\nreward r = regex("x")\n'
            'stage s = sft(base, d) { lr = 1 max_steps = 2  # c\n  resources { gpus = 1 } epochs = 1 }\n')
    assert format_source(text) == (
        'model base    = hf("a")\n'
        'model teacher = hf("b")\n'
        '\n'
        'reward r = regex("x")\n'
        'stage s  = sft(base, d) {\n'
        '  lr = 1\n'
        '  max_steps = 2  # c\n'
        '  resources {\n'
        '    gpus = 1\n'
        '  }\n'
        '  epochs = 1\n'
        '}\n')


def test_comment_before_closing_brace_stays_inside() -> None:
    assert format_source("cluster {\n  account = \"a\"\n  # last\n}\n") == \
        'cluster {\n  account = "a"\n  # last\n}\n'


def test_literals_are_kept_as_written() -> None:
    text = 'sample s from g {\n  count = 20_000\n  hops = 2..4\n  path = a -["x y"]-> * --> b\n}\n'
    assert format_source(text) == text


def test_bad_syntax_is_a_located_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        format_source('model m hf("x")\n', "m.flm")
    assert str(info.value).splitlines()[0] == "m.flm:1:9: error: missing '=' after the declared name"


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_are_in_canonical_layout(spec: Path) -> None:
    text = spec.read_text()
    assert format_source(text) == text


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("spec", PERTURBABLE, ids=[p.name for p in PERTURBABLE])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seps=SEPARATORS)
def test_fmt_is_idempotent_and_keeps_the_ir_under_relayout(spec: Path, seps: list[str]) -> None:
    original = spec.read_text()
    messy = relayout(tokens_with_comments(original), seps)
    once = format_source(messy)
    assert format_source(once) == once
    assert ir_of(once, spec) == ir_of(original, spec)
    # every comment survives (a comment the relayout added is kept too)
    assert [t.rstrip() for t in tokens_with_comments(once) if t.startswith("#")] == \
        [t.rstrip() for t in tokens_with_comments(messy) if t.startswith("#")]


def _option_runs(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) of runs of consecutive single-line `key = value` options at one indent."""
    is_option = [bool(re.match(r"^\s+\w+ = ", l)) and not l.rstrip().endswith("{") for l in lines]
    runs, i = [], 0
    while i < len(lines):
        j = i
        while j < len(lines) and is_option[j] and \
                len(lines[j]) - len(lines[j].lstrip()) == len(lines[i]) - len(lines[i].lstrip()):
            j += 1
        if j - i > 1:
            runs.append((i, j))
        i = max(j, i + 1)
    return runs


@pytest.mark.parametrize("spec", PERTURBABLE, ids=[p.name for p in PERTURBABLE])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_option_order_does_not_change_the_ir(spec: Path, data) -> None:
    original = spec.read_text()
    lines = original.splitlines()
    for start, end in _option_runs(lines):
        lines[start:end] = data.draw(st.permutations(lines[start:end]))
    shuffled = "\n".join(lines) + "\n"
    assert format_source(shuffled) == shuffled  # still canonical: fmt keeps the order written
    assert ir_of(shuffled, spec) == ir_of(original, spec)


# ---------------------------------------------------------------- small random specs

def _int_text(n: int, underscores: bool) -> str:
    return f"{n:_}" if underscores else str(n)


@st.composite
def small_specs(draw) -> tuple[str, dict]:
    """A small valid spec with random values written in random ways, and what they must lower to."""
    count = draw(st.integers(1, 10**7))
    lr = draw(st.sampled_from([1e-4, 5e-7, 0.003, 2.5e-5]))
    lr_text = draw(st.sampled_from([repr(lr), f"{lr:e}", f"{lr:.10f}".rstrip("0")]))
    weights = draw(st.lists(st.sampled_from([0.1, 0.25, 1.0, 2.0]), min_size=1, max_size=3))
    hours = draw(st.integers(1, 96))
    comment = draw(st.sampled_from(["", "  # why", "\n# own line\n"]))
    rewards = " + ".join(f"{w} * r{i}" for i, w in enumerate(weights))
    text = MINIMAL_FOR_FMT.format(
        count=_int_text(count, draw(st.booleans())), lr=lr_text, comment=comment,
        reward_decls="\n".join(f'reward r{i} = choice_match(tag = "answer")' for i in range(len(weights))),
        rewards=rewards, hours=hours)
    return text, {"count": count, "lr": lr, "weights": weights, "time_min": hours * 60}


MINIMAL_FOR_FMT = """experiment "r" {{ seed = 3 }}
model base = tiny(hidden = 16){comment}
model teacher = template()
graph kg = primekg("../data/medkg/kg.csv")
sample s from kg {{ path = disease -[disease_phenotype_positive]-> "effect/phenotype"  count = {count} }}
dataset test = medqa("../data/eval/medqa_test.jsonl")
prompt ask = template("../prompts/question.j2")
synthesize q from s with teacher using ask
{reward_decls}
stage rl = grpo(base, q) {{ lr = {lr}  rewards = {rewards}  generations = 2  batch = 4 resources {{ time = {hours}h }} }}
evaluate rl on [test]
"""


@settings(max_examples=25, deadline=None)
@given(case=small_specs())
def test_random_small_specs_format_and_lower_faithfully(case) -> None:
    text, expected = case
    like = REPO / "specs" / "random.flm"
    once = format_source(text)
    assert format_source(once) == once
    ir = ir_of(once, like)
    assert ir == ir_of(text, like)
    assert ir["samples"][0]["count"] == expected["count"]
    stage = ir["stages"][0]
    assert stage["training"]["lr"] == pytest.approx(expected["lr"])
    assert [t["weight"] for t in stage["rewards"]] == expected["weights"]
    assert stage["resources"]["time_min"] == expected["time_min"]
