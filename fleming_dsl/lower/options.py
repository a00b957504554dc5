"""Every option a spec accepts, as data: where it is written, its type, unit, default, range and
meaning.

Lowering (`declarations.py`, `stages.py`) decides what is valid; this table describes it for
people and tools (the stage block is built from `ir.Training`'s schema, `lower/schema.py`: its type
read off the converter lowering applies, its range and unit from the field): `fleming reference`
renders it into docs/language.md, and the language server (`fleming lsp`) uses it for hover and completion.
tests/unit/lower/test_options.py holds the two together: for every block but those its FROM_SCHEMA
lists (lowering and the rows both read their IR model: evaluate, synthesize, distill, cluster,
plateau(), tiny(), dataset) it lowers a spec with an
unknown option and compares the "expected one of ..." list lowering prints with this table, and
it feeds each ranged option a value just outside its range and expects lowering to reject it.
Defaults are read from the IR models, so they cannot drift either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleming_dsl import ir
from fleming_dsl.lower import values
from fleming_dsl.lower.schema import STRINGS, TRAINING_OPTIONS, option_rows

_NONE = object()  # "no default": required, or decided elsewhere (see `meaning`)


@dataclass(frozen=True)
class Opt:
    name: str
    type: str  # as a user writes it: "number", "whole number", "duration", "bucket list", ...
    meaning: str
    default: Any = _NONE  # a literal, or a "Model.field" string read from the IR
    range: str = ""  # e.g. ">= 1", "in (0, 1]"; "" when any value of the type is allowed
    unit: str = ""

    def default_value(self) -> Any:
        """The default as the spec would write it ("" when there is none)."""
        value = self.default
        if isinstance(value, str) and value.startswith("ir."):
            model, field = value[3:].split(".")
            value = getattr(ir, model).model_fields[field].default
        if value is _NONE:
            return ""
        return value

    def default_text(self) -> str:
        value = self.default_value()
        if value == "":
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]"
        if value is None:
            return "none"
        return str(value)


@dataclass(frozen=True)
class Block:
    """One place options are written: a declaration's block, a nested block or a call's keywords."""

    key: str  # the name tools use: "stage", "resources", "vllm()", ...
    title: str  # how the reference names it
    where: str  # how it is written, e.g. "stage NAME = sft(...) { ... }"
    options: tuple[Opt, ...]

    def option(self, name: str) -> Opt | None:
        return next((o for o in self.options if o.name == name), None)


def _type_of(convert) -> str:
    """How a lowering converter's values are written, for the reference."""
    names = {values.to_float: "number", values.to_int: "whole number", values.to_bool: "true/false",
             values.to_str: "string", values.to_name: "name", values.to_megabytes: _SIZE,
             values.to_minutes: _DURATION, values.to_seconds: _DURATION, STRINGS: "list of strings"}
    if convert in names:
        return names[convert]
    cells = [c.cell_contents for c in convert.__closure__ or ()]
    item = next((c for c in cells if callable(c)), None)  # list_of(one_of(choices))
    if item is not None and (choices := _choices(item)):
        return "list of " + ", ".join(choices)
    choices = _choices(convert)  # one_of(choices)
    return ", ".join(choices[:-1]) + " or " + choices[-1] if choices else "value"


def _choices(convert) -> tuple[str, ...] | None:
    """The words a `values.one_of(choices)` converter accepts (None for any other converter)."""
    return next((c.cell_contents for c in convert.__closure__ or () if isinstance(c.cell_contents, tuple)),
                None)


def _stage_options() -> tuple[Opt, ...]:
    """The stage block: lowering's own table of training options (`lower/stages.py`), then the
    options lowering reads beside it."""
    rows = tuple(Opt(o.word, _type_of(o.convert),
                     (f"{o.methods[0]}: " if len(o.methods) == 1 else "") + o.meaning,
                     f"ir.Training.{o.target}", o.range, o.unit)
                 for o in TRAINING_OPTIONS)
    return rows + (
        Opt("lora", "true/false (or a lora { ... } block)", "train LoRA adapters instead of all weights",
            False),
        Opt("rewards", "reward or weighted sum: 1.0 * correct + 0.1 * form",
            "grpo: the verifiable rewards and their weights; required for grpo"),
        Opt("until", "plateau(metric, patience = N, min_delta = D)", "stop when the metric stops improving",
            "max_steps / epochs"),
    )


_DURATION = "duration (30s, 30m, 48h, 2d)"
_SIZE = "size (512MB, 80GB, 1TB)"

