"""Semantic checks on the merged AST: small ordered rules, each yielding diagnostics.

These rules judge how declarations refer to each other and to files: duplicate and undefined
names, names of the wrong kind, reference cycles, teachers without a generation backend, missing
local files. Option names, value types and value ranges are judged while lowering (`lower.py`),
where each value meets the IR field it becomes.

Missing files: a prompt template is part of the spec's source, so a missing one is always an
error. Data (graph files, datasets, local model weights) is often staged on a cluster separately:
a missing data file is an error when its folder exists (a typo in a shipped tree) and a warning
when the folder does not exist either (external data, e.g. `data/primekg/kg.csv` on a laptop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fleming_dsl.check import multirank
from fleming_dsl.errors import Diagnostic, did_you_mean
from fleming_dsl.spec import ast

MODEL, GRAPH, SAMPLE, DATASET, PROMPT = "model", "graph", "sample", "dataset", "prompt"
SYNTH, DISTILL, FILTER, REWARD, STAGE = "synthesize", "distill", "filter", "reward", "stage"

# What a data-producing reference may name (a stage's data, a filter's source, a miner's pool).
ITEM_SOURCES = (DATASET, SYNTH, DISTILL, FILTER)


@dataclass(frozen=True)
class Ref:
    """One reference from a declaration to another name."""

    name: ast.Name
    kinds: tuple[str, ...]  # the kinds allowed here
    role: str  # what the reference is for, as users read it: "the teacher", "the init model"


def _call_kw(call: ast.Call | None, key: str) -> ast.Value | None:
    if call is None:
        return None
    return next((kw.value for kw in call.kwargs if kw.key.name == key), None)


def _names_in(value: ast.Value | None) -> list[ast.Name]:
    if isinstance(value, ast.Name):
        return [value]
    if isinstance(value, ast.ListV):
        return [v for v in value.items if isinstance(v, ast.Name)]
    return []


def _option(block: ast.Block | None, key: str) -> ast.Value | None:
    if block is None:
        return None
    return next((o.value for o in reversed(block.options()) if o.key.name == key), None)


def _filter_refs(decl: ast.FilterDecl) -> Iterator[Ref]:
    yield Ref(decl.source, ITEM_SOURCES, "the filter source")
    for item in decl.block.items:
        if not isinstance(item, ast.Entry) or item.call is None:
            continue
        if item.name.name in ("verify_label", "difficulty"):
            for name in _names_in(_call_kw(item.call, "model")):
                yield Ref(name, (MODEL, STAGE) if item.name.name == "difficulty" else (MODEL,),
                          f"the {item.name.name} model")
        if item.name.name == "difficulty":
            for name in _names_in(_call_kw(item.call, "prompt")):
                yield Ref(name, (PROMPT,), "the grader rubric")
        if item.name.name == "decontaminate":
            for name in _names_in(_call_kw(item.call, "against")):
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
    elif isinstance(decl, ast.FilterDecl):
        yield from _filter_refs(decl)
    elif isinstance(decl, ast.StageDecl):
        args = decl.method.args
        if args and isinstance(args[0], ast.Name):
            yield Ref(args[0], (MODEL, STAGE), "the init model")
        if len(args) > 1:
            yield from _stage_data_refs(args[1])
        yield from _reward_refs(_option(decl.block, "rewards"))
    elif isinstance(decl, ast.EvaluateDecl):
        for target in decl.targets:
            yield Ref(target, (MODEL, STAGE), "a model to evaluate")
        for bench in decl.benchmarks:
            yield Ref(bench, (DATASET,), "a benchmark")


# ---------------------------------------------------------------- rules


def duplicate_names(program: ast.Program) -> Iterator[Diagnostic]:
    seen: dict[str, ast.Decl] = {}
    for decl in program.decls:
        first = seen.setdefault(decl.name.name, decl)
        if first is not decl:
            where = f"{first.name.span.file}:{first.name.span.line}"
            unnamed = isinstance(decl, ast.EvaluateDecl) and not decl.named
            yield Diagnostic(f"'{decl.name.name}' is already declared (as {_a(first.kind)} at {where})",
                             decl.name.span,
                             hint="name this evaluation: evaluate ... on ... as <name>" if unnamed
                             else "give it another name, or drop one of them")


def undefined_names(program: ast.Program) -> Iterator[Diagnostic]:
    declared = {d.name.name for d in program.decls}
    for decl in program.decls:
        for ref in references(decl):
            if ref.name.name not in declared:
                candidates = [d.name.name for d in program.decls if d.kind in ref.kinds]
                yield Diagnostic(f"undefined name '{ref.name.name}' ({ref.role})", ref.name.span,
                                 expected=_kinds_phrase(ref.kinds),
                                 hint=did_you_mean(ref.name.name, candidates))


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _kinds_phrase(kinds: tuple[str, ...]) -> str:
    return "a " + " or a ".join(kinds) if len(kinds) <= 2 else "a " + ", ".join(kinds[:-1]) + \
        f" or {kinds[-1]}"


def wrong_kinds(program: ast.Program) -> Iterator[Diagnostic]:
    by_name = {d.name.name: d for d in program.decls}
    for decl in program.decls:
        for ref in references(decl):
            target = by_name.get(ref.name.name)
            if target is not None and target.kind not in ref.kinds:
                candidates = [d.name.name for d in program.decls if d.kind in ref.kinds]
                yield Diagnostic(f"'{ref.name.name}' is {_a(target.kind)}, but {ref.role} must be "
                                 f"{_kinds_phrase(ref.kinds)}", ref.name.span,
                                 hint=did_you_mean(ref.name.name, candidates)
                                 or (f"declared {' or '.join(ref.kinds)} names: " + ", ".join(candidates)
                                     if candidates else None))


def cycles(program: ast.Program) -> Iterator[Diagnostic]:
    """A declaration may not depend on itself (stage init chains, filter/distill loops)."""
    by_name = {d.name.name: d for d in program.decls}
    edges = {d.name.name: [r.name.name for r in references(d) if r.name.name in by_name]
             for d in program.decls}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> Iterator[Diagnostic]:
        state[name] = 1
        path.append(name)
        for nxt in edges[name]:
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    decl = by_name[nxt]
                    yield Diagnostic(f"'{nxt}' depends on itself: " + " -> ".join(loop),
                                     decl.name.span, hint="a stage starts from a model or an earlier stage")
            elif nxt not in state:
                yield from visit(nxt, path)
        path.pop()
        state[name] = 2

    for decl in program.decls:
        if decl.name.name not in state:
            yield from visit(decl.name.name, [])


def teachers_have_backends(program: ast.Program) -> Iterator[Diagnostic]:
    by_name = {d.name.name: d for d in program.decls}
    for decl in program.decls:
        if not isinstance(decl, (ast.SynthesizeDecl, ast.DistillDecl)):
            continue
        model = by_name.get(decl.teacher.name)
        if isinstance(model, ast.ModelDecl) and not _has_backend(model):
            yield Diagnostic(f"the teacher '{decl.teacher.name}' has no generation backend",
                             decl.teacher.span,
                             hint=f"give model {decl.teacher.name} a block such as "
                                  "{ backend = vllm(tp = 8) } or { backend = transformers() }")


def buckets_need_difficulty(program: ast.Program) -> Iterator[Diagnostic]:
    """`clean[easy]` only selects items when `clean` is a filter with a difficulty step."""
    by_name = {d.name.name: d for d in program.decls}
    for decl in program.decls:
        if not isinstance(decl, ast.StageDecl) or len(decl.method.args) < 2:
            continue
        data = decl.method.args[1]
        if not isinstance(data, ast.Index):
            continue
        source = by_name.get(data.base.name)
        if source is None or source.kind not in ITEM_SOURCES:
            continue  # undefined_names / wrong_kinds report it
        graded = isinstance(source, ast.FilterDecl) and any(
            isinstance(i, ast.Entry) and i.name.name == "difficulty" for i in source.block.items)
        if not graded:
            yield Diagnostic(f"'{data.base.name}' has no difficulty buckets: only a filter with a "
                             "difficulty step has easy/moderate/hard items", data.span,
                             hint=f"train on {data.base.name} itself, or add difficulty(...) to a filter")


def _vllm_tp(model: ast.ModelDecl) -> int:
    """The tensor parallelism of a model's written vllm backend (0 when it has none)."""
    backend = _option(model.block, "backend")
    if not isinstance(backend, ast.Call) or backend.func.name != "vllm":
        return 0
    tp = _call_kw(backend, "tensor_parallel") or _call_kw(backend, "tp")
    return int(tp.value) if isinstance(tp, ast.Num) else 1


