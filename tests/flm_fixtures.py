"""A small valid spec and its files, for the front-end tests (parser, errors, fmt)."""

from __future__ import annotations

from pathlib import Path

MINIMAL = '''\
experiment "t" { seed = 1 }
model base = tiny(hidden = 32)
model teacher = template()
graph kg = triples("kg.tsv")
sample s from kg { path = disease -[causes]-> symptom  count = 10 }
dataset train = mcq("train.jsonl")
dataset test = mcq("test.jsonl")
prompt ask = template("ask.j2")
synthesize q from s with teacher using ask
distill cot from [q, train] with teacher using ask
filter clean from cot { format  difficulty(model = base) { easy = pass >= 0.75  moderate = pass >= 0.25 } }
reward correct = choice_match(tag = "answer")
stage sft1 = sft(base, clean) { lr = 1e-4 }
stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  batch = 4 }
evaluate [rl] on [test]
'''

# the prompt of synthesize q and distill cot: the template teacher answers q with its `stem`
_PROMPT = ("{% macro stem(facts, clues, answer, answer_type, hops, all_facts) %}Which {{ answer_type }} "
           "{{ clues | join(' and ') }}?{% endmacro %}x\n")
_MCQ_ROW = '{"question": "q?", "options": {"A": "a", "B": "b"}, "answer": "A"}\n'
# what MINIMAL's files hold: `fleming check` reads a local graph's names and a dataset's first row
FILES = {"kg.tsv": "flu\tdisease\tcauses\tfever\tsymptom\n", "train.jsonl": _MCQ_ROW,
         "test.jsonl": _MCQ_ROW, "ask.j2": _PROMPT}


def write_project(root: Path, spec: str = MINIMAL, name: str = "spec.flm") -> Path:
    """The spec and the files it names, under `root`; returns the spec path."""
    for f, text in FILES.items():
        (root / f).write_text(text)
    path = root / name
    path.write_text(spec)
    return path


def edit(old: str, new: str, text: str = MINIMAL) -> str:
    """`text` with the first `old` replaced (which must be there: a test edits what it names)."""
    assert old in text, old
    return text.replace(old, new, 1)


def check_errors(tmp_path: Path, text: str):
    """The SpecError `fleming check` raises for `text` written as a project under tmp_path."""
    import pytest

    from fleming_dsl.compiler import check_experiment
    from fleming_dsl.errors import SpecError

    with pytest.raises(SpecError) as info:
        check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    return info.value


def check_warnings(tmp_path: Path, text: str) -> list[str]:
    """The first lines of the warnings `fleming check` gives `text` (which must pass)."""
    from fleming_dsl.compiler import check_experiment

    return [w.first_line() for w in check_experiment(write_project(tmp_path, text), project_root=tmp_path)[1]]
