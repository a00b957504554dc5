"""Specs that would run, but to a silently wrong or wasted end (issue 28), judged on resolved
values: items with fewer options than asked, a reward term that is always 0, jobs with nothing
to do, resources a step cannot use. Each is a located error where the result would be wrong, a
warning where it would only be wasted.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from fleming_dsl import ir
from fleming_dsl.check.common import Checked, option_key
from fleming_dsl.errors import Diagnostic
from fleming_dsl.lower.shards import eval_bound, item_bound
from fleming_dsl.spec import ast


def _decl(c: Checked, node: ir.Decl) -> ast.Decl | None:
    return c.decl_at(node.span)


def _block(decl: ast.Decl | None) -> ast.Block | None:
    return getattr(decl, "block", None)


def _key_span(decl: ast.Decl | None, key: str, fallback: ir.Span) -> ir.Span:
    key_name = option_key(_block(decl), key)
    return key_name.span if key_name is not None else fallback


def options_have_distractors(c: Checked) -> Iterator[Diagnostic]:
    """`synthesize { options = 6 }` over a sample of 3 distractors wrote 4-option items."""
    assert c.experiment is not None
    decls = c.declarations
    for syn in c.experiment.synthesize:
        sample = decls.get(syn.source)
        if syn.options is None or not isinstance(sample, ir.Sample):
            continue
        have = sample.distractors + 1
        if syn.options > have:
            yield Diagnostic(
                f"synthesize {syn.name} asks for {syn.options} options per item, but sample "
                f"{sample.name} draws {sample.distractors} distractors: its items would have {have}",
                _key_span(_decl(c, syn), "options", syn.span),
                hint=f"draw more in sample {sample.name}: distractors = same_type(k = "
                     f"{syn.options - 1}), or write options = {have}")


options_have_distractors.after_lowering = True  # type: ignore[attr-defined]


def overlong_can_apply(c: Checked) -> Iterator[Diagnostic]:
    """`overlong(1024, 256)` under `max_completion_length = 128` is a term that is always 0."""
    assert c.experiment is not None
    seen: set[tuple] = set()
    for stage in c.experiment.stages:
        if stage.method != "grpo":
            continue
        longest = stage.training.max_completion_length
        for term in stage.rewards:
            reward = c.declarations.get(term.reward)
            if not isinstance(reward, ir.Reward) or reward.function != "overlong":
                continue
            start = int(reward.options.get("max_tokens", 0)) - int(reward.options.get("buffer", 0))
            decl = _decl(c, stage)
            if longest > start or (stage.span, reward.name) in seen:
                continue
            seen.add((stage.span, reward.name))
            name = decl.name.name if decl is not None else stage.name
            yield Diagnostic(
                f"reward {reward.name} is always 0 in stage {name}: it penalises completions past "
                f"{start} tokens, but max_completion_length = {longest} stops them before",
                _key_span(decl, "rewards", stage.span),
                hint=f"lower overlong's max_tokens below {longest} + its buffer, or raise "
                     "max_completion_length", severity="warning")


overlong_can_apply.after_lowering = True  # type: ignore[attr-defined]


def shards_have_items(c: Checked) -> Iterator[Diagnostic]:
    """`shards = 500` over 50 items planned 511 jobs, most with nothing to do."""
    assert c.experiment is not None
    exp = c.experiment
    # (step, its shard count, a function giving its item bound): bounds are walked only for a
    # step cut into several shards (a 100,000-deep filter chain of one shard each costs nothing)
    steps = [(syn, syn.sharding.shards, lambda s=syn: item_bound(exp, s.source)[0]) for syn in exp.synthesize]
    steps += [(dis, dis.sharding.shards, lambda d=dis: _sum_bounds(exp, d.sources)) for dis in exp.distill]
    steps += [(flt, flt.shards, lambda f=flt: item_bound(exp, f.source)[0]) for flt in exp.filters]
    steps += [(ev, ev.sharding.shards, lambda e=ev: eval_bound(exp, e)[0]) for ev in exp.evaluations]
    for node, shards, bound in steps:
        items = bound() if shards > 1 else None
        if items is None or shards <= max(items, 1):
            continue
        yield Diagnostic(f"{node.kind} {node.name} is cut into {shards} shards, but has at most "
                         f"{items} items: {shards - max(items, 1)} jobs would have nothing to do",
                         _shards_span(c, node), hint=f"write shards = {max(items, 1)} or fewer",
                         severity="warning")


shards_have_items.after_lowering = True  # type: ignore[attr-defined]


def _sum_bounds(exp: ir.Experiment, sources: tuple[str, ...]) -> int | None:
    bounds = [item_bound(exp, s)[0] for s in sources]
    return None if None in bounds else sum(bounds)  # type: ignore[arg-type]


def _shards_span(c: Checked, node: ir.Decl) -> ir.Span:
    decl = _decl(c, node)
    block = _block(decl)
    for item in block.items if block else ():
        if isinstance(item, ast.Option) and item.key.name == "shards":
            return item.key.span
        if isinstance(item, ast.Entry) and item.call is not None:  # a filter step's shards
            for kw in item.call.kwargs:
                if kw.key.name == "shards":
                    return kw.key.span
    return node.span


def resources_are_used(c: Checked) -> Iterator[Diagnostic]:
    """Resources a step cannot use: several nodes for a one-process step, DeepSpeed on a stage
    with one CPU process (the job drops it), vLLM generation on a stage without GPUs."""
    assert c.experiment is not None
    exp = c.experiment
    for node in [*exp.samples, *exp.synthesize, *exp.distill, *exp.filters, *exp.evaluations]:
        res = getattr(node, "resources", None)
        if res is not None and res.nodes > 1:
            decl = _decl(c, node)
            yield Diagnostic(f"{node.kind} {node.name} runs as one process: 'nodes = {res.nodes}' "
                             "would hold nodes it never uses",
                             _nodes_span(decl, node.span),
                             hint="only training stages run over several nodes; use shards = N to "
                                  "spread a data step over jobs")
    reported: set[tuple] = set()
    vllm_here = importlib.util.find_spec("vllm") is not None
    for stage in exp.stages:
        t, res = stage.training, stage.resources
        if res.gpus > 0 or stage.span in reported:
            continue
        decl = _decl(c, stage)
        name = decl.name.name if decl is not None else stage.name
        # a CPU stage runs one rank per node: over several, ZeRO shards over gloo (trainer_args)
        if t.deepspeed != "none" and res.nodes == 1:
            reported.add(stage.span)
            yield Diagnostic(f"stage {name} runs as one CPU process, so 'deepspeed = {t.deepspeed}' "
                             "would be dropped",
                             _key_span(decl, "deepspeed", stage.span),
                             hint="DeepSpeed ZeRO shards over ranks: add resources { gpus = N } (or "
                                  "nodes = N for CPU ranks), or remove deepspeed")
        if t.use_vllm and not vllm_here:
            reported.add(stage.span)
            yield Diagnostic(f"stage {name} has no GPU and vllm is not installed: 'use_vllm = true' "
                             "would fall back to generating with transformers",
                             _key_span(decl, "use_vllm", stage.span),
                             hint="add resources { gpus = N } (vLLM generates on a GPU), or remove use_vllm",
                             severity="warning")


resources_are_used.after_lowering = True  # type: ignore[attr-defined]


def _nodes_span(decl: ast.Decl | None, fallback: ir.Span) -> ir.Span:
    block = _block(decl)
    for item in block.items if block else ():
        if isinstance(item, ast.Entry) and item.name.name == "resources" and item.block is not None:
            key = option_key(item.block, "nodes")
            if key is not None:
                return key.span
    return fallback


def evaluated_once(c: Checked) -> Iterator[Diagnostic]:
    """`evaluate [base, base]` failed at compile with two jobs writing one file."""
    for decl in c.program.decls:
        if not isinstance(decl, ast.EvaluateDecl):
            continue
        for names, what in ((decl.targets, "model"), (decl.benchmarks, "benchmark")):
            seen: set[str] = set()
            for name in names:
                if name.name in seen:
                    yield Diagnostic(f"evaluate lists the {what} '{name.name}' twice", name.span,
                                     hint="each is evaluated once: remove the repeat")
                seen.add(name.name)

