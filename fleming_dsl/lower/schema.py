"""The stage, resources, lora, evaluate, synthesize, distill, cluster, plateau(), tiny() and
dataset options, read off `ir.Training`, `ir.Resources`, `ir.Lora`, `ir.Evaluate`,
`ir.Synthesize`, `ir.Distill`, `ir.Cluster`, `ir.Plateau`, `ir.TinyArch` and `ir.Dataset`: the
one place they are declared (`ir.option`).

Each field with an `ir.Option` row is an option of the block its model lowers from. Its spec word, the methods that
take it, its unit and where it lands come from the row; its converter from the field's type (or
the row's `values`), its range check from the field's pydantic constraints (so lowering's message
and the reference say the same "> 0", ">= 1", "in (0, 1]"), its meaning from the description.
"""

from __future__ import annotations

import types

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types

from fleming_dsl import ir
from fleming_dsl.lower import trl_versions
from fleming_dsl.lower.trl_fields import LR_SCHEDULERS
from fleming_dsl.lower.values import (
    MISSING,
    Options,
    describe,
    list_of,
    one_of,
    to_bool,
    to_float,
    to_int,
    to_megabytes,
    to_minutes,
    to_name,
    to_seconds,
    to_str,
    value_span,
    whole_range,
)
from fleming_dsl.spec import ast


@dataclass(frozen=True)
class OptionRow:
    """One `word = value` option of a block and the IR field it sets (`ir.Training` for a stage)."""

    word: str  # as written in the spec
    convert: Callable[..., Any]
    check: Callable[..., Any] | None
    field: str  # the IR field, where the spec's word is not the field name ("" otherwise)
    methods: tuple[str, ...]
    meaning: str
    unit: str
    range: str  # the range check's own words, "" when any value of the type is allowed
    lands: tuple[str, ...]  # ir.Option.lands
    model: str  # the IR model declaring the field ("Training", "Sharding", ...)
    written: str  # ir.Option.written: how the reference says it is written ("" = the converter's words)
    via: str = ""  # the inline field holding it (an evaluation's "sharding"), read by that model's lowering

    @property
    def target(self) -> str:
        return self.field or self.word


def trl_choice(option: str) -> Callable[..., Any]:
    """A converter for an enumerated GRPOConfig option: the values the installed TRL accepts."""
    return one_of(trl_versions.accepted(option))  # the installed TRL's (read once, from its metadata)


def url(x: str) -> str | None:
    return None if isinstance(x, str) and x.startswith(("http://", "https://")) else "an http:// or https:// URL"


def sampled_metric(value, key, diags):
    """A metric name such as "pass@8" or "maj@8" (ir.SAMPLED_METRIC)."""
    name = value.value if isinstance(value, ast.Str) else value.name if isinstance(value, ast.Name) else None
    if name is None or not ir.SAMPLED_METRIC.match(name):
        got = f"'{value.value}'" if isinstance(value, ast.Str) else describe(value)
        diags.error(f"'{key}' takes metrics such as \"pass@8\" or \"maj@8\"; got {got}",
                    value_span(value), hint='write metrics = ["pass@8", "maj@8"] (accuracy is always reported)')
        return MISSING
    return name


_CONVERTERS: dict[type, Callable[..., Any]] = {float: to_float, int: to_int, bool: to_bool, str: to_str}
_VALUES: dict[str, Callable[..., Any]] = {
    "size": to_megabytes, "duration": to_minutes, "seconds": to_seconds, "name": to_name,
    "sampled_metrics": list_of(sampled_metric)}
STRINGS = list_of(to_str)  # a tuple[str, ...] field: ["q_proj", "v_proj"]


def _kind(annotation: Any) -> Any:
    """A field's type, without the `| None` of an optional one."""
    (kind,) = [a for a in (get_args(annotation) if get_origin(annotation) in (Union, types.UnionType)
                           else (annotation,)) if a is not type(None)]
    return kind


def _converter(name: str, annotation: Any, values: str) -> Callable[..., Any]:
    if values == "trl":
        return trl_choice(name)
    if values == "lr_schedulers":
        return one_of(LR_SCHEDULERS)
    if values in _VALUES:
        return _VALUES[values]
    kind = _kind(annotation)
    if get_origin(kind) is Literal:
        return one_of(get_args(kind))
    if get_origin(kind) is tuple:  # a list: ["q_proj", "v_proj"], [backtrack, explore]
        item = get_args(kind)[0]
        return list_of(one_of(get_args(item))) if get_origin(item) is Literal else STRINGS
    return _CONVERTERS[kind]


