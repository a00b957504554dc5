"""Reward functions word for word, the registry, and the entry-point plugin group."""

from __future__ import annotations

from importlib import metadata
from types import SimpleNamespace

import pytest

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.train import rewards

FORM = "^<think>.*</think><answer>[A-D]</answer>$"


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_choice_match_reads_the_answer_tag_and_compares_to_the_label() -> None:
    fn = rewards.choice_match()
    completions = [
        "<think>x</think><answer>B</answer>",
        "<think>x</think><answer>C</answer>",
        "<think>first A</think><answer>A</answer> then <answer>B</answer>",  # last tag wins
        "The answer is (B)",
        "no letter at all",
    ]
    assert fn([], completions, answer=["B", "B", "B", "B", "B"]) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_choice_match_accepts_conversational_completions_and_other_tags() -> None:
    assert rewards.choice_match()([], [conv("<answer>D</answer>")], answer=["D"]) == [1.0]
    fn = rewards.choice_match(tag="final")
    assert fn([], ["<final>C</final>", "<answer>C</answer>"], answer=["C", "C"]) == [1.0, 0.0]


def test_regex_rewards_a_full_match_only_with_dotall() -> None:
    fn = rewards.regex(FORM)
    completions = [
        "<think>line one\nline two</think><answer>A</answer>",
        "<think>x</think><answer>E</answer>",
        "<think>x</think><answer>A</answer> trailing",
        "<answer>A</answer>",
    ]
    assert fn([], completions) == [1.0, 0.0, 0.0, 0.0]
    assert rewards.regex("<answer>[A-D]</answer>")([], ["x <answer>A</answer>"]) == [0.0]


def test_regex_with_a_bad_pattern_is_a_job_error() -> None:
    with pytest.raises(JobError, match=r"^reward regex: option 'pattern' is not a valid regular expression"):
        rewards.regex("(<think>")


def test_length_penalty_is_zero_up_to_max_then_linearly_negative() -> None:
    fn = rewards.length_penalty(max_tokens=4)
    ids = [[1] * 3, [1] * 4, [1] * 6, [1] * 12]
    assert fn([], ["a"] * 4, completion_ids=ids) == [0.0, 0.0, -0.5, -2.0]
    assert fn([], ["one two three four five"]) == [-0.25]  # words stand in without ids


def test_overlong_is_dapos_soft_length_penalty() -> None:
    fn = rewards.overlong(max_tokens=8, buffer=4)
    ids = [[1] * n for n in (3, 4, 5, 6, 8, 9)]
    assert fn([], ["x"] * 6, completion_ids=ids) == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    with pytest.raises(JobError, match=r"^reward overlong: options need 0 < buffer <= max_tokens"):
        rewards.overlong(max_tokens=4, buffer=8)


def test_unknown_reward_lists_the_registered_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [])
    with pytest.raises(JobError) as err:
        rewards.make_reward("choise_match", {})
    assert str(err.value) == ("unknown reward function 'choise_match'; "
                              "registered: choice_match, length_penalty, overlong, regex, rubric")


def test_bad_options_name_the_function() -> None:
    with pytest.raises(JobError, match=r"^reward length_penalty: bad options \['max_len'\]"):
        rewards.make_reward("length_penalty", {"max_len": 3})


def shouting(word: str = "STAT"):
    """A plugin factory, as a third-party package would ship it."""
    def reward(prompts, completions, **kwargs):
        return [1.0 if word in rewards.completion_text(c) else 0.0 for c in completions]
    return reward


def test_plugin_found_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_entry_points(group=None):
        seen.append(group)
        return [metadata.EntryPoint(name="shouting", value=f"{__name__}:shouting",
                                    group=rewards.ENTRY_POINT_GROUP)]

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    assert "shouting" in rewards.registered()
    fn = rewards.make_reward("shouting", {"word": "NOW"})
    assert fn([], ["do it NOW", conv("later")]) == [1.0, 0.0]
    assert seen and set(seen) == {"fleming_dsl.rewards"}


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [
        metadata.EntryPoint(name="regex", value=f"{__name__}:shouting", group=rewards.ENTRY_POINT_GROUP)])
    assert rewards.lookup("regex") is rewards.regex


def test_weighted_terms_from_job_config() -> None:
    specs = [SimpleNamespace(name="correct", function="choice_match", weight=1.0, options={}),
             SimpleNamespace(name="form", function="regex", weight=0.2, options={"pattern": FORM})]
    terms = rewards.build_terms(specs)
    completions = ["<think>x</think><answer>A</answer>", "<think>x</think><answer>B</answer>", "B"]
    per_term = {t.name: t.fn([], completions, answer=["A", "A", "B"]) for t in terms}
    assert per_term == {"correct": [1.0, 0.0, 1.0], "form": [1.0, 1.0, 0.0]}
    assert rewards.weighted_total(per_term, terms) == pytest.approx([1.2, 0.2, 1.0])


def test_a_stage_without_rewards_is_a_job_error() -> None:
    with pytest.raises(JobError, match=r"^field 'rewards': a GRPO stage needs at least one reward term$"):
        rewards.build_terms([])


def test_choice_match_accepts_the_option_text_only_when_told() -> None:
    completions = ["<think>x</think><answer>Pneumonia.</answer>",  # normalised: case, full stop
                   "<think>x</think><answer>B</answer>",
                   "<think>x</think><answer>asthma</answer>",  # another option's text
                   "<think>x</think><answer>pneumonia, probably</answer>"]  # not exact
    options = [["asthma", "pneumonia", "gout"]] * 4
    answer = ["B"] * 4
    assert rewards.choice_match(accept="text")([], completions, answer=answer,
                                               options=options) == [1.0, 1.0, 0.0, 0.0]
    assert rewards.choice_match()([], completions, answer=answer,
                                  options=options) == [0.0, 1.0, 0.0, 0.0]
    with pytest.raises(JobError, match="option 'accept' must be one of letter, text, got 'txt'"):
        rewards.choice_match(accept="txt")


def test_choice_match_partial_pays_for_another_option_never_for_an_answer_off_the_list() -> None:
    completions = ["<think>x</think><answer>pneumonia</answer>",  # right
                   "<think>x</think><answer>gout</answer>",  # another option, by text
                   "<think>x</think><answer>C</answer>",  # another option, by letter
                   "<think>x</think><answer>lupus</answer>",  # not an option
                   "<think>x</think><answer>E</answer>",  # a letter beyond the options
                   "<think>x</think>"]  # no answer
    options = [["asthma", "pneumonia", "gout"]] * 6
    assert rewards.choice_match(accept="text", partial=0.2)([], completions, answer=["B"] * 6,
                                                            options=options) == [1.0, 0.2, 0.2, 0.0, 0.0, 0.0]
    with pytest.raises(JobError, match=r"option 'partial' must be in \[0, 1\), got 1.0"):
        rewards.choice_match(partial=1.0)
