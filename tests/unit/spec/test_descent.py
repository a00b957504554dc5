"""The hand-written parser (`spec.descent`) with lark behind it reads every text exactly as lark's
parser of grammars/flm.lark alone does, and reads every spec people write without lark.

`parse_module` keeps the statements `descent.parse` reads and has lark read the rest (from the
statement before the first one descent refuses). What keeps results unchanged: for every text,
`parse_module` gives lark's statements (spans and default names included) or lark's syntax
error, word for word. It is checked on every shipped spec, every `flm` example in the docs, the
tests' own spec texts, lexer edge cases, thousands of seeded mutations of the specs, and random
sentences derived from lark's own rules.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest
from flm_fixtures import MINIMAL
from paths import REPO
from spec_mutations import mutate

from fleming_dsl.errors import SpecError
from fleming_dsl.spec import ast, descent, grammar
from fleming_dsl.spec.parser import parse_module
from fleming_dsl.spec.text import too_deep

MUTANTS = 3000  # about 5 s: most mutants are syntax errors, which both parsers refuse quickly


def lark_alone(text: str) -> tuple:
    """What lark's parser alone makes of a whole text: its statements, or its error."""
    try:
        return "statements", grammar.parse_statements(text, "spec.flm")
    except SpecError as err:
        return "error", str(err)


def descent_then_lark(text: str) -> tuple:
    """What `parse_module` makes of it (uncached): the same, it is asserted, as `lark_alone`."""
    try:
        return "statements", parse_module.__wrapped__(text, "spec.flm").statements
    except SpecError as err:
        return "error", str(err)


def by_hand(text: str) -> tuple | None:
    """The statements when the hand-written parser reads the whole text, else None."""
    statements, rest = descent.parse(text, "spec.flm")
    return statements if rest is None else None


