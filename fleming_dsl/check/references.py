"""How declarations refer to each other: duplicate and undefined names, names of the wrong
kind, reference cycles, and inputs nothing uses. `references(decl)` is the one list of every name
a declaration refers to; the other rule modules and the cycle check read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fleming_dsl import ir
from fleming_dsl.check.common import (
    DATASET,
    GRAPH,
    ITEM_SOURCES,
    MODEL,
    PROMPT,
    REWARD,
    SAMPLE,
    STAGE,
    Checked,
    a,
    call_kw,
    kinds_phrase,
    names_in,
    option,
)
from fleming_dsl.errors import MAX_REPORTED, Diagnostic, suggestion
from fleming_dsl.spec import ast


@dataclass(frozen=True)
class Ref:
    """One reference from a declaration to another name."""

    name: ast.Name
    kinds: tuple[str, ...]  # the kinds allowed here
    role: str  # what the reference is for, as users read it: "the teacher", "the init model"


def _filter_refs(decl: ast.FilterDecl) -> Iterator[Ref]:
    yield Ref(decl.source, ITEM_SOURCES, "the filter source")
    for item in decl.block.items:
        if not isinstance(item, ast.Entry) or item.call is None:
            continue
        if item.name.name in (ir.VERIFY_LABEL, ir.DIFFICULTY):
            for name in names_in(call_kw(item.call, "model")):
                yield Ref(name, (MODEL, STAGE) if item.name.name == ir.DIFFICULTY else (MODEL,),
                          f"the {item.name.name} model")
        if item.name.name == ir.DIFFICULTY:
            for name in names_in(call_kw(item.call, "prompt")):
                yield Ref(name, (PROMPT,), "the grader rubric")
        if item.name.name == ir.DECONTAMINATE:
            for name in names_in(call_kw(item.call, "against")):
                yield Ref(name, (DATASET,), "an evaluation set to decontaminate against")


def _stage_data_refs(data: ast.Value) -> Iterator[Ref]:
    if isinstance(data, ast.Name):
        yield Ref(data, ITEM_SOURCES, "the training data")
    elif isinstance(data, ast.Index):
        yield Ref(data.base, ITEM_SOURCES, "the training data")
    elif isinstance(data, ast.Call) and data.args and isinstance(data.args[0], ast.Name):
        yield Ref(data.args[0], ITEM_SOURCES, "the pool to mine hard samples from")


def _reward_refs(value: ast.Value | None) -> Iterator[Ref]:
    if isinstance(value, ast.Name):
        yield Ref(value, (REWARD,), "a reward")
    elif isinstance(value, ast.Sum):
        for term in value.terms:
            yield Ref(term.reward, (REWARD,), "a reward")


def references(decl: ast.Decl) -> Iterator[Ref]:
    """Every name `decl` refers to, with the kinds allowed there."""
    if isinstance(decl, ast.SampleDecl):
        yield Ref(decl.graph, (GRAPH,), "the graph")
    elif isinstance(decl, ast.SynthesizeDecl):
        yield Ref(decl.source, (SAMPLE,), "the sample")
        yield Ref(decl.teacher, (MODEL,), "the teacher")
        yield Ref(decl.prompt, (PROMPT,), "the prompt")
    elif isinstance(decl, ast.DistillDecl):
        for source in decl.sources:
            yield Ref(source, ITEM_SOURCES, "a source of questions")
        yield Ref(decl.teacher, (MODEL,), "the teacher")
        yield Ref(decl.prompt, (PROMPT,), "the prompt")
        for name in names_in(option(decl.block, "rewrite")):
            yield Ref(name, (PROMPT,), "the rewrite prompt")
        for name in names_in(option(decl.block, "judge")):
            yield Ref(name, (MODEL,), "the judge")
    elif isinstance(decl, ast.FilterDecl):
        yield from _filter_refs(decl)
    elif isinstance(decl, ast.StageDecl):
        args = decl.method.args
        if args and isinstance(args[0], ast.Name):
            yield Ref(args[0], (MODEL, STAGE), "the init model")
        if len(args) > 1:
            yield from _stage_data_refs(args[1])
        yield from _reward_refs(option(decl.block, "rewards"))
    elif isinstance(decl, ast.RewardDecl) and decl.function.func.name == "rubric":
        call = decl.function
        grader = call.args[0] if call.args else call_kw(call, "grader")
        for name in names_in(grader):
            yield Ref(name, (MODEL,), "the rubric grader")
        prompt = call.args[1] if len(call.args) > 1 else call_kw(call, "prompt")
        for name in names_in(prompt):
            yield Ref(name, (PROMPT,), "the rubric prompt")
    elif isinstance(decl, ast.EvaluateDecl):
        for target in decl.targets:
            yield Ref(target, (MODEL, STAGE), "a model to evaluate")
        for bench in decl.benchmarks:
            yield Ref(bench, (DATASET,), "a benchmark")
        for name in names_in(option(decl.block, "grader")):
            yield Ref(name, (MODEL,), "the rubric grader")
        for name in names_in(option(decl.block, "rubric_prompt")):
            yield Ref(name, (PROMPT,), "the grader's rubric prompt")


def refs_of(c: Checked) -> list[tuple[ast.Decl, tuple[Ref, ...]]]:
    """Every declaration with its references, computed once for all the rules that read them."""
    found = c.memo.get("refs")
    if found is None:
        found = c.memo["refs"] = [(d, tuple(references(d))) for d in c.program.decls]
    return found


def duplicate_names(c: Checked) -> Iterator[Diagnostic]:
    program = c.program
    seen: dict[str, ast.Decl] = {}
    for decl in program.decls:
        first = seen.setdefault(decl.name.name, decl)
        if first is not decl:
            where = f"{first.name.span.file}:{first.name.span.line}"
            unnamed = isinstance(decl, ast.EvaluateDecl) and not decl.named
            yield Diagnostic(f"'{decl.name.name}' is already declared (as {a(first.kind)} at {where})",
                             decl.name.span,
                             hint="name this evaluation: evaluate ... on ... as <name>" if unnamed
                             else "give it another name, or drop one of them")


def undefined_names(c: Checked) -> Iterator[Diagnostic]:
    program = c.program
    declared = program.by_name
    hinted = 0
    for decl, refs in refs_of(c):
        for ref in refs:
            if ref.name.name not in declared:
                # a hint costs a scan of the names: only for the errors that will be shown
                hinted += 1
                candidates = [d.name.name for d in program.decls if d.kind in ref.kinds] \
                    if hinted <= MAX_REPORTED else []
                drop = program.dropped.get(ref.name.name)
                hint = (f"'{ref.name.name}' is dropped at {drop.file}:{drop.line}:{drop.col} (drop "
                        f"{ref.name.name}); drop or replace {decl.name.name} too, or keep "
                        f"{ref.name.name}") if drop is not None else None
                yield Diagnostic(f"undefined name '{ref.name.name}' ({ref.role})", ref.name.span,
                                 expected=kinds_phrase(ref.kinds),
                                 **(suggestion(ref.name.name, candidates, ref.name.span) if drop is None
                                    else {"hint": hint}))


def wrong_kinds(c: Checked) -> Iterator[Diagnostic]:
    program = c.program
    by_name = program.by_name  # the first declaration of a name: duplicate_names reports the others
    hinted = 0
    for decl, refs in refs_of(c):
        for ref in refs:
            target = by_name.get(ref.name.name)
            if target is not None and target.kind not in ref.kinds:
                hinted += 1
                candidates = [] if hinted > MAX_REPORTED else [
                    d.name.name for d in program.decls if d.kind in ref.kinds and d.name.name != ref.name.name]
                found = suggestion(ref.name.name, candidates, ref.name.span)
                yield Diagnostic(f"'{ref.name.name}' is {a(target.kind)}, but {ref.role} must be "
                                 f"{kinds_phrase(ref.kinds)}", ref.name.span, fix=found["fix"],
                                 hint=found["hint"]
                                 or (f"declared {' or '.join(ref.kinds)} names: " + ", ".join(candidates[:12])
                                     + (", ..." if len(candidates) > 12 else "")
                                     if candidates else None))


def cycles(c: Checked) -> Iterator[Diagnostic]:
    """A declaration may not depend on itself (stage init chains, filter/distill loops)."""
    program = c.program
    by_name = program.by_name
    edges = {d.name.name: [r.name.name for r in refs if r.name.name in by_name]
             for d, refs in refs_of(c)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()
    # depth-first with an explicit stack: a chain of 100,000 stages is not a recursion limit
    for decl in program.decls:
        if decl.name.name in state:
            continue
        path, stack = [decl.name.name], [iter(edges[decl.name.name])]
        state[decl.name.name] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    yield Diagnostic(f"'{nxt}' depends on itself: " + " -> ".join(loop),
                                     by_name[nxt].name.span,
                                     hint="a stage starts from a model or an earlier stage")
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges[nxt]))


def unused_declarations(c: Checked) -> Iterator[Diagnostic]:
    """Warn about inputs nothing uses (stages and evaluations are products, never 'unused')."""
    program = c.program
    used = {r.name.name for _, refs in refs_of(c) for r in refs}
    for decl in program.decls:
        if decl.kind not in (STAGE, "evaluate") and decl.name.name not in used:
            yield Diagnostic(f"{decl.kind} '{decl.name.name}' is declared but never used",
                             decl.name.span, severity="warning")
