"""Verifiable reward functions for GRPO: a registry of typed factories plus a plugin entry point.

A reward is declared in the spec as `reward name = function(option = value, ...)`. The function
names a *factory* here: called with the options, it returns a TRL reward function
`f(prompts, completions, **kwargs) -> list[float]` (kwargs carry the dataset columns, e.g.
`answer` and `difficulty`; conversational completions are lists of messages).

Third-party packages add factories through the entry-point group `fleming_dsl.runtime.train.rewards`:

    [project.entry-points."fleming_dsl.rewards"]
    cites_guideline = "my_pkg.rewards:cites_guideline"   # a factory, like the ones below

Built-ins win over plugins of the same name, so a plugin cannot silently change `choice_match`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fleming_dsl.errors import JobError
from fleming_dsl.runtime.data import items

ENTRY_POINT_GROUP = "fleming_dsl.rewards"

RewardFn = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one completion, standard (str) or conversational (list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(message.get("content", "")) for message in completion)


# ---------------------------------------------------------------- built-in factories


def choice_match(tag: str = "answer", accept: str = "letter", partial: float = 0.0) -> RewardFn:
    """1.0 when the completion names the item's correct option, `partial` when it names another
    of its options, else 0.0 (an answer that is none of the options, or none at all).

    accept = "letter": the letter inside <tag>..</tag> must equal the item's `answer`.
    accept = "text": the tag may instead hold the correct option's exact text (normalised, see
    `items.extract_answer`); needs the dataset column `options` (texts in letter order).
    partial > 0 pays a GRPO group for choosing among the options: a student that names a disease
    not on the list learns to pick from it, while the right option still earns most."""
    if accept not in items.ACCEPT:
        raise JobError(f"reward choice_match: option 'accept' must be one of "
                       f"{', '.join(items.ACCEPT)}, got {accept!r}")
    if not 0.0 <= partial < 1.0:
        raise JobError(f"reward choice_match: option 'partial' must be in [0, 1), got {partial!r}")
    tag_re = re.compile(rf"<{re.escape(tag)}>\s*\(?([A-Z])\)?\s*</{re.escape(tag)}>", re.DOTALL)
    text_re = re.compile(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)

    def extract(text: str, options: Sequence[str] | None) -> str | None:
        if accept == "text" and options:
            found = text_re.findall(text)
            if found:
                said = items.normalise(found[-1])
                for letter, option in zip(items.LETTERS, options):
                    if said == items.normalise(option):
                        return letter
        if tag == "answer":
            return items.extract_choice(text)
        found = tag_re.findall(text)
        return found[-1] if found else None

    def score(chosen: str | None, right: str, options: Sequence[str] | None) -> float:
        if chosen == right:
            return 1.0
        named = chosen is not None and (options is None or chosen in items.LETTERS[:len(options)])
        return partial if named else 0.0

    def reward(prompts, completions, answer, options=None, **kwargs) -> list[float]:
        per_item = options if options is not None else [None] * len(completions)
        return [score(extract(completion_text(c), o), str(a).strip().upper(), o)
                for c, a, o in zip(completions, answer, per_item)]

    return reward


def regex(pattern: str) -> RewardFn:
    """1.0 when the whole completion matches `pattern` (`.` also matches newlines), else 0.0."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise JobError(f"reward regex: option 'pattern' is not a valid regular expression ({err})") from None

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [1.0 if compiled.fullmatch(completion_text(c)) else 0.0 for c in completions]

    return reward


def length_penalty(max_tokens: int) -> RewardFn:
    """0.0 up to `max_tokens` completion tokens, then -1.0 per further `max_tokens` tokens."""
    if max_tokens <= 0:
        raise JobError(f"reward length_penalty: option 'max_tokens' must be positive, got {max_tokens}")

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        # TRL passes the token ids; whitespace words stand in when called without them.
        lengths = ([len(ids) for ids in completion_ids] if completion_ids is not None
                   else [len(completion_text(c).split()) for c in completions])
        return [-max(0, n - max_tokens) / max_tokens for n in lengths]

    return reward