def _model_options(model: str) -> tuple[Opt, ...]:
    """A block whose IR model declares its options (`ir.Resources`, `ir.Lora`, `ir.Evaluate`):
    the model's rows."""
    return tuple(Opt(o.word, o.written or _type_of(o.convert), o.meaning, f"ir.{o.model}.{o.target}",
                     o.range, o.unit)
                 for o in option_rows(getattr(ir, model)))


_RESOURCES = _model_options("Resources")
_SHARDING = _model_options("Sharding")  # a filter step's shards and items_per_shard

BLOCKS: tuple[Block, ...] = (
    Block("experiment", "experiment header", 'experiment "NAME" [extends "BASE.flm"] { ... }', (
        Opt("seed", "whole number", "seed of every job that draws random numbers", "ir.Experiment.seed"),
        Opt("workdir", "string (path)", "where jobs write their outputs, relative to the spec file",
            "runs/<experiment>"),
        Opt("track", "list of tensorboard, trackio, mlflow, wandb",
            "offline experiment tracking (TRL report_to) of every training stage, under "
            "<workdir>/tracking/<stage>/", "[]"),
        Opt("container", "string (image)", "Apptainer/Docker image every job runs in (or in the "
            "cluster block, not both)", None),
    )),
    Block("cluster", "cluster", "cluster { ... }", _model_options("Cluster")),
    Block("model", "model", "model NAME = SOURCE(...) { ... }", (
        Opt("backend", "call: vllm(...), transformers(), openai(...), template()",
            "how the model generates text when it is a teacher, grader or judge"),
        Opt("temperature", "number", "sampling temperature of the backend", "ir.Backend.temperature", ">= 0"),
        Opt("top_p", "number", "nucleus sampling mass", "ir.Backend.top_p", "in (0, 1]"),
        Opt("max_tokens", "whole number", "tokens generated per answer", "ir.Backend.max_tokens", ">= 1",
            "tokens"),
        Opt("timeout", _DURATION, "per-request timeout (openai); the unit is required",
            "ir.Backend.timeout_s", "> 0", "seconds"),
        Opt("retries", "whole number", "retries of a failed request (openai)", "ir.Backend.retries", ">= 0"),
        Opt("concurrency", "whole number", "requests in flight at once (openai)", "ir.Backend.concurrency",
            ">= 1"),
    )),
    Block("tiny()", "tiny() model source", "model NAME = tiny(...)", _model_options("TinyArch")),
    Block("vllm()", "vllm() backend", "backend = vllm(...)", (
        Opt("tp", "whole number", "tensor-parallel GPUs (short for tensor_parallel)",
            "ir.Backend.tensor_parallel", ">= 1"),
        Opt("tensor_parallel", "whole number", "tensor-parallel GPUs", "ir.Backend.tensor_parallel", ">= 1"),
    )),
    Block("template()", "template() source/backend", "model NAME = template(...)", (
        Opt("error_rate", "number", "share of items (seeded) whose answer names a wrong option; "
            "each later round misses again at this rate", "ir.Backend.error_rate", "in [0, 1)"),
        Opt("malformed_rate", "number", "share of answers (seeded per item and round) that come "
            "back malformed: no answer, or text with encoding debris",
            "ir.Backend.malformed_rate", "in [0, 1)"),
    )),
    Block("openai()", "openai() source/backend", 'model NAME = openai(model = "...", ...)', (
        Opt("model", "string", "the served model's name (required for an openai() model)"),
        Opt("base_url", "string", "the server's URL; the OpenAI API when not given", None),
        Opt("api_key_env", "string", "name of the environment variable holding the API key", None),
    )),
    Block("sample", "sample", "sample NAME from GRAPH { ... }", (
        Opt("path", "metapath", "node types and relations to walk: disease -[relation]-> phenotype "
            "(`*` any type, `-->` any relation); required"),
        Opt("hops", "whole number or range lo..hi", "path length in edges, at most the metapath's: a walk "
            "of N hops takes the metapath's first N steps", "the metapath's length", ">= 1"),
        Opt("weight", "uniform, inverse_degree or inverse_degree(alpha = A)",
            "how the next node is chosen; inverse_degree favours rare (long-tail) entities",
            "ir.Sample.weight"),
        Opt("mask", "anchor, target or a node index", "which entity of the path becomes the answer "
            "(an index counts from 0, the start, up to the shortest walk's end)",
            "ir.Sample.mask", ">= 0"),
        Opt("distractors", "whole number or same_type(k = K, near = B)",
            "wrong options per question, drawn from entities of the answer's type",
            "ir.Sample.distractors", ">= 1"),
        Opt("clues", "whole number", "clues about the answer per question: the path's edges to it, "
            "then more of its neighbours joined as those edges are (same relation and type; fewer "
            "where it has fewer), so a 2-hop walk gives a vignette of 3-4 findings",
            "the path's own", ">= 1"),
        Opt("count", "whole number", "paths to sample (questions to write); required", range="> 0"),
        Opt("seed", "whole number", "sampling seed", "the experiment seed"),
    )),
    Block("inverse_degree()", "inverse_degree() weight", "weight = inverse_degree(...)", (
        Opt("alpha", "number", "strength of the long-tail bias: weight = degree^-alpha",
            "ir.Sample.alpha", ">= 0"),
    )),
    Block("same_type()", "same_type() distractors", "distractors = same_type(...)", (
        Opt("k", "whole number", "distractors per question", "ir.Sample.distractors", "in 1..25"),
        Opt("near", "true/false", "prefer distractors close to the answer in the graph",
            "ir.Sample.near_distractors"),
    )),
    Block("dataset", "dataset", 'dataset NAME = FORMAT("file.jsonl", ...) { ... }',
          _model_options("Dataset")),
    Block("synthesize", "synthesize", "synthesize NAME from SAMPLE with TEACHER using PROMPT { ... }",
          _model_options("Synthesize")),
    Block("distill", "distill", "distill NAME from SOURCES with TEACHER using PROMPT { ... }",
          _model_options("Distill")),
    Block("verify_label()", "verify_label() filter step", "verify_label(...)", (
        Opt("model", "name of a model", "the model that answers again", "the distill teacher"),
        Opt("votes", "whole number", "independent answers per item", "ir.VerifyLabel.votes", ">= 1"),
        Opt("agree", "whole number", "answers that must match the label to keep the item (<= votes)",
            "ir.VerifyLabel.agree", ">= 1"),
        Opt("on_fail", "drop or review", "what happens to an item that fails", "ir.VerifyLabel.on_fail"),
        *_SHARDING,
    )),
    Block("dedupe()", "dedupe() filter step", "dedupe(METHOD, ...)", (
        Opt("method", "exact or minhash (also the first positional argument)", "how duplicates are found",
            "ir.Dedupe.method"),
        Opt("threshold", "number", "minhash Jaccard similarity above which items are duplicates",
            "ir.Dedupe.threshold", "in (0, 1]"),
    )),
    Block("decontaminate()", "decontaminate() filter step", "decontaminate(against = [...], ...)", (
        Opt("against", "name or list of datasets", "evaluation sets whose n-grams are removed; required"),
        Opt("ngram", "whole number", "n-gram length compared", "ir.Decontaminate.ngram", ">= 1", "tokens"),
    )),
    Block("difficulty()", "difficulty() filter step", "difficulty(METHOD, model = M, ...) { ... }", (
        Opt("method", "pass_rate or grader (also the first positional argument)",
            "pass rate of k samples, or an LLM grader's judgement", "ir.Difficulty.method"),
        Opt("model", "name of a model or stage", "the model sampled (pass_rate) or the grader; required"),
        Opt("samples", "whole number", "samples per item for the pass rate", "ir.Difficulty.samples", ">= 1"),
        Opt("prompt", "name of a prompt", "the grader's rubric (grader only; required there)"),
        *_SHARDING,
    )),
    Block("difficulty buckets", "difficulty buckets", "difficulty(...) { easy = ...  moderate = ... }", (
        Opt("easy", "threshold: pass >= X", "pass rate at or above which an item is easy",
            "ir.Difficulty.easy", "in (0, 1], > moderate"),
        Opt("moderate", "threshold: pass >= X", "pass rate at or above which an item is moderate "
            "(below: hard)", "ir.Difficulty.moderate", "in (0, 1]"),
    )),
    Block("stage", "stage", "stage NAME = sft(INIT, DATA) { ... } / grpo(INIT, DATA) { ... }",
          _stage_options()),
    Block("lora", "lora block", "lora { ... } inside a stage", _model_options("Lora")),
    Block("plateau()", "plateau() stop condition", "until = plateau(METRIC, ...)", _model_options("Plateau")),
    Block("mine_hard()", "mine_hard() stage data", "grpo(INIT, mine_hard(POOL, pass < X, ...))", (
        Opt("refresh", "whole number", "steps between re-estimating pass rates", "ir.Miner.refresh",
            ">= 1", "steps"),
        Opt("samples", "whole number", "rollouts per item when estimating its pass rate",
            "ir.Miner.samples", ">= 1"),
        Opt("estimate", "whole number", "items re-estimated per refresh by extra rollouts: unseen "
            "first, then past failures (default: the round's prompt count; the pool's size or more: all)", "ir.Miner.estimate", ">= 1"),
        Opt("ratio", "ratio solved:failed", "mix of solved to failed items (the paper: 1:2)", "1:2",
            "parts > 0"),
    )),
    Block("resources", "resources block", "resources { ... } inside a stage, data step or evaluate",
          _RESOURCES),
    Block("evaluate", "evaluate", "evaluate TARGETS on BENCHMARKS [as NAME] { ... }",
          _model_options("Evaluate")),
    Block("choice_match()", "choice_match() reward", "reward NAME = choice_match(TAG, ACCEPT)", (
        Opt("tag", "string (also the first positional argument)",
            "the tag holding the chosen letter: <answer>B</answer> -> 1.0 when B is right"),
        Opt("accept", "letter or text (also the second positional argument)",
            "what counts as naming the right option: its letter, or also its exact text", "letter",
            "letter, text"),
        Opt("partial", "number (also the third positional argument)",
            "reward for naming one of the other options (an answer among the options, but wrong): "
            "pays for choosing among the options over naming something else", "0.0", "in [0, 1)"),
    )),
    Block("regex()", "regex() reward", "reward NAME = regex(PATTERN)", (
        Opt("pattern", "string (also the first positional argument)",
            "a Python regular expression; 1.0 when the completion matches"),
    )),
    Block("length_penalty()", "length_penalty() reward", "reward NAME = length_penalty(MAX_TOKENS)", (
        Opt("max_tokens", "whole number (also the first positional argument)",
            "completions longer than this are penalised"),
    )),
    Block("overlong()", "overlong() reward", "reward NAME = overlong(MAX_TOKENS, BUFFER)", (
        Opt("max_tokens", "whole number >= 1 (also the first positional argument)",
            "completion tokens at which the penalty reaches -1 (and stays there beyond); required",
            unit="tokens"),
        Opt("buffer", "whole number >= 1, at most max_tokens (also the second positional argument)",
            "the last tokens before max_tokens over which the penalty ramps from 0 to -1 (DAPO's "
            "soft overlong punishment); required", unit="tokens"),
    )),
    Block("rubric()", "rubric() reward", "reward NAME = rubric(grader = MODEL, prompt = PROMPT)", (
        Opt("grader", "name of a model with a backend (also the first positional argument)",
            "grades each completion criterion by criterion, every call cached; required (not a "
            "template() teacher: it never reads the completion)"),
        Opt("prompt", "name of a prompt (also the second positional argument)",
            "the rubric prompt (sees conversation, response, criterion, points; a multiple-choice "
            "item also answer, answer_text, options)", "templates/rubric/grader.j2"),
    )),
)