def range_text(metadata: list[Any], whole: bool = False) -> str:
    """A field's pydantic bounds in lowering's words: "> 0", ">= 1", "in (0, 1]", "in [0, 1)", and
    for whole numbers between two bounds "in 2..26" (`values.whole_range`)."""
    low = next(((m.gt, "(", ">") for m in metadata if isinstance(m, annotated_types.Gt)), None) or \
        next(((m.ge, "[", ">=") for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next(((m.lt, ")") for m in metadata if isinstance(m, annotated_types.Lt)), None) or \
        next(((m.le, "]") for m in metadata if isinstance(m, annotated_types.Le)), None)
    if whole and low and high and (low[1], high[1]) == ("[", "]"):
        return whole_range(low[0], high[0])
    if low and high:
        return f"in {low[1]}{low[0]}, {high[0]}{high[1]}"
    return f"{low[2]} {low[0]}" if low else ""


def _within(metadata: list[Any], x: Any) -> bool:
    tests = {annotated_types.Gt: lambda m: x > m.gt, annotated_types.Ge: lambda m: x >= m.ge,
             annotated_types.Lt: lambda m: x < m.lt, annotated_types.Le: lambda m: x <= m.le}
    return all(tests[type(m)](m) for m in metadata if type(m) in tests)


def _check(metadata: list[Any], values: str, whole: bool) -> Callable[[Any], str | None] | None:
    if values == "url":
        return url
    text = range_text(metadata, whole)
    if not text:
        return None
    return lambda x: None if _within(metadata, x) else text


def _row(model: str, name: str, info: Any, row: ir.Option) -> OptionRow:
    whole = _kind(info.annotation) is int
    return OptionRow(
        word=row.word or name, convert=_converter(name, info.annotation, row.values),
        check=_check(info.metadata, row.values, whole), field=name if row.word else "",
        methods=row.methods, meaning=info.description or "", unit=row.unit,
        range=url("") if row.values == "url" else range_text(info.metadata, whole), lands=row.lands,
        model=model, written=row.written)


def _field_rows(model: type[ir.Node], name: str, info: Any, row: ir.Option) -> tuple[OptionRow, ...]:
    if row.inline:  # its model's options, written in this block, at this field's place
        meanings = dict(row.meanings)
        return tuple(replace(o, via=name, meaning=meanings.get(o.word, o.meaning))
                     for o in option_rows(info.annotation))
    return (_row(model.__name__, name, info, row),)


def option_rows(model: type[ir.Node]) -> tuple[OptionRow, ...]:
    """The option rows of `model`'s fields, in field order (the reference's order)."""
    return tuple(o for name, info in model.model_fields.items()
                 if (row := ir.option_of(info)) is not None for o in _field_rows(model, name, info, row))


def read(options: tuple[OptionRow, ...], opts: Options) -> dict[str, Any]:
    """The values of `options` that the block writes and that pass, by field name (an inline
    model's options are left to its own lowering)."""
    found = {o.target: opts.get(o.word, o.convert, check=o.check) for o in options if not o.via}
    return {k: v for k, v in found.items() if v is not None}


def managed_trl_fields(options: tuple[OptionRow, ...]) -> frozenset[str]:
    """The TRL config fields a stage option or the job sets: the value of a `trl { }` block
    would not take effect, or would fight the job's."""
    landed = (place.removeprefix("trl.") for o in options for place in o.lands if place.startswith("trl."))
    return frozenset((*_JOB_TRL_FIELDS, *landed))


# TrainingArguments fields the job itself sets (output, checkpoints, seeds, devices, tracking,
# the reward weights and the data columns): a `trl { }` block may not set them either
_JOB_TRL_FIELDS = (
    "output_dir", "save_strategy", "save_total_limit", "seed", "data_seed", "report_to", "run_name",
    "disable_tqdm", "use_cpu", "ddp_backend", "generation_batch_size", "steps_per_generation",
    "per_device_eval_batch_size", "resume_from_checkpoint", "do_train", "do_eval", "eval_strategy",
    "push_to_hub", "hub_token", "reward_weights", "dataset_text_field", "completion_only_loss",
    "assistant_only_loss",
)

TRAINING_OPTIONS = option_rows(ir.Training)
RESOURCE_OPTIONS = option_rows(ir.Resources)
LORA_OPTIONS = option_rows(ir.Lora)
EVALUATE_OPTIONS = option_rows(ir.Evaluate)
SYNTHESIZE_OPTIONS = option_rows(ir.Synthesize)
DISTILL_OPTIONS = option_rows(ir.Distill)
CLUSTER_OPTIONS = option_rows(ir.Cluster)
PLATEAU_OPTIONS = option_rows(ir.Plateau)
TINY_OPTIONS = option_rows(ir.TinyArch)
DATASET_OPTIONS = option_rows(ir.Dataset)
MANAGED_TRL_FIELDS = managed_trl_fields(TRAINING_OPTIONS)
