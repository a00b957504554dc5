"""What every part of the lowering shares: the program, the diagnostics it collects, paths
relative to the spec that wrote them, and the checks of call shapes and sub-blocks."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.errors import suggestion
from fleming_dsl.lower import schema
from fleming_dsl.lower.values import Diagnostics, Options, value_span
from fleming_dsl.spec import ast


# words written after a number as its unit that are not units here (`time = 90min` reads 90, min)
_UNIT_WORDS = frozenset(("min", "mins", "minute", "minutes", "sec", "secs", "second", "seconds",
                         "hr", "hrs", "hour", "hours", "day", "days", "g", "gb", "gib", "m", "mb",
                         "mib", "t", "tb", "tib", "k", "kb"))


class LowerContext:
    """The program being lowered, its diagnostics, and the helpers every lowering uses."""

    def __init__(self, program: ast.Program, project_root: Path):
        self.p = program
        self.root = Path(os.path.abspath(project_root))
        self.diags = Diagnostics()
        # name -> declaration: the program's one symbol table (a lookup must not walk the program)
        self.decls = program.by_name

    # paths ---------------------------------------------------------------
    def path(self, text: str, span: ir.Span) -> str:
        """A path written in the spec (relative to its file) as a project-relative posix path."""
        if os.path.isabs(text):
            return Path(text).as_posix()
        full = os.path.normpath(os.path.join(self.p.dirs[span.file], text))
        return Path(os.path.relpath(full, self.root)).as_posix()

    def path_arg(self, call: ast.Call, index: int, what: str) -> str:
        if len(call.args) <= index or not isinstance(call.args[index], ast.Str):
            self.diags.error(f"{call.func.name}() needs {what} as a string", call.span,
                             hint=f'e.g. {call.func.name}("{what}")')
            return ""
        arg = call.args[index]
        return self.path(arg.value, arg.span)

    def no_positional(self, call: ast.Call, allowed: int = 0) -> None:
        for extra in call.args[allowed:]:
            self.diags.error(f"{call.func.name}() takes {'no' if allowed == 0 else allowed} "
                             "positional argument" + ("s" if allowed != 1 else ""),
                             value_span(extra), hint="write options as name = value")

    def unknown_function(self, call: ast.Call, what: str, choices) -> None:
        self.diags.error(f"unknown {what} '{call.func.name}'", call.func.span,
                         expected="one of " + ", ".join(choices),
                         **suggestion(call.func.name, choices, call.func.span))

    def no_block(self, block: ast.Block | None, where: str) -> None:
        if block is None:
            return
        for item in block.items:
            if isinstance(item, ast.SweepItem):
                self.diags.error("sweeps are allowed only in stage blocks", item.span)
            elif isinstance(item, ast.Entry):
                unit = item.name.name.lower() in _UNIT_WORDS
                self.diags.error(f"unexpected '{item.name.name}' in {where}", item.name.span,
                                 hint=("a unit is one of s, m, h, d, KB, MB, GB, TB, written right "
                                       "after the number: 90m, 48h, 80GB") if unit else "options are written name = value")

    def str_arg(self, call: ast.Call, what: str) -> str:
        if not call.args or not isinstance(call.args[0], ast.Str):
            self.diags.error(f"{call.func.name}() needs {what} as a string", call.span)
            return ""
        return call.args[0].value

    def resources(self, block: ast.Block | None, where: str) -> ir.Resources:
        if block is None:  # most declarations: the defaults, one frozen instance for them all
            return _default_resources()
        opts = Options.of_block(block, f"resources of {where}", self.diags)
        self.no_block(block, f"resources of {where}")
        fields = schema.read(schema.RESOURCE_OPTIONS, opts)
        opts.finish()
        return ir.Resources(**fields)

    def sub_blocks(self, block: ast.Block | None, allowed: tuple[str, ...], where: str) -> dict:
        out: dict = {}
        for item in block.items if block else ():
            if not isinstance(item, ast.Entry):
                continue
            if item.name.name not in allowed or item.call is not None or item.block is None:
                self.diags.error(f"unexpected '{item.name.name}' in {where}", item.name.span,
                                 expected=(" or ".join(f"{a} {{ ... }}" for a in allowed)) + " or name = value",
                                 **suggestion(item.name.name, allowed, item.name.span))
                continue
            out[item.name.name] = item.block
        return out


@functools.cache
def _default_resources() -> ir.Resources:
    return ir.Resources()
