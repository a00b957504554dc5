"""Sweep expansion: `sweep lr in [1e-6, 5e-7]` in stage `rl1` becomes stages `rl1_lr_1em06`
and `rl1_lr_5em07` (in a number `.` reads `p` and `-` reads `m`, so names stay identifiers);
every stage started from a swept stage, and every evaluation of one, fans out the same way.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from fleming_dsl import ir
from fleming_dsl.lower.values import Diagnostics, value_span
from fleming_dsl.spec import ast


MAX_SWEEP_POINTS = 4096  # training runs one stage may expand to; the product is judged before it is built


def sweep_axes(d: ast.StageDecl, diags: Diagnostics) -> list[list[tuple[ast.Name, ast.Value]]]:
    """The stage's own sweeps, each a list of (key, value), the bad ones reported and left out."""
    axes = []
    for item in d.block.items if d.block else ():
        if not isinstance(item, ast.SweepItem):
            continue
        if any(k.name == item.key.name for k, _ in (axis[0] for axis in axes)):
            diags.error(f"'{item.key.name}' is swept twice in stage {d.name.name}", item.key.span,
                             hint="list all its values in one sweep")
            continue
        if not isinstance(item.values, ast.ListV) or not item.values.items:
            diags.error("a sweep needs a non-empty list of values: sweep lr in [1e-5, 5e-6]",
                             value_span(item.values))
            continue
        bad = [v for v in item.values.items if not isinstance(v, (ast.Num, ast.Str, ast.Bool, ast.Name))]
        for v in bad:
            diags.error("sweep values must be numbers, strings or names", value_span(v))
        texts = [_point_token(v) for v in item.values.items]
        times = Counter(texts)  # (list.count per value made a 100,000-value sweep quadratic)
        dup = next((v for v, t in zip(item.values.items, texts) if times[t] > 1), None)
        if dup is not None:
            diags.error(f"sweep '{item.key.name}' lists a value twice", value_span(dup))
        if not bad and dup is None:
            axes.append([(item.key, v) for v in item.values.items])
    return axes


def sweep_points(axes: list[list[tuple[ast.Name, ast.Value]]]) -> list[tuple[str, dict]]:
    """[(name suffix, {option: (key Name, value)})] for the stage's own sweeps (one point if none)."""
    points = []
    for combo in itertools.product(*axes):
        suffix = "".join(f"_{k.name}_{_point_token(v)}" for k, v in combo)
        points.append((suffix, {k.name: (k, v) for k, v in combo}))
    return points or [("", {})]


def expand_stages(decls: list[ast.StageDecl], lower_stage: Callable[..., ir.Stage | None],
              diags: Diagnostics) -> tuple[list[ir.Stage], dict[str, list[str]]]:
    """Expand and lower every stage; also returns each declared stage's IR stage names."""
    by_name = {d.name.name: d for d in decls}
    # stage -> [(suffix, own overrides, init suffix, sweep point)]: a stage started from a
    # swept stage gets one variant per parent variant (recording the parent's point but
    # keeping its own options), times its own sweep points
    variants: dict[str, list[tuple[str, dict, str, dict]]] = {}

    def expand(name: str) -> list[tuple[str, dict, str, dict]]:
        chain = [name]  # the init chain, walked without recursion (it may be 100,000 long)
        on_chain = {name}  # a set beside it: a membership test per link keeps the walk linear
        while chain[-1] not in variants and _init_name(by_name[chain[-1]]) in by_name \
                and _init_name(by_name[chain[-1]]) not in on_chain:
            chain.append(_init_name(by_name[chain[-1]]))
            on_chain.add(chain[-1])
        for link in reversed(chain):
            if link in variants:
                continue
            init = _init_name(by_name[link])
            parents = variants.get(init, [("", {}, "", {})]) if init in by_name else [("", {}, "", {})]
            axes = sweep_axes(by_name[link], diags)
            if _too_many(by_name[link], len(parents), axes, diags):
                axes = []
            variants[link] = [
                (ps + s, own, ps, {**point, **{k: _plain(v) for k, (_, v) in own.items()}})
                for ps, _, _, point in parents for s, own in sweep_points(axes)]
        return variants[name]

    out, names = [], {}
    total = sum(len(expand(d.name.name)) for d in decls)
    if total > MAX_SWEEP_POINTS:  # each stage within the bound, all of them together past it
        swept = max(decls, key=lambda d: len(variants[d.name.name]))
        first = next((i.key for i in (swept.block.items if swept.block else ())
                      if isinstance(i, ast.SweepItem)), swept.name)
        diags.error(f"the stages expand to {total:,} sweep points in all, more than "
                    f"{MAX_SWEEP_POINTS:,} (stage {swept.name.name}: {len(variants[swept.name.name]):,})",
                    first.span, hint="each point is a training run: sweep fewer values, or split "
                                     "the sweep over specs")
    for d in decls:
        names[d.name.name] = []
        chosen = expand(d.name.name)
        for suffix, overrides, init_suffix, point in chosen if total <= MAX_SWEEP_POINTS else chosen[:1]:
            stage = lower_stage(replace(d, name=ast.Name(d.name.name + suffix, d.name.span)),
                               _init_name(d) + init_suffix, overrides, point, d.name.name)
            if stage is not None:
                out.append(stage)
                names[d.name.name].append(stage.name)
    return out, names


def _too_many(d: ast.StageDecl, parents: int, axes: list, diags: Diagnostics) -> bool:
    """Whether the stage would expand past MAX_SWEEP_POINTS (reported): counted as a product of
    lengths, so 200 two-value sweeps are judged without building 2**200 points."""
    total = parents * math.prod(len(axis) for axis in axes)
    if total <= MAX_SWEEP_POINTS:
        return False
    where = axes[0][0][0].span if axes else d.name.span
    inherited = f" ({parents:,} from the stage it starts from)" if parents > 1 else ""
    diags.error(f"stage {d.name.name} expands to {total:,} sweep points{inherited}, more than "
                f"{MAX_SWEEP_POINTS:,}", where,
                hint="each point is a training run: sweep fewer values, or split the sweep over specs")
    return True


def _init_name(d: ast.StageDecl) -> str:
    first = d.method.args[0] if d.method.args else None
    return first.name if isinstance(first, ast.Name) else ""


def _point_token(value: ast.Value) -> str:
    """A sweep value as part of an identifier: 1e-06 -> 1em06, 0.5 -> 0p5, "a b" -> a_b."""
    if isinstance(value, ast.Num):
        text = repr(value.value)  # shortest round-trip form: distinct values, distinct names
        return text.replace(".", "p").replace("-", "m").replace("+", "")
    if isinstance(value, ast.Bool):
        return "true" if value.value else "false"
    raw = value.value if isinstance(value, ast.Str) else getattr(value, "name", "x")
    return re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_") or "x"


def _plain(value: ast.Value):
    if isinstance(value, ast.Name):
        return value.name
    if isinstance(value, ast.Bool):
        return str(value.value).lower()
    return value.value
