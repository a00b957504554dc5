"""Reading typed values out of the AST, with located diagnostics for wrong types and ranges.

`Options` wraps the `key = value` pairs of one block (or the keyword arguments of one call).
Lowering asks it for each option it knows, by type; whatever it never asked for is an unknown
option, reported with the list of valid ones and a "did you mean". So the set of valid options
is exactly what lowering reads: it cannot drift from the IR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fleming_dsl.errors import MAX_REPORTED, Diagnostic, Fix, suggestion
from fleming_dsl.ir import Span
from fleming_dsl.spec import ast
from fleming_dsl.spec.text import as_float

_MISSING = object()

_DURATION_MIN = {"s": 1 / 60, "m": 1, "h": 60, "d": 24 * 60}
_SIZE_MB = {"KB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}


def describe(value: ast.Value) -> str:
    """What kind of value the user wrote, for 'must be X, got Y' messages."""
    names = {ast.Str: "a string", ast.Num: "a number", ast.Quantity: "a quantity",
             ast.Bool: "true/false", ast.Name: "a name", ast.Call: "a call", ast.Index: "an index",
             ast.ListV: "a list", ast.Range: "a range", ast.Ratio: "a ratio",
             ast.Compare: "a comparison", ast.Sum: "a sum", ast.Metapath: "a metapath"}
    return names.get(type(value), type(value).__name__)


def value_span(value: ast.Value) -> Span:
    return value.span


class Diagnostics(list):
    """A list of diagnostics with a shorthand for adding one."""

    def error(self, message: str, span: Span | None, expected: str | None = None,
              hint: str | None = None, fix: Fix | None = None) -> None:
        self.append(Diagnostic(message, span, expected=expected, hint=hint, fix=fix))


class Options:
    """Typed access to one block's options; `finish()` reports the ones nobody asked for."""

    def __init__(self, pairs: Iterable[tuple[ast.Name, ast.Value]], where: str, diags: Diagnostics):
        self.pairs = list(pairs)
        self.where = where  # "a stage", "vllm()", ...: used in 'unknown option' messages
        self.diags = diags
        self.known: dict[str, None] = {}  # the names asked for, in order (a dict: lookups are O(1))
        self.unlisted: set[str] | frozenset[str] = frozenset()  # known, but not offered in error messages
        self._seen: dict[str, ast.Name] = {}
        self._last: dict[str, ast.Value] = {}  # the value written last wins
        for key, value in self.pairs:
            if key.name in self._seen:
                diags.error(f"option '{key.name}' is given twice", key.span,
                            hint=f"first given at line {self._seen[key.name].span.line}")
            self._seen[key.name] = key
            self._last[key.name] = value

    @classmethod
    def of_block(cls, block: ast.Block | None, where: str, diags: Diagnostics) -> "Options":
        items = block.options() if block is not None else ()
        return cls(((o.key, o.value) for o in items), where, diags)

    @classmethod
    def of_call(cls, call: ast.Call | None, where: str, diags: Diagnostics) -> "Options":
        kwargs = call.kwargs if call is not None else ()
        return cls(((k.key, k.value) for k in kwargs), where, diags)

    def raw(self, key: str) -> ast.Value | None:
        self.known[key] = None
        return self._last.get(key)

    def written(self, key: str) -> bool:
        """Whether `key` is written (it is marked as asked for either way)."""
        self.known[key] = None
        return key in self._last

    def expect(self, keys: dict[str, None]) -> set[str]:
        """Mark all of `keys` as asked for at once; the ones written (a block writes a few of
        the ~40 training options, so reading only those is most of lowering a stage)."""
        self.known.update(keys)
        return {k for k in self._last if k in keys}

    def key_span(self, key: str) -> Span | None:
        return self._seen[key].span if key in self._seen else None

    def get(self, key: str, convert: Callable[[ast.Value, str, Diagnostics], Any],
            default: Any = None, check: Callable[[Any], str | None] | None = None) -> Any:
        value = self.raw(key)
        if value is None:
            return default
        out = convert(value, key, self.diags)
        if out is _MISSING:
            return default
        problem = check(out) if check else None
        if problem:
            self.diags.error(f"'{key}' must be {problem}, got {_show(out)}", value_span(value))
            return default
        return out

    def finish(self) -> None:
        valid: list[str] | None = None
        unknown = 0
        for key, _ in self.pairs:
            if key.name not in self.known:
                valid = valid if valid is not None else sorted(k for k in self.known if k not in self.unlisted)
                unknown += 1
                # errors are shown in the order of their place, at most MAX_REPORTED: past that
                # many in one block, the rest of the block is never shown, so no hint is sought
                found = suggestion(key.name, valid, key.span) if unknown <= MAX_REPORTED else {}
                self.diags.error(f"unknown option '{key.name}' for {self.where}", key.span,
                                 expected=("one of " + ", ".join(valid)) if valid else "no options here",
                                 **found)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------- converters