def overlong(max_tokens: int, buffer: int) -> RewardFn:
    """DAPO's soft overlong punishment: 0 up to `max_tokens - buffer` completion tokens, then a linear
    ramp to -1 at `max_tokens`, and -1 beyond it (Yu et al. 2025, eq. 13)."""
    if max_tokens <= 0 or buffer <= 0 or buffer > max_tokens:
        raise JobError(f"reward overlong: options need 0 < buffer <= max_tokens, got max_tokens = {max_tokens}, "
                       f"buffer = {buffer}")
    start = max_tokens - buffer

    def penalty(n: int) -> float:
        if n <= start:
            return 0.0
        if n <= max_tokens:
            return (start - n) / buffer
        return -1.0

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        lengths = ([len(ids) for ids in completion_ids] if completion_ids is not None
                   else [len(completion_text(c).split()) for c in completions])
        return [penalty(n) for n in lengths]

    return reward


BUILTINS: dict[str, Callable[..., RewardFn]] = {
    "overlong": overlong,
    "choice_match": choice_match,
    "regex": regex,
    "length_penalty": length_penalty,
}


# ---------------------------------------------------------------- registry


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


# Rewards built from the job's context rather than from spec options alone: `rubric` asks a
# grader teacher (runtime/train/rubric_reward.py), resolved by the planner into the term's config.
GRADED = ("rubric",)


def registered() -> list[str]:
    """Every reward function name a spec may use: built-ins and installed plugins."""
    return sorted(set(BUILTINS) | set(GRADED) | set(_plugins()))


def lookup(name: str) -> Callable[..., RewardFn]:
    """The factory registered under `name`; JobError listing the registered names otherwise."""
    if name in BUILTINS:
        return BUILTINS[name]
    if name in GRADED:
        raise JobError(f"reward {name}: built from its grader and prompt by build_terms, not from options")
    plugins = _plugins()
    if name in plugins:
        try:
            return plugins[name].load()
        except Exception as err:  # a broken plugin is the user's input: say which one
            raise JobError(f"reward plugin {name!r} ({plugins[name].value}) failed to load: {err}") from None
    raise JobError(f"unknown reward function {name!r}; registered: {', '.join(registered())}")


def make_reward(function: str, options: dict[str, Any]) -> RewardFn:
    """Call the factory for `function` with the spec's options, checking them against its signature."""
    factory = lookup(function)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as err:
        raise JobError(f"reward {function}: bad options {sorted(options)} ({err})") from None
    return factory(**options)


@dataclass(frozen=True)
class RewardTerm:
    """One weighted term of a stage's reward: TRL gets `fn` (named `name`) and `weight`."""

    name: str
    weight: float
    fn: RewardFn


def build_terms(specs: Sequence[Any], seed: int = 0) -> list[RewardTerm]:
    """Reward terms from `GrpoJob.rewards` (objects with name, function, weight, options; a
    rubric term also with its grader, prompt and cache_dir); `seed` seeds a grader's sampling."""
    if not specs:
        raise JobError("field 'rewards': a GRPO stage needs at least one reward term")
    terms = []
    for number, spec in enumerate(specs):
        if spec.function == "rubric":
            if getattr(spec, "grader", None) is None or not getattr(spec, "cache_dir", None):
                raise JobError(f"field 'rewards[{number}]': a rubric reward needs 'grader' and 'cache_dir'")
            from fleming_dsl.runtime.train.rubric_reward import rubric

            fn = rubric(spec.grader, spec.cache_dir, seed, spec.prompt)
        else:
            fn = make_reward(spec.function, dict(spec.options))
        terms.append(RewardTerm(name=spec.name, weight=float(spec.weight), fn=fn))
    return terms


def weighted_total(per_term: dict[str, list[float]], terms: Sequence[RewardTerm]) -> list[float]:
    """Per-sample weighted sum of the terms' rewards (what TRL optimises with `reward_weights`)."""
    columns = [per_term[t.name] for t in terms]
    return [sum(t.weight * col[i] for t, col in zip(terms, columns)) for i in range(len(columns[0]))]
