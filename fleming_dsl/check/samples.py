"""Graph samples: the metapath against the hop range and mask, the names against the graph file,
and counts a job can reach.

A metapath is walked as written: `hops = lo..hi` takes walks of lo to hi steps along the path's
first steps, so `hi` may not exceed the number of steps written. A longer walk is a longer path
written out (`gene -[GiG]-> gene -[GiG]-> gene`).
"""

from __future__ import annotations

import json

from collections.abc import Iterator
from dataclasses import replace

from fleming_dsl.check.common import Checked, option
from fleming_dsl.check.files import exists, local_path
from fleming_dsl.check.graph_vocab import VocabularyError, vocabulary
from fleming_dsl.errors import Diagnostic, Fix, suggestion
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import MAX_COUNT, REVERSED, hops_problem

_SHOWN = 12  # names listed in an "expected one of" line before it is cut short


def _samples(c: Checked) -> Iterator[tuple[ast.SampleDecl, ast.Metapath | None]]:
    for d in c.program.decls:
        if isinstance(d, ast.SampleDecl):
            path = option(d.block, "path")
            yield d, path if isinstance(path, ast.Metapath) else None


def _hop_range(d: ast.SampleDecl, steps: int) -> tuple[int, int, ast.Value | None]:
    hops = option(d.block, "hops")
    if isinstance(hops, ast.Range):
        return hops.lo, hops.hi, hops
    if isinstance(hops, ast.Num) and isinstance(hops.value, int):
        return hops.value, hops.value, hops
    return steps, steps, None


def hops_within_metapath(c: Checked) -> Iterator[Diagnostic]:
    for d, path in _samples(c):
        if path is None:
            continue
        steps = len(path.edges)
        lo, hi, hops = _hop_range(d, steps)
        problem = hops_problem(steps, lo, hi) if hops is not None else None
        if problem is not None:  # the sample job asks the same of a hand-written config
            yield Diagnostic(problem[0], hops.span, hint=problem[1])


def mask_within_path(c: Checked) -> Iterator[Diagnostic]:
    """mask = N names the N-th node of the path (0 = the start): it must exist in the shortest walk
    (the sample's resolved hops, the metapath's length when unwritten)."""
    assert c.experiment is not None
    for sample in c.experiment.samples:
        if isinstance(sample.mask, str) or sample.mask <= sample.hops_min:
            continue
        decl = c.decl_at(sample.span)
        mask = option(decl.block, "mask") if isinstance(decl, ast.SampleDecl) else None
        yield Diagnostic(f"'mask' index {sample.mask} is outside the path: the shortest walk has "
                         f"nodes 0..{sample.hops_min}", mask.span if mask is not None else sample.span,
                         hint="mask = anchor (the start), mask = target (the end), or an index "
                              f"from 0 to {sample.hops_min}")


mask_within_path.after_lowering = True  # type: ignore[attr-defined]


def counts_are_reachable(c: Checked) -> Iterator[Diagnostic]:
    for d, _ in _samples(c):
        count = option(d.block, "count")
        if isinstance(count, ast.Num) and isinstance(count.value, (int, float)) and count.value > MAX_COUNT:
            yield Diagnostic(f"'count' must be at most {MAX_COUNT:_}, got {count.value:_}", count.span,
                             hint="split a larger sample into several sample declarations")


def _graph_files(c: Checked, graph: ast.GraphDecl) -> list | None:
    paths = [local_path(c, graph, a.value) for a in graph.source.args if isinstance(a, ast.Str)]
    expected = {"primekg": 1, "hetionet": 2}.get(graph.source.func.name)
    if not paths or (expected and len(paths) != expected) or not all(exists(p) for p in paths):
        return None  # lowering or missing_files reports it
    return paths


def _written(name: str) -> str:
    """A node type or relation as a metapath writes it: bare when it is a name, else quoted."""
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _unknown(kind: str, name: str, known: frozenset[str], graph: ast.GraphDecl, span) -> Diagnostic:
    names = sorted(known)
    shown = ", ".join(names[:_SHOWN]) + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")
    found = suggestion(name, names, span)
    if found["fix"] is not None:  # the span of a relation is its whole edge, `-[name]->`
        close = _written(found["fix"].text)
        found["fix"] = Fix(span, f"-[{close}]->" if kind == "relation" else close)
    return Diagnostic(f"{kind} '{name}' is not in graph {graph.name.name}", span,
                      expected=f"one of {shown}" if names else None, **found)