def _resources_block(block: ast.Block | None) -> ast.Block | None:
    return next((i.block for i in (block.items if block else ())
                 if isinstance(i, ast.Entry) and i.name.name == "resources" and i.call is None),
                None)


def data_gpus_cover_teacher(program: ast.Program) -> Iterator[Diagnostic]:
    """A written resources block on a vLLM-teacher step replaces the planner's GPUs, so it must
    give the tensor-parallel GPUs the teacher is served on."""
    by_name = {d.name.name: d for d in program.decls}
    for decl in program.decls:
        if not isinstance(decl, (ast.SynthesizeDecl, ast.DistillDecl)):
            continue
        teacher = by_name.get(decl.teacher.name)
        res = _resources_block(decl.block)
        tp = _vllm_tp(teacher) if isinstance(teacher, ast.ModelDecl) else 0
        if res is None or tp == 0:
            continue
        gpus = _option(res, "gpus")
        written = gpus.value if isinstance(gpus, ast.Num) else 0
        if isinstance(written, int) and written < tp:
            yield Diagnostic(f"{decl.kind} {decl.name.name} asks for {written} GPUs, but its teacher "
                             f"'{decl.teacher.name}' is served by vllm on {tp}", res.span,
                             hint=f"write gpus = {tp} in its resources block")