def _wrong(value: ast.Value, key: str, wanted: str, diags: Diagnostics, hint: str | None = None,
           fix: str | None = None):
    """An error for a value of the wrong kind; `fix`, when given, is the text to write instead."""
    span = value_span(value)
    diags.error(f"'{key}' must be {wanted}, got {describe(value)}", span, hint=hint,
                fix=Fix(span, fix) if fix is not None else None)
    return _MISSING


def to_int(value, key, diags):
    if isinstance(value, ast.Num) and isinstance(value.value, int):
        return value.value
    if isinstance(value, ast.Num) and as_float(value.value).is_integer():
        return int(value.value)
    return _wrong(value, key, "a whole number", diags)


def to_float(value, key, diags):
    if isinstance(value, ast.Num):
        number = as_float(value.value)  # an int past a float's range is infinite, not an OverflowError
        if not math.isfinite(number):
            diags.error(f"'{key}' must be a finite number, got {_show_number(value.value)}", value_span(value))
            return _MISSING
        return number
    return _wrong(value, key, "a number", diags)


def to_str(value, key, diags):
    if isinstance(value, ast.Str):
        return value.value
    quoted = f'"{value.name}"' if isinstance(value, ast.Name) else None
    return _wrong(value, key, "a string", diags, f"write it in quotes: {quoted}" if quoted else None, quoted)


def to_bool(value, key, diags):
    if isinstance(value, ast.Bool):
        return value.value
    return _wrong(value, key, "true or false", diags)


def to_name(value, key, diags):
    if isinstance(value, ast.Name):
        return value.name
    return _wrong(value, key, "a name", diags)


def one_of(choices: Sequence[str]) -> Callable:
    """A converter accepting a bare name (or a string) from `choices`."""

    def convert(value, key, diags):
        word = value.name if isinstance(value, ast.Name) else value.value if isinstance(value, ast.Str) else None
        if word is None:
            return _wrong(value, key, "one of " + ", ".join(choices), diags)
        if word not in choices:
            diags.error(f"'{key}' must be one of {', '.join(choices)}; got '{word}'", value_span(value),
                    **suggestion(word, choices, value_span(value)))
            return _MISSING
        return word

    return convert


def _parse_quantity_text(text: str) -> tuple[float, str] | None:
    for unit in ("KB", "MB", "GB", "TB", "s", "m", "h", "d"):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)].replace("_", "")), unit
            except ValueError:
                return None
    return None


def _quantity(value: ast.Value) -> tuple[float, str] | None:
    if isinstance(value, ast.Quantity):
        return value.amount, value.unit
    if isinstance(value, ast.Str):
        return _parse_quantity_text(value.value.strip())
    return None


# A year of wall time and a petabyte of memory: more is a typo, and the limits keep every value
# an int a scheduler accepts.
_MAX_MINUTES = 366 * 24 * 60
_MAX_MB = 1024 ** 3