def written_specs() -> dict[str, str]:
    """Every spec text people wrote: the shipped and test specs, the docs' examples, MINIMAL."""
    found = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8")
             for folder in ("specs", "tests/specs") for p in sorted((REPO / folder).rglob("*.flm"))}
    for doc in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        blocks = re.findall(r"```flm\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
        found.update({f"{doc.name} example {i + 1}": b for i, b in enumerate(blocks)})
    found["MINIMAL"] = MINIMAL
    return found


WRITTEN = written_specs()


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_every_written_spec_is_read_by_hand_as_lark_reads_it(name: str) -> None:
    text = WRITTEN[name]
    expected = lark_alone(text)
    if expected[0] == "statements":
        assert by_hand(text) == expected[1]
    else:  # a docs fragment that is not a whole spec
        assert descent_then_lark(text) == expected


# Texts where a global lexer and lark's contextual one could part ways, or where the grammar
# has a choice to make: each is either parsed alike or left to lark.
EDGE_CASES = [
    'model m = hf("x")', "model model = hf(model = model)", 'modelx = hf("a")',
    "stage s = sft(a, b) { sweep lr in [1e-5, 3e-5] }", "stage s = sft(a, b) { sweep = 1 }",
    "stage s = sft(a, b) { sweeplr in [1] }", "stage s = sft(a, b) { x = truex  y = true  z = false }",
    "stage s = sft(a, b) { rewards = 1.0 * correct + 0.2 * form + length }",
    "stage s = sft(a, b) { rewards = a + true }", "stage s = sft(a, b) { rewards = true + a }",
    "stage s = sft(a, b) { rewards = -0.5 * a }", "stage s = sft(a, b) { x = 0.5 * a }",
    "cluster { x = 1..3  y = 1:2  z = -1:2.5  w = 48h  v = 1.5e3  u = 1_000  t = 5mx }",
    "cluster { x = -5m }", "cluster { x = - 5 }", "cluster { x = -1..3 }", "cluster { x = 1..3.5 }",
    "cluster { x = 1.5m  y = 2d  z = 80GB  w = 30s  v = 1e5 }",
    "cluster { x = a == 1  y = b >= 0.5  z = c < -2 }", "cluster { x == 1 }",
    'sample s from g { path = disease -[treats]-> "effect/phenotype" --> * -["a b"]-> gene }',
    "sample s from g { path = * -[r]-> true }", "sample s from g { path = true -[r]-> x }",
    "sample s from g { path = * }", "sample s from g { path = a -[r] b }",
    "filter f from c { format  dedupe(minhash)  difficulty(grader) { easy = pass >= 0.75 } }",
    "filter f from c { x(true = 1) }", "filter f from c { x(a = true, b) }", "filter f from c { x() y(,) }",
    "evaluate [a, b,] on [c] as final { x = 1 }", "evaluate a on b asx", "evaluate a on b",
    "evaluate a on b evaluate c on d evaluate e on f as g evaluate h on i",
    'experiment "x" extends "base.flm" { seed = 1 }', 'experiment "x" extendsy "b"',
    'include "a.flm" drop m', 'prompt p = template("a\\"b\\\\c\\d")', 'prompt p = template("x")  { }',
    "stage s = grpo(a, mine_hard(b, estimate = 2)) { lora { r = 8 } resources { gpus = 8 } }",
    "cluster { x = [] y = [1,] z = [[1, 2], [a, b[c, d,]]] }", "cluster { x = [,] }",
    "cluster { x = a[b] y = f(a)(b) }", "cluster { x = f(a) [b] }", "cluster { x = ",
    "cluster { x = \"unterminated }", "cluster { x = 1 } # a comment\n# another", "cluster {\r\n x = 1\r\n}",
    "stage s = sft(a, b) { x = f(a)  model = 1 }", "stage s = sft(a, b) { r { }  cluster { } }",
    "stage s = sft(a, b) { d(x)  prompt = p }", "stage s = sft(a, b) { x = 1  model = 1 }",
    "stage s = sft(a, b) { model = 1  x = [1]  stage = 2  y = a[b]  sample = 3 }",
    "cluster { x = é }", 'cluster { x = "é" }', "", "   \n  # only a comment", "cluster { x = 1 }}",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_read_as_lark_reads_them(text: str) -> None:
    assert descent_then_lark(text) == lark_alone(text)


def test_mutated_specs_read_as_lark_reads_them() -> None:
    specs = [t for n, t in sorted(WRITTEN.items()) if n.startswith("specs/")]
    resumed, mismatched = 0, []
    for case in range(MUTANTS):
        rng = random.Random(f"descent:{case}")
        try:
            text = mutate(rng.choice(specs), rng).decode("utf-8")
        except UnicodeDecodeError:
            continue  # refused before parsing
        if too_deep(text, "spec.flm") is not None:
            continue  # refused before parsing
        if descent_then_lark(text) != lark_alone(text):
            mismatched.append(case)
        resumed += (descent.parse(text, "spec.flm")[1] or 0) > 0
    assert mismatched == []
    assert resumed > MUTANTS // 5  # lark takes over past the start of the file too


def test_a_late_syntax_error_is_read_by_lark_from_the_statement_before() -> None:
    text = MINIMAL + 'evaluate sft1 on [bench]\nmodel m hf("x")\n'
    statements, rest = descent.parse(text, "spec.flm")
    assert text[rest:].startswith("evaluate sft1 on [bench]")
    assert len(statements) == MINIMAL.count("\n")  # one statement a line
    assert descent_then_lark(text) == lark_alone(text)
    assert descent_then_lark(text)[1].splitlines()[0] == (
        "spec.flm:17:9: error: missing '=' after the declared name")


def test_what_only_lark_reads_keeps_the_default_evaluation_names() -> None:
    # lark's contextual lexer reads `modelx` as `model x`; the hand-written parser leaves it to lark
    text = MINIMAL + 'modelx = hf("a")\nevaluate [rl] on [test]\n'
    assert descent.parse(text, "spec.flm")[1] > 0
    kind, statements = descent_then_lark(text)
    assert (kind, statements) == lark_alone(text)
    assert [s.name.name for s in statements if isinstance(s, ast.EvaluateDecl)] == ["eval", "eval_2"]


# what a generated sentence writes for each of the grammar's regex terminals: keywords as names,
# escapes, every number form and unit
SAMPLES = {
    "NAME": ["a", "lr", "x_1", "_y", "model", "sweep", "true", "false", "as", "on", "in", "from",
             "with", "using", "extends", "cluster", "drop", "include", "evaluate"],
    "STRING": ['"x"', '""', '"a\\"b"', '"c:\\\\d"', '"-[r]-> {x}"', '"# not a comment"'],
    "INT": ["0", "7", "1_000"],
    "FLOAT": ["1.5", "1e-5", "2.0E3", "0.000_1"],
    "QUANTITY": ["48h", "80GB", "1.5m", "30s", "2d", "512MB"],
    "CMP": [">=", "<=", "==", ">", "<"],
}
GAPS = [" ", " ", "\n", "  ", "\n  # a comment\n", "\t"]
SENTENCES = 3000


def sentence(rng: random.Random, rules: dict, terminals: dict, budget: int = 60) -> str:
    """One random derivation of the grammar from `start`: long enough to use most rules, cut
    short (each rule's shortest expansion) once `budget` symbols are spent."""
    out: list[str] = []

    def expand(symbol, depth: int) -> None:
        if symbol.is_term:
            pattern = terminals[symbol.name]
            out.append(pattern.value if pattern.type == "str" else rng.choice(SAMPLES[symbol.name]))
            out.append(rng.choice(GAPS))
            return
        options = rules[symbol.name]
        if len(out) > budget or depth > 12:
            options = [min(options, key=len)]
        for child in rng.choice(options):
            expand(child, depth + 1)

    expand(rules["start"][0][0], 0)
    return "".join(out)


def test_random_sentences_of_the_grammar_parse_alike() -> None:
    lark = grammar.lark_parser()
    rules: dict[str, list] = {}
    for rule in lark.rules:
        rules.setdefault(rule.origin.name, []).append(rule.expansion)
    terminals = {t.name: t.pattern for t in lark.terminals}
    by_hand_alone, mismatched = 0, []
    for case in range(SENTENCES):
        text = sentence(random.Random(f"sentence:{case}"), rules, terminals)
        if too_deep(text, "spec.flm") is not None:
            continue
        expected = lark_alone(text)
        if descent_then_lark(text) != expected:
            mismatched.append(text)
        # every sentence lark reads, the hand-written parser reads whole (lark is not needed)
        assert expected[0] == "error" or by_hand(text) == expected[1], text
        by_hand_alone += expected[0] == "statements"
    assert mismatched == []
    assert by_hand_alone > SENTENCES // 2


def test_checking_a_valid_spec_never_imports_lark() -> None:
    code = ("import sys; from fleming_dsl.cli.main import main; "
            "code = main(['check', 'specs/fleming_r1_7b.flm']); print(code, 'lark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-2:] == ["0", "False"]