BY_KEY: dict[str, Block] = {b.key: b for b in BLOCKS}

# Where a nested block or a call's keywords take their options from (key -> block key).
NESTED_BLOCKS = {"resources": "resources", "lora": "lora"}
CALL_BLOCKS = {name[:-2]: name for name in BY_KEY if name.endswith("()")}
# The block of a declaration kind (synthesize and filter blocks take only nested blocks/steps).
DECL_BLOCKS = {"model": "model", "sample": "sample", "dataset": "dataset", "distill": "distill",
               "stage": "stage", "evaluate": "evaluate", "cluster": "cluster", "experiment": "experiment"}


def block(key: str) -> Block | None:
    return BY_KEY.get(key)


# The functions a declaration's call may name, by what lowering calls them in its
# "unknown <what> 'x'" message (tests/unit/lower/test_options.py checks each list against it).
SOURCES: dict[str, tuple[str, ...]] = {
    "model source": ("hf", "local", "tiny", "template", "openai"),
    "backend": ("vllm", "transformers", "openai", "template"),
    "graph format": ("primekg", "hetionet", "triples"),
    "dataset format": tuple(ir.DatasetFormat.__args__),  # type: ignore[attr-defined]
    "prompt source": ("template",),
    "reward function": ("choice_match", "length_penalty", "overlong", "regex", "rubric"),  # plus plugins
    "stage method": ("sft", "grpo"),
    "distractor policy": ("same_type",),
}