def _amount(value, key, diags, units: dict, wanted: str, unit: Callable[[float], str], limit: float,
            limit_text: str):
    """A quantity's amount in `units`' base unit. Sizes and durations need a unit (a bare
    `mem = 64` would be read as a guess), and the amount must be above zero and finite; the
    hint's unit is the one the number most likely meant (`unit(number)`)."""
    if isinstance(value, ast.Num):
        finite = math.isfinite(as_float(value.value))  # 400 nines: no OverflowError
        written = f"{_show_number(value.value)}{unit(value.value)}" if finite else None
        return _wrong(value, key, wanted, diags, f"write the unit: {written}" if written else None, written)
    q = _quantity(value)
    if q is None or q[1] not in units:
        return _wrong(value, key, wanted, diags)
    amount = q[0] * units[q[1]]
    if not math.isfinite(amount) or amount > limit:
        diags.error(f"'{key}' is too large", value_span(value), hint=f"at most {limit_text}")
        return _MISSING
    if amount <= 0:
        diags.error(f"'{key}' must be > 0, got {_show_number(q[0])}{q[1]}", value_span(value))
        return _MISSING
    return amount


def to_minutes(value, key, diags):
    """A duration (30m, 48h, 2d, "48h") -> whole minutes, at least 1."""
    amount = _amount(value, key, diags, _DURATION_MIN, "a duration such as 30m, 48h or 2d",
                     lambda n: "h" if n <= 72 else "m", _MAX_MINUTES, "366d")
    return amount if amount is _MISSING else max(1, round(amount))


def to_megabytes(value, key, diags):
    """A size (512MB, 80GB, "80GB") -> whole MB, at least 1."""
    # a bare number past a node's memory in GB is megabytes (SLURM's own reading of --mem=8000)
    amount = _amount(value, key, diags, _SIZE_MB, "a size such as 512MB or 80GB",
                     lambda n: "GB" if n <= 4096 else "MB", _MAX_MB, "1024TB")
    return amount if amount is _MISSING else max(1, round(amount))


def to_seconds(value, key, diags):
    """A duration (30s, 2m) -> seconds."""
    amount = _amount(value, key, diags, _DURATION_MIN, "a duration such as 30s or 2m",
                     lambda n: "s", _MAX_MINUTES, "366d")
    return amount if amount is _MISSING else amount * 60


def _show_number(x: float) -> str:
    if isinstance(x, int) and not isinstance(x, bool):
        text = str(x)
        return text if len(text) <= 30 else f"a whole number of {len(text)} digits"
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15 else str(x)


def list_of(item: Callable) -> Callable:
    def convert(value, key, diags):
        if not isinstance(value, ast.ListV):
            return _wrong(value, key, "a list [...]", diags)
        out = [item(v, key, diags) for v in value.items]
        return _MISSING if any(o is _MISSING for o in out) else tuple(out)

    return convert


def scalar(value, key, diags):
    """A plain value for free-form options (reward options, sweep points)."""
    if isinstance(value, ast.Num):
        return to_float(value, key, diags) if isinstance(value.value, float) else value.value
    if isinstance(value, (ast.Str, ast.Bool)):
        return value.value
    return _wrong(value, key, "a string, number or true/false", diags)


# ---------------------------------------------------------------- range checks (None = fine)


def positive(x) -> str | None:
    return None if x > 0 else "> 0"


def non_negative(x) -> str | None:
    return None if x >= 0 else ">= 0"


def at_least(n: int) -> Callable[[Any], str | None]:
    return lambda x: None if x >= n else f">= {n}"


def whole_range(lo: int, hi: int) -> str:
    """How a range of whole numbers is written in errors and the reference: "in 2..26"."""
    return f"in {lo}..{hi}"


def in_range(lo: int, hi: int) -> Callable[[Any], str | None]:
    return lambda x: None if lo <= x <= hi else whole_range(lo, hi)


def unit_interval(x) -> str | None:
    return None if 0 < x <= 1 else "in (0, 1]"


def a_rate(x) -> str | None:
    return None if 0 <= x < 1 else "in [0, 1)"


MISSING = _MISSING
