"""`shards = N` / `shards = auto` with `items_per_shard = K`: reading the options, then resolving
`auto` once the whole experiment is lowered (it needs the item counts declared upstream).

The shard count has to be known when the workflow is planned (Snakemake's DAG is static), and
the planner reads no files, so `auto` divides an upper bound of the step's items, taken from the
spec alone: a sample's `count`, a dataset's `limit` (and an evaluation's `limit`), summed over
a distill's sources. A step whose bound is unknown (a dataset without `limit`) is a located error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleming_dsl import ir
from fleming_dsl.lower import schema
from fleming_dsl.lower.values import Diagnostics, Options
from fleming_dsl.spec import ast

# What the planner can split: the declaration kinds (and filter steps) that take `shards`.
SHARDABLE = ("synthesize", "distill", ir.VERIFY_LABEL, ir.DIFFICULTY, "evaluate")


@dataclass(frozen=True)
class PendingAuto:
    """A `shards = auto` seen while lowering: resolved when every declaration is known."""

    decl: str  # the declaration's name
    step: int | None  # index of the filter step, for verify_label / difficulty
    items_per_shard: int
    span: ir.Span  # of the `auto` word


# `shards` and `items_per_shard` as ir.Sharding declares them (converter, range and its words)
_ROWS = {o.word: o for o in schema.option_rows(ir.Sharding)}


def _get(opts: Options, word: str) -> int | None:
    return opts.get(word, _ROWS[word].convert, check=_ROWS[word].check)


def read(opts: Options, diags: Diagnostics, where: str) -> tuple[ir.Sharding, ir.Span | None]:
    """The sharding options of one step; the span of `auto` when it still needs resolving."""
    raw = opts.raw("shards")
    per_shard = _get(opts, "items_per_shard")
    if raw is None:
        if per_shard is not None:
            diags.error("'items_per_shard' applies only with shards = auto",
                        opts.key_span("items_per_shard"), hint="write shards = auto")
        return ir.Sharding(), None
    if isinstance(raw, ast.Name) and raw.name == "auto":
        if per_shard is None:
            diags.error(f"shards = auto in {where} needs items_per_shard = <items per job>",
                        raw.span, hint="for example: shards = auto  items_per_shard = 5_000")
            return ir.Sharding(), None
        return ir.Sharding(items_per_shard=per_shard), raw.span
    if isinstance(raw, ast.Name):
        diags.error(f"'shards' must be a whole number or auto; got '{raw.name}'", raw.span)
        return ir.Sharding(), None
    count = _get(opts, "shards")
    if per_shard is not None:
        diags.error("'items_per_shard' applies only with shards = auto",
                    opts.key_span("items_per_shard"),
                    hint=f"remove it, or write shards = auto instead of shards = {count}")
    return ir.Sharding(shards=count or 1), None


# ---------------------------------------------------------------- resolving auto


def item_bound(exp: ir.Experiment, name: str) -> tuple[int | None, str]:
    """At most how many items the data declaration `name` holds, and (when unknown) which
    declaration upstream leaves it open."""
    decl = exp.declarations().get(name)
    if isinstance(decl, ir.Sample):
        return decl.count, ""
    if isinstance(decl, ir.Dataset):
        return decl.limit, "" if decl.limit is not None else name
    if isinstance(decl, ir.Synthesize):
        return item_bound(exp, decl.source)
    if isinstance(decl, ir.Filter):
        return item_bound(exp, decl.source)
    if isinstance(decl, ir.Distill):
        total = 0
        for source in decl.sources:
            bound, culprit = item_bound(exp, source)
            if bound is None:
                return None, culprit
            total += bound
        return total, ""
    return None, name


def eval_bound(exp: ir.Experiment, ev: ir.Evaluate) -> tuple[int | None, str]:
    total = 0
    for bench in ev.benchmarks:
        bound, culprit = item_bound(exp, bench)
        limits = [b for b in (bound, ev.limit) if b is not None]
        if not limits:
            return None, culprit
        total += min(limits)
    return total, ""


def _count(bound: int, per_shard: int) -> int:
    return max(1, math.ceil(bound / per_shard))


def _resolved(sharding: ir.Sharding, bound: int) -> ir.Sharding:
    return sharding.model_copy(update={"shards": _count(bound, sharding.items_per_shard or 1)})


def resolve(exp: ir.Experiment, pending: list[PendingAuto], diags: Diagnostics) -> ir.Experiment:
    """`exp` with every `shards = auto` replaced by its count; located errors where unknown."""
    if not pending:
        return exp
    by_decl: dict[str, list[PendingAuto]] = {}
    for p in pending:
        by_decl.setdefault(p.decl, []).append(p)
    updates: dict[str, list] = {}
    for group in ("synthesize", "distill", "filters", "evaluations"):
        nodes = []
        for decl in getattr(exp, group):
            for p in by_decl.get(decl.name, []):
                decl = _resolve_one(exp, decl, p, diags)
            nodes.append(decl)
        updates[group] = tuple(nodes)
    return exp.model_copy(update=updates)


def _unknown(diags: Diagnostics, p: PendingAuto, culprit: str) -> None:
    diags.error(f"shards = auto needs an upper bound on the items, but dataset '{culprit}' "
                "declares no limit", p.span,
                hint=f"write shards = <N>, or give dataset {culprit} a limit = <rows>")


def _resolve_one(exp: ir.Experiment, decl, p: PendingAuto, diags: Diagnostics):
    if isinstance(decl, ir.Evaluate):
        bound, culprit = eval_bound(exp, decl)
    elif isinstance(decl, (ir.Filter, ir.Synthesize)):
        bound, culprit = item_bound(exp, decl.source)
    else:
        bound, culprit = item_bound(exp, decl.name)
    if bound is None:
        _unknown(diags, p, culprit)
        return decl
    if p.step is None:
        return decl.model_copy(update={"sharding": _resolved(decl.sharding, bound)})
    steps = list(decl.steps)
    steps[p.step] = steps[p.step].model_copy(
        update={"sharding": _resolved(steps[p.step].sharding, bound)})
    return decl.model_copy(update={"steps": tuple(steps)})


def check_filter_agrees(flt: ir.Filter, spans: dict[int, ir.Span | None], diags: Diagnostics) -> None:
    """The model-backed steps of one filter run in the same shard jobs: one count for all."""
    counts = {i: s.sharding.shards for i, s in enumerate(flt.steps)
              if isinstance(s, (ir.VerifyLabel, ir.Difficulty)) and s.sharding.shards > 1}
    if len(set(counts.values())) > 1:
        last = max(counts)
        diags.error(f"filter {flt.name}: verify_label and difficulty run in the same shard jobs, "
                    f"so they take one shard count; got {sorted(set(counts.values()))}",
                    spans.get(last), hint="give both the same shards = N, or write it on one")