def unused_declarations(program: ast.Program) -> Iterator[Diagnostic]:
    """Warn about inputs nothing uses (stages and evaluations are products, never 'unused')."""
    used = {r.name.name for d in program.decls for r in references(d)}
    for decl in program.decls:
        if decl.kind not in (STAGE, "evaluate") and decl.name.name not in used:
            yield Diagnostic(f"{decl.kind} '{decl.name.name}' is declared but never used",
                             decl.name.span, severity="warning")


def _has_backend(model: ast.ModelDecl) -> bool:
    return model.source.func.name in ("template", "openai") or _option(model.block, "backend") is not None


# ---------------------------------------------------------------- files


@dataclass(frozen=True)
class FileRef:
    path: ast.Str
    kind: str  # "template" (always required) or "data" (required when its folder exists)


def file_refs(decl: ast.Decl) -> Iterator[FileRef]:
    """The local files a declaration names."""
    if isinstance(decl, ast.PromptDecl):
        for arg in decl.source.args[:1]:
            if isinstance(arg, ast.Str):
                yield FileRef(arg, "template")
    elif isinstance(decl, (ast.GraphDecl, ast.DatasetDecl)) or (
            isinstance(decl, ast.ModelDecl) and decl.source.func.name == "local"):
        for arg in decl.source.args:
            if isinstance(arg, ast.Str):
                yield FileRef(arg, "data")


def missing_file(ref: FileRef, base_dir: Path) -> Diagnostic | None:
    """A diagnostic when `ref` (relative to `base_dir`) does not exist; see the module docstring."""
    path = base_dir / ref.path.value
    if path.exists():
        return None
    if ref.kind == "template":
        return Diagnostic(f"template file not found: {ref.path.value}", ref.path.span,
                          hint=f"paths are relative to the folder of {ref.path.span.file}")
    if path.parent.is_dir():
        siblings = [p.name for p in path.parent.iterdir()]
        return Diagnostic(f"data file not found: {ref.path.value}", ref.path.span,
                          hint=did_you_mean(path.name, siblings)
                          or f"paths are relative to the folder of {ref.path.span.file}")
    return Diagnostic(f"data file not found: {ref.path.value} (treated as external data: its "
                      "folder does not exist here either)", ref.path.span, severity="warning")


def missing_files(program: ast.Program) -> Iterator[Diagnostic]:
    for decl in program.decls:
        for ref in file_refs(decl):
            diag = missing_file(ref, program.dirs[decl.span.file])
            if diag is not None:
                yield diag


RULES: tuple[Callable[[ast.Program], Iterator[Diagnostic]], ...] = (
    duplicate_names, undefined_names, wrong_kinds, cycles, teachers_have_backends,
    buckets_need_difficulty, data_gpus_cover_teacher, missing_files, unused_declarations,
    *multirank.RULES,  # several ranks / GPUs: see check/multirank.py
)


def run_checks(program: ast.Program) -> list[Diagnostic]:
    """Every diagnostic (errors and warnings) from every rule, in rule order."""
    return [diag for rule in RULES for diag in rule(program)]
