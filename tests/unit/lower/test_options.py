"""The option table (`lower/options.py`, what docs/language.md and the language server show)
agrees with lowering (what `fleming check` accepts): same options in every block, same ranges.

A spec with a slot in every block (`@key@`) is lowered with an unknown option, or an option set
just outside its documented range, put into one slot; lowering's own message says what it
expected.
"""

from __future__ import annotations

import re

import pytest
from paths import REPO

from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.lower import options as table

TEMPLATE = '''experiment "opts" { seed = 7 @experiment@ }
cluster { account = "a" @cluster@ }
model base = tiny(hidden = 64 @tiny()@)
model teacher = template(error_rate = 0.1 @template()@) { temperature = 0.5 @model@ }
model served = hf("org/m") { backend = vllm(tp = 1 @vllm()@) }
model remote = openai(model = "m" @openai()@)
graph medkg = primekg("../data/medkg/kg.csv")
sample rare_dx from medkg {
  path = disease -[disease_phenotype_positive]-> "effect/phenotype"
  weight = inverse_degree(alpha = 0.5 @inverse_degree()@)
  distractors = same_type(k = 3 @same_type()@)
  count = 10 @sample@
}
dataset train = medqa("../data/train/medqa_train.jsonl" @dataset@)
dataset test = medqa("../data/eval/medqa_test.jsonl")
prompt ask = template("../prompts/question.j2")
prompt reason = template("../prompts/search.j2")
prompt rubric = template("../prompts/grader.j2")
synthesize questions from rare_dx with teacher using ask { variants = 2 @synthesize@ }
distill cot from [questions, train] with teacher using reason { protocol = search  keep = correct @distill@ }
filter clean from cot {
  format
  verify_label(votes = 3 @verify_label()@)
  dedupe(minhash @dedupe()@)
  decontaminate(against = [test] @decontaminate()@)
  difficulty(grader, model = teacher, prompt = rubric @difficulty()@) { easy = pass >= 0.75 @difficulty buckets@ }
}
reward correct = choice_match(tag = "answer" @choice_match()@)
reward form = regex(pattern = "x" @regex()@)
reward short = length_penalty(max_tokens = 10 @length_penalty()@)
reward long = overlong(max_tokens = 10, buffer = 4 @overlong()@)
reward graded = rubric(grader = served @rubric()@)
stage sft1 = sft(base, clean) { lr = 1e-3 }
stage rl1 = grpo(sft1, mine_hard(clean, pass < 0.5 @mine_hard()@)) {
  rewards = correct + form + short + long + graded
  until = plateau(reward @plateau()@)
  lr = 1e-6  max_steps = 4 @stage@
  lora { r = 4 @lora@ }
  resources { cpus = 1 @resources@ }
}
evaluate [base, rl1] on [test] { samples = 1 @evaluate@ }
'''

SLOTS = re.findall(r"@([^@]+)@", TEMPLATE)
# blocks whose rows and lowering both come from their IR model's `ir.option` fields
# (lower/schema.py): nothing is written twice there, so nothing is compared
FROM_SCHEMA = ("evaluate", "synthesize", "distill", "cluster", "plateau()", "tiny()", "dataset")
BY_HAND = [slot for slot in SLOTS if slot not in FROM_SCHEMA]


def spec_with(slot: str, key: str, value: str) -> str:
    inside_call = slot.endswith("()") or slot == "dataset"
    text = TEMPLATE.replace(f"@{slot}@", f", {key} = {value}" if inside_call else f" {key} = {value}")
    return re.sub(r" ?@[^@]+@", "", text)


def problems(text: str) -> list[str]:
    try:
        check_experiment(REPO / "specs" / "_options_test.flm", REPO, text=text)
    except SpecError as err:
        return [d.message + (f" | expected {d.expected}" if d.expected else "") for d in err.diagnostics]
    return []


def test_the_template_checks_and_has_a_slot_per_block():
    assert problems(re.sub(r" ?@[^@]+@", "", TEMPLATE)) == []
    assert sorted(SLOTS) == sorted(table.BY_KEY)


@pytest.mark.parametrize("slot", BY_HAND)
def test_the_table_lists_exactly_the_options_lowering_reads(slot: str):
    [message] = [m for m in problems(spec_with(slot, "zzz_unknown", "1")) if "unknown option 'zzz_unknown'" in m]
    expected = message.split(" | expected one of ", 1)[1].split(", ")
    assert sorted(expected) == sorted(o.name for o in table.BY_KEY[slot].options)


def _outside(rng: str) -> list[str]:
    """Values just outside a documented range (ranges lowering states in its messages)."""
    if m := re.fullmatch(r">= (\d+)", rng):
        return [str(int(m.group(1)) - 1)]
    if rng == "> 0":
        return ["0"]
    if rng == "in (0, 1]":
        return ["0", "1.5"]
    return []


RANGED = [(block.key, opt.name, opt.range, opt.type) for block in table.BLOCKS for opt in block.options
          if _outside(opt.range) and block.key not in FROM_SCHEMA]
# sizes and durations are written with their unit (a bare number is an error of its own)
_UNIT = {table._SIZE: "GB", table._DURATION: "h"}


@pytest.mark.parametrize("slot,key,rng,kind", RANGED, ids=[f"{s}.{k}" for s, k, _, _ in RANGED])
def test_documented_ranges_are_the_ones_lowering_enforces(slot: str, key: str, rng: str, kind: str):
    for value in _outside(rng):
        found = problems(spec_with(slot, key, value + _UNIT.get(kind, "")))
        said = re.compile(rf"'{key}' (threshold )?must be {re.escape(rng)}, got ")
        assert any(said.match(m) for m in found), (value, found)


def test_every_default_is_a_value_of_its_field():
    for block in table.BLOCKS:
        for opt in block.options:
            opt.default_text()  # reads "ir.Model.field" defaults: fails when a field is renamed


UNKNOWN_FUNCTION = {  # what lowering calls it -> (text in TEMPLATE, replacement)
    "model source": ("tiny(hidden", "zzz(hidden"),
    "backend": ("vllm(tp", "zzz(tp"),
    "graph format": ("primekg(", "zzz("),
    "dataset format": ('medqa("../data/eval', 'zzz("../data/eval'),
    "prompt source": ('ask = template(', 'ask = zzz('),
    "reward function": ("choice_match(", "zzz("),
    "stage method": ("sft(base", "zzz(base"),
    "distractor policy": ("same_type(", "zzz("),
}


@pytest.mark.parametrize("what", sorted(table.SOURCES))
def test_the_table_lists_the_functions_lowering_knows(what: str):
    old, new = UNKNOWN_FUNCTION[what]
    text = re.sub(r" ?@[^@]+@", "", TEMPLATE).replace(old, new, 1)
    [message] = [m for m in problems(text) if m.startswith(f"unknown {what} 'zzz'")]
    expected = message.split(" | expected one of ", 1)[1].split(", ")
    if what == "reward function":  # plugins add to the built-ins
        assert set(table.SOURCES[what]) <= set(expected)
    else:
        assert sorted(expected) == sorted(table.SOURCES[what])
