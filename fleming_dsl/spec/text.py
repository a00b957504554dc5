"""Spec text before and after parsing: decoding a file's bytes, the nesting limit, and turning
token text into values and spans. Imports no parser: the loader decodes and the nesting limit
is checked before lark is loaded."""

from __future__ import annotations

from collections.abc import Callable

from fleming_dsl.errors import Diagnostic
from fleming_dsl.ir import Span

# ---------------------------------------------------------------- source text

_BOM = b"\xef\xbb\xbf"
MAX_NESTING = 64  # brackets and blocks inside each other; deeper is never a real spec


def decode_source(data: bytes, file: str) -> tuple[str, Diagnostic | None]:
    """A spec file's bytes as text (UTF-8, an optional BOM dropped), or a diagnostic at the
    line and column of the first byte that is not UTF-8, with a hint about the encoding."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        start = err.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
    span = Span(file=file, line=line, col=col, end_line=line, end_col=col + 1)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:64].count(b"\0") > len(data[:64]) // 4:
        hint = "the file looks like UTF-16: save it as UTF-8"
    else:
        hint = "the file looks like Latin-1 or Windows-1252 text: save it as UTF-8"
    return "", Diagnostic(f"the file is not UTF-8: byte 0x{data[start]:02x} cannot start a character "
                          "here", span, hint=hint)


def scan_brackets(text: str):
    """Yield (char, offset, line, col) for every bracket outside strings and comments."""
    line, line_start, i, n = 1, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start = line + 1, i + 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            i = j + 1 if j < n and text[j] == '"' else j
            continue
        elif c in "([{}])":
            yield c, i, line, i - line_start + 1
        i += 1


def too_deep(text: str, file: str) -> Diagnostic | None:
    """A diagnostic at the first bracket nested deeper than MAX_NESTING (None when none is)."""
    depth = 0
    for c, _, line, col in scan_brackets(text):
        depth += 1 if c in "([{" else -1 if depth > 0 else 0
        if depth > MAX_NESTING:
            return Diagnostic(f"nesting is too deep: more than {MAX_NESTING} brackets inside each other",
                              Span(file=file, line=line, col=col, end_line=line, end_col=col + 1))
    return None


# ---------------------------------------------------------------- spans


def _validated_span(file: str, line: int, col: int, end_line: int, end_col: int) -> Span:
    return Span(file=file, line=line, col=col, end_line=end_line, end_col=end_col)


_SPAN_FIELDS = frozenset(Span.model_fields)


def _trusted_span(file: str, line: int, col: int, end_line: int, end_col: int) -> Span:
    """A Span built without pydantic's validation, as `model_construct` does but at a third of
    its cost: the parser makes one per token, and validating ints lark computed was a third of
    turning the tree into the AST for a 100,000-declaration spec."""
    span = object.__new__(Span)
    _set = object.__setattr__
    _set(span, "__dict__", {"file": file, "line": line, "col": col, "end_line": end_line,
                            "end_col": end_col})
    _set(span, "__pydantic_fields_set__", _SPAN_FIELDS)
    _set(span, "__pydantic_extra__", None)
    _set(span, "__pydantic_private__", None)
    return span


def _pick_span_factory() -> Callable[[str, int, int, int, int], Span]:
    """The trusted factory when it builds what validation builds (it leans on pydantic's
    instance layout), the validating one otherwise."""
    try:
        probe = _trusted_span("f", 1, 2, 3, 4)
        same = probe == _validated_span("f", 1, 2, 3, 4) and probe.model_dump() == _validated_span(
            "f", 1, 2, 3, 4).model_dump() and hash(probe) == hash(_validated_span("f", 1, 2, 3, 4))
    except Exception:  # noqa: BLE001 - any surprise in pydantic's internals: validate instead
        same = False
    return _trusted_span if same else _validated_span


new_span = _pick_span_factory()


# ---------------------------------------------------------------- token values


def unquote(raw: str) -> str:
    # Only \" and \\ are escapes; any other backslash stays (regexes read as written).
    body, out, i = raw[1:-1], [], 0
    if "\\" not in body:  # most strings: nothing to unescape, no walk over the characters
        return body
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in '"\\':
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


MAX_INT_DIGITS = 4000  # Python refuses to read longer integers (sys.get_int_max_str_digits)


def number(raw: str) -> int | float:
    """A number token's value. A whole number too long to read as an int is read as a float
    (infinite), as `1e999` is, so the option's own check rejects it with its location."""
    clean = raw.replace("_", "")
    if any(c in clean for c in ".eE") or len(clean) > MAX_INT_DIGITS:
        return float(clean)
    return int(clean)


def as_float(value: int | float) -> float:
    """A number as a float; an int past a float's range is infinite (the option's own check
    then rejects it with its location) rather than an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


UNITS = ("KB", "MB", "GB", "TB", "s", "m", "h", "d")


def quantity(raw: str) -> tuple[float, str]:
    for unit in UNITS:
        if raw.endswith(unit):
            return float(raw[: -len(unit)].replace("_", "")), unit
    raise ValueError(raw)  # unreachable: the QUANTITY token only matches these units