def _vocabularies(c: Checked):
    """(graph, its vocabulary or None, a warning or None) for each graph, read once per check."""
    found: dict[str, object] = {}

    def of(graph: ast.GraphDecl) -> tuple[object, Diagnostic | None]:
        if graph.name.name in found:
            return found[graph.name.name], None
        files = _graph_files(c, graph)
        warning = None
        try:
            found[graph.name.name] = vocabulary(graph.source.func.name, files) if files else None
        except (VocabularyError, OSError, UnicodeDecodeError, ValueError) as err:
            found[graph.name.name] = None
            warning = Diagnostic(f"cannot read the names of graph {graph.name.name} to check its "
                                 f"samples: {_reason(err)}", graph.source.span, severity="warning")
        return found[graph.name.name], warning
    return of


def names_in_graph(c: Checked) -> Iterator[Diagnostic]:
    """Every relation and node type of a metapath exists in its graph, when the graph is local;
    each relation is walked the way the graph writes it; a graph's `reads { }` names its own
    relations."""
    vocab_of = _vocabularies(c)
    for graph in c.program.decls:
        reads = _reads_block(graph)
        if reads is None:
            continue
        vocab, warning = vocab_of(graph)
        if warning is not None:
            yield warning
        written = sorted({r for r in vocab.relations if not r.endswith(REVERSED)}) if vocab else []
        for item in reads.options() if written else ():
            if item.key.name not in written:  # a name, not an edge: the fix writes the name alone
                yield replace(_unknown("relation", item.key.name, frozenset(written), graph, item.key.span),
                              **suggestion(item.key.name, written, item.key.span))
    for d, path in _samples(c):
        graph = c.by_name.get(d.graph.name)
        if path is None or not isinstance(graph, ast.GraphDecl):
            continue
        vocab, warning = vocab_of(graph)
        if warning is not None:
            yield warning
        if vocab is None or not vocab.relations:
            continue  # absent, unreadable, or no rows yet: the job reports it
        for node in path.nodes:
            if node.type is not None and node.type not in vocab.node_types:
                yield _unknown("node type", node.type, vocab.node_types, graph, node.span)
        for i, edge in enumerate(path.edges):
            if edge.relation is not None and edge.relation not in vocab.relations:
                yield _unknown("relation", edge.relation, vocab.relations, graph, edge.span)
            elif edge.relation is not None and vocab.ends and all(
                    n.type is None or n.type in vocab.node_types for n in path.nodes[i:i + 2]):
                found = _direction_problem(vocab.ends, edge.relation, path.nodes[i].type,
                                           path.nodes[i + 1].type)
                if found is not None:
                    yield Diagnostic(found[0], edge.span, expected=found[1], hint=found[2])


def _reads_block(decl: ast.Decl) -> ast.Block | None:
    if not isinstance(decl, ast.GraphDecl) or decl.block is None:
        return None
    return next((i.block for i in decl.block.items
                 if isinstance(i, ast.Entry) and i.name.name == "reads" and i.block is not None), None)


def _direction_problem(ends: frozenset, relation: str, start: str | None,
                       end: str | None) -> tuple[str, str | None, str | None] | None:
    """(why, expected, hint) when no edge of `relation` leads from a `start` node to an `end`
    node as the graph writes it (None = any type), or None. A metapath walks a relation the way
    the file writes it; the other way is the relation's reverse, `<relation>:rev`."""

    def fits(h: str, t: str) -> bool:
        return (start is None or h == start) and (end is None or t == end)

    joins = sorted((h, t) for r, h, t in ends if r == relation)
    if any(fits(h, t) for h, t in joins):
        return None
    step = f"{start or '*'} -[{relation}]-> {end or '*'}"
    reverse = relation.removesuffix(REVERSED) if relation.endswith(REVERSED) else relation + REVERSED
    if any(r == reverse and fits(h, t) for r, h, t in ends):
        h, t = next((h, t) for h, t in joins if fits(t, h))
        return (f"relation '{relation}' runs {h} -> {t}: {step} would walk it backwards",
                None, f'to walk it from {t} to {h}, write -["{reverse}"]-> (a metapath walks a '
                      "relation the way the graph writes it)")
    shown = ", ".join(f"{h} -> {t}" for h, t in joins[:_SHOWN])
    return (f"relation '{relation}' never leads from {start or 'any type'} to {end or 'any type'}",
            f"one of its steps: {shown}" + (f" (and {len(joins) - _SHOWN} more)" if len(joins) > _SHOWN else ""),
            None)


def _reason(err: Exception) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start})"
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return str(err)
