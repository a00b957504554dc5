"""The reference parser: lark's LALR parser for grammars/flm.lark (built once per process), its
tree -> AST transformer, and the friendly syntax errors.

The grammar file defines the language. `spec.parser` parses with a hand-written parser of the
same grammar first and comes here, from the statement before the first one that parser does not
accept, for the rest of the file: lark decides what a syntax error is and says where.
tests/unit/spec/test_descent.py holds the two to the same result."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from fleming_dsl.errors import Diagnostic, SpecError
from fleming_dsl.ir import Span
from fleming_dsl.resources import resource_dir
from fleming_dsl.spec import ast
from fleming_dsl.spec.text import (
    STATEMENT_KEYWORDS,
    as_float,
    new_span,
    number,
    quantity,
    scan_brackets,
    unquote,
)


def grammar_text() -> str:
    return (resource_dir("grammars") / "flm.lark").read_text(encoding="utf-8")


def _cache_file(grammar: str) -> str | bool:
    """Where lark keeps the built LALR tables between runs (a pickle: building them is a third
    of `fleming check`'s own time). In the user's own cache folder, never the shared temp folder
    lark defaults to, where another user could plant a pickle; no cache if it cannot be made."""
    import hashlib
    import os

    import lark

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(root, "fleming-dsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not os.access(folder, os.W_OK) or os.stat(folder).st_uid != os.getuid():
        return False
    key = hashlib.sha256(f"{lark.__version__}\0{grammar}".encode()).hexdigest()[:16]
    return os.path.join(folder, f"flm-lalr-{key}.pickle")


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    grammar = grammar_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True,
                cache=_cache_file(grammar))


def lark_parser() -> Lark:
    """The shared LALR parser (also used by the formatter, which needs the raw tree)."""
    return _lark()


# ---------------------------------------------------------------- known mistakes
# Friendly messages for common syntax mistakes, matched against the parser state of an error by
# lark's `match_examples`. tests/test_errors.py parses every example and checks its message.

SYNTAX_ERRORS: dict[str, list[str]] = {
    "missing '=' after the declared name": [
        'model base hf("x")', 'dataset d medqa("x")', 'graph g primekg("x")',
        'prompt p template("x")', 'reward r choice_match()', 'stage s sft(a, b)',
    ],
    "expected a name for the declaration": [
        'model = hf("x")', 'dataset = medqa("x")', 'stage = sft(a, b)', 'reward = regex("x")',
    ],
    "a source is written as a call, e.g. hf(\"Qwen/Qwen2.5-7B-Instruct\") or medqa(\"x.jsonl\")": [
        'model m = "Qwen/Qwen2.5-7B"', 'dataset d = "x.jsonl"', 'model m = base',
        'stage s = base', 'graph g = "kg.csv"', 'prompt p = "x.j2"',
    ],
    "options are written 'name = value', not 'name: value'": [
        'cluster { account: "a" }', 'stage s = sft(a, b) { lr: 1 }',
    ],
    "missing value after '='": [
        'cluster { account = }', 'stage s = sft(a, b) { lr = }', 'model m = hf("x") { temperature = }',
    ],
    "unclosed block: missing '}'": [
        'cluster { account = "a"', 'stage s = sft(a, b) { lr = 1', 'filter f from c { format',
    ],
    "unclosed '(': missing ')'": [
        'model m = hf("x"', 'stage s = sft(a, b', 'model m = tiny(hidden = 1',
    ],
    "arguments are separated by ','": [
        'model m = tiny(hidden = 1 layers = 2)', 'stage s = sft(a b)',
    ],
    "list items are separated by ','": [
        'cluster { x = [1 2] }', 'evaluate [a b] on [c]', 'evaluate a on [b c]',
    ],
    "a declaration starts with a keyword: experiment, include, model, graph, sample, dataset, "
    "prompt, synthesize, distill, filter, reward, stage, evaluate, cluster": [
        'foo bar', 'hf("x")', 'lr = 1', '{ }', '"x"', '12',
    ],
    "'sample' is written: sample NAME from GRAPH { ... }": [
        'sample s { }', 'sample s = primekg("x")', 'sample s from g',
    ],
    "'filter' is written: filter NAME from SOURCE { steps }": [
        'filter f { format }', 'filter f from c', 'filter f = c',
    ],
    "'synthesize' is written: synthesize NAME from SAMPLE with TEACHER using PROMPT": [
        'synthesize q from s using p', 'synthesize q from s with t', 'synthesize q = s',
        'synthesize q from s with t using',
    ],
    "'distill' is written: distill NAME from SOURCES with TEACHER using PROMPT": [
        'distill c from s using p', 'distill c from [a, b] using p', 'distill c from s with t',
        'distill c = s',
    ],
    "'evaluate' is written: evaluate TARGETS on BENCHMARKS": [
        'evaluate m [a]', 'evaluate m', 'evaluate [a, b] [c]', 'evaluate m on',
    ],
    "a reward weight goes before the reward: 0.5 * name": [
        'stage s = grpo(a, b) { rewards = correct * 0.5 }',
    ],
    "reward terms are added with '+'": [
        'stage s = grpo(a, b) { rewards = 1.0 * correct 0.5 * form }',
    ],
    "a range is written lo..hi": [
        'sample s from g { hops = 1.. }', 'sample s from g { hops = 1..x }',
    ],
    "a metapath step is written -[relation]-> type": [
        'sample s from g { path = a -[r] b }', 'sample s from g { path = a -[r]-> }',
        'sample s from g { path = a -[]-> b }',
    ],
    "'experiment' is followed by its name in quotes: experiment \"name\" { ... }": [
        'experiment tiny { }', 'experiment { seed = 1 }',
    ],
    "'include' and 'extends' take a file name in quotes": [
        'include base.flm', 'include base', 'experiment "x" extends base { }',
    ],
    "a sweep is written: sweep NAME in [values]": [
        'stage s = sft(a, b) { sweep lr [1, 2] }', 'stage s = sft(a, b) { sweep lr = [1, 2] }',
        'stage s = sft(a, b) { sweep in [1] }',
    ],
}

# ---------------------------------------------------------------- tokens for humans

_TOKEN_WORDS = {
    "NAME": "a name", "STRING": "a string", "INT": "a whole number", "FLOAT": "a number",
    "QUANTITY": "a quantity (48h, 80GB)", "CMP": "a comparison (>=, <)", "$END": "end of file",
}


def describe_token(kind: str) -> str:
    """A terminal's name as a user would write it: NAME -> 'a name', LBRACE -> '{'."""
    if kind in _TOKEN_WORDS:
        return _TOKEN_WORDS[kind]
    try:
        pattern = lark_parser().get_terminal(kind).pattern
    except KeyError:
        return kind.lower()
    return f"'{pattern.value}'" if pattern.type == "str" else kind.lower()


def _expected(names: set[str]) -> str:
    words = sorted({describe_token(n) for n in names if not n.startswith("_") or n == "$END"})
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "one of " + ", ".join(words) if len(words) > 1 else (words[0] if words else "")


def unclosed_block(text: str, file: str, error_at: int) -> Diagnostic | None:
    """The usual cause of a syntax error inside a block: its '}' was forgotten.

    Blocks are indented, so a statement keyword at the start of a line while a '{' is still open
    (or the end of the file) means the block before it was never closed. Reported where the '}'
    belongs, with the '{' it would close."""
    lines = text.splitlines()
    error_line = text.count("\n", 0, error_at) + 1
    # keywords are ASCII: a line starting with another letter (é, ß) is no keyword's line
    keyword_lines = [i + 1 for i, l in enumerate(lines[:error_line])
                     if (word := re.match(r"[A-Za-z_]+", l)) and word.group() in STATEMENT_KEYWORDS]
    brackets = iter(scan_brackets(text[:error_at]))
    opened: list[tuple[int, int]] = []  # (line, col) of each '{' still open
    pending = next(brackets, None)

    def advance(before_line: int) -> None:
        nonlocal pending
        while pending is not None and pending[2] < before_line:
            c, _, line, col = pending
            if c == "{":
                opened.append((line, col))
            elif c == "}" and opened:
                opened.pop()
            pending = next(brackets, None)

    stop = None
    for keyword_line in keyword_lines:
        advance(keyword_line)
        if opened:
            stop = keyword_line
            break
    if stop is None:
        advance(len(lines) + 2)
        if not opened or text[error_at:].strip():
            return None
        stop = len(lines) + 1
    brace = opened[-1]
    # the '}' belongs after the last line with text before `stop`
    idx = max((i for i in range(stop - 1) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
              default=0)
    written = lines[idx] if '"' in lines[idx] else lines[idx].split("#", 1)[0]
    col = len(written.rstrip()) + 1
    span = Span(file=file, line=idx + 1, col=col, end_line=idx + 1, end_col=col + 1)
    return Diagnostic("unclosed block: missing '}'", span,
                      hint=f"the '{{' at {file}:{brace[0]}:{brace[1]} is not closed")


# ---------------------------------------------------------------- errors


def _span_of_token(file: str, tok: Token) -> Span:
    end_line = tok.end_line or tok.line
    end_col = tok.end_column or (tok.column + max(len(str(tok)), 1))
    return new_span(file, tok.line, tok.column, end_line, end_col)


def _eof_span(file: str, text: str) -> Span:
    lines = text.splitlines() or [""]
    # point just after the last non-blank text: that is where something is missing
    idx = max((i for i, l in enumerate(lines) if l.strip()), default=0)
    col = len(lines[idx].rstrip()) + 1
    return Span(file=file, line=idx + 1, col=col, end_line=idx + 1, end_col=col + 1)


def syntax_diagnostic(err: UnexpectedInput, file: str, text: str) -> Diagnostic:
    """A lark parse error as one located diagnostic with a friendly message where we know one."""
    label = match_known_mistake(err)
    if isinstance(err, UnexpectedCharacters):
        line = text.splitlines()[err.line - 1] if text.splitlines() else ""
        char = line[err.column - 1] if 0 < err.column <= len(line) else "?"
        span = Span(file=file, line=err.line, col=err.column, end_line=err.line,
                    end_col=err.column + (len(line) - err.column + 1 if char == '"' else 1))
        if char == '"':
            return Diagnostic("unterminated string", span, hint='close it with " on the same line')
        expected = _expected(set(err.allowed or ()))
        return Diagnostic(label or f"unexpected character '{char}'", span, expected=expected or None,
                          hint=_relation_hint(text, err.line, err.column))
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        span = _span_of_token(file, err.token)
        word = describe_token(err.token.type)
        bare = word.removeprefix("a ").removeprefix("an ")
        message = label or (f"unexpected {word}" if word.startswith("'") else f"unexpected {bare} '{err.token}'")
    else:
        span = _eof_span(file, text)
        message = label or "unexpected end of file"
    expected = _expected(set(getattr(err, "accepts", None) or getattr(err, "expected", ()) or ()))
    return Diagnostic(message, span, expected=expected or None,
                      hint=_relation_hint(text, span.line, span.col))


def _relation_hint(text: str, line: int, col: int) -> str | None:
    """Inside `-[ ... ]`, a relation name that is not a plain name (`Gr>G:rev`, `off-label use`)
    stops the parser: say to quote it, as written."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    written = lines[line - 1]
    opened = written.rfind("-[", 0, col - 1)
    if opened < 0 or written.rfind("]", 0, col - 1) > opened:
        return None
    closed = written.find("]", opened)
    relation = written[opened + 2: closed if closed > 0 else len(written)].strip()
    if not relation or '"' in relation:
        return None
    return f'a relation that is not a plain name is quoted: -["{relation}"]->'


def _error_key(err: UnexpectedInput) -> tuple:
    state = getattr(err, "state", None)
    state = getattr(state, "position", state)  # lark gives a ParserState at end of input
    accepts = frozenset(getattr(err, "accepts", None) or getattr(err, "allowed", None) or ())
    return type(err).__name__, state, accepts


def _token_type(err: UnexpectedInput) -> str | None:
    tok = getattr(err, "token", None)
    return tok.type if tok is not None else None


@functools.lru_cache(maxsize=1)
def _mistake_keys() -> tuple[tuple[tuple, str | None, str], ...]:
    # Our own take on lark's UnexpectedInput.match_examples (whose debug logging breaks on
    # end-of-input states in lark 1.3): the examples are parsed once per process.
    keys = []
    for label, examples in SYNTAX_ERRORS.items():
        for example in examples:
            try:
                lark_parser().parse(example)
            except UnexpectedInput as ut:
                keys.append((_error_key(ut), _token_type(ut), label))
    return tuple(keys)


def match_known_mistake(err: UnexpectedInput) -> str | None:
    """The SYNTAX_ERRORS label whose example fails in the same parser state (token type first)."""
    key, token_type = _error_key(err), _token_type(err)
    fallback = None
    for example_key, example_token, label in _mistake_keys():
        if example_key == key:
            if example_token == token_type:
                return label
            fallback = fallback or label
    return fallback


# ---------------------------------------------------------------- tree -> AST


class _ToAst(Transformer):
    """lark tree -> ast dataclasses. Spans come from `meta` (rules) or the token (terminals)."""

    def __init__(self, file: str, unnamed_evals: int = 0):
        super().__init__(visit_tokens=False)  # no token callbacks: a failed lookup per token is slow
        self.file = file
        self.unnamed_evals = unnamed_evals  # unnamed evaluations before the text transformed
        self._calls = _callbacks(self)

    def _call_userfunc(self, tree, new_children=None):
        # One dict lookup per node: lark's own dispatch re-wraps a v_args method on every call
        # (functools.update_wrapper per node), a fifth of the transform of a large spec.
        call = self._calls.get(tree.data)
        if call is None:
            return super()._call_userfunc(tree, new_children)
        return call(tree.meta, new_children if new_children is not None else tree.children)

    def _span(self, meta) -> Span:
        return new_span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), _span_of_token(self.file, tok))

    # values ------------------------------------------------------------
    def string(self, c):
        return ast.Str(unquote(str(c[0])), _span_of_token(self.file, c[0]))

    def int(self, c):
        return ast.Num(number(str(c[0])), _span_of_token(self.file, c[0]))

    float = int

    @v_args(meta=True)
    def neg_int(self, meta, c):
        return ast.Num(-number(str(c[0])), self._span(meta))

    neg_float = neg_int

    def quantity(self, c):
        amount, unit = quantity(str(c[0]))
        return ast.Quantity(amount, unit, _span_of_token(self.file, c[0]))

    @v_args(meta=True)
    def true(self, meta, c):
        return ast.Bool(True, self._span(meta))

    @v_args(meta=True)
    def false(self, meta, c):
        return ast.Bool(False, self._span(meta))

    def name(self, c):
        return self._name(c[0])

    @v_args(meta=True)
    def args(self, meta, c):
        items = [x for x in c if x is not None]
        return (tuple(x for x in items if not isinstance(x, ast.KwArg)),
                tuple(x for x in items if isinstance(x, ast.KwArg)), self._span(meta))

    def kwarg(self, c):
        return ast.KwArg(self._name(c[0]), c[1])

    @v_args(meta=True)
    def call(self, meta, c):
        args, kwargs, _ = c[1]
        return ast.Call(self._name(c[0]), args, kwargs, self._span(meta))

    @v_args(meta=True)
    def index(self, meta, c):
        names = [self._name(t) for t in c if t is not None]
        return ast.Index(names[0], tuple(names[1:]), self._span(meta))

    @v_args(meta=True)
    def list(self, meta, c):
        return ast.ListV(tuple(x for x in c if x is not None), self._span(meta))

    @v_args(meta=True)
    def range(self, meta, c):
        return ast.Range(number(str(c[0])), number(str(c[1])), self._span(meta))

    @v_args(meta=True)
    def ratio(self, meta, c):
        return ast.Ratio(as_float(c[0].value), as_float(c[1].value), self._span(meta))

    @v_args(meta=True)
    def compare(self, meta, c):
        return ast.Compare(self._name(c[0]), str(c[1]), as_float(c[2].value), self._span(meta))

    @v_args(meta=True)
    def weighted(self, meta, c):
        # a lone `0.5 * form` is a one-term sum; inside a sum, `sum` unwraps it again
        term = ast.Term(as_float(c[0].value), self._name(c[1]))
        return ast.Sum((term,), self._span(meta))

    def term(self, c):
        return c[0].terms[0] if isinstance(c[0], ast.Sum) else ast.Term(1.0, self._name(c[0]))

    @v_args(meta=True)
    def sum(self, meta, c):
        return ast.Sum(tuple(c), self._span(meta))

    def node_name(self, c):
        return ast.PathNode(str(c[0]), _span_of_token(self.file, c[0]))

    def node_str(self, c):
        return ast.PathNode(unquote(str(c[0])), _span_of_token(self.file, c[0]))

    @v_args(meta=True)
    def node_any(self, meta, c):
        return ast.PathNode(None, self._span(meta))

    @v_args(meta=True)
    def edge_rel(self, meta, c):
        raw = str(c[0])
        return ast.PathEdge(unquote(raw) if c[0].type == "STRING" else raw, self._span(meta))

    @v_args(meta=True)
    def edge_any(self, meta, c):
        return ast.PathEdge(None, self._span(meta))

    @v_args(meta=True)
    def metapath(self, meta, c):
        return ast.Metapath(tuple(x for x in c if isinstance(x, ast.PathNode)),
                            tuple(x for x in c if isinstance(x, ast.PathEdge)), self._span(meta))

    # blocks ------------------------------------------------------------
    @v_args(meta=True)
    def option(self, meta, c):
        return ast.Option(self._name(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def entry(self, meta, c):
        name = self._name(c[0])
        call = None
        if c[1] is not None:
            args, kwargs, span = c[1]
            call = ast.Call(name, args, kwargs, new_span(self.file, name.span.line,
                            name.span.col, span.end_line, span.end_col))
        return ast.Entry(name, call, c[2], self._span(meta))

    @v_args(meta=True)
    def sweep(self, meta, c):
        return ast.SweepItem(self._name(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def block(self, meta, c):
        return ast.Block(tuple(c), self._span(meta))

    def ref_one(self, c):
        return (self._name(c[0]),)

    def ref_list(self, c):
        return tuple(self._name(t) for t in c if t is not None)

    # statements --------------------------------------------------------
    @v_args(meta=True)
    def experiment(self, meta, c):
        extends = ast.Str(unquote(str(c[1])), _span_of_token(self.file, c[1])) if c[1] else None
        return ast.Header(ast.Str(unquote(str(c[0])), _span_of_token(self.file, c[0])), extends,
                          c[2], self._span(meta))

    @v_args(meta=True)
    def include(self, meta, c):
        return ast.Include(ast.Str(unquote(str(c[0])), _span_of_token(self.file, c[0])),
                           self._span(meta))

    @v_args(meta=True)
    def drop(self, meta, c):
        return ast.Drop(self._name(c[0]), self._span(meta))

    def _decl(kind: str, cls, shape: Callable):  # noqa: N805 - a small factory used below
        @v_args(meta=True)
        def build(self, meta, c):
            return cls(kind, self._name(c[0]), self._span(meta), *shape(self, c[1:]))
        return build

    model = _decl("model", ast.ModelDecl, lambda s, c: (c[0], c[1]))
    graph = _decl("graph", ast.GraphDecl, lambda s, c: (c[0], c[1]))
    dataset = _decl("dataset", ast.DatasetDecl, lambda s, c: (c[0], c[1]))
    prompt = _decl("prompt", ast.PromptDecl, lambda s, c: (c[0],))
    reward = _decl("reward", ast.RewardDecl, lambda s, c: (c[0],))
    stage = _decl("stage", ast.StageDecl, lambda s, c: (c[0], c[1]))
    sample = _decl("sample", ast.SampleDecl, lambda s, c: (s._name(c[0]), c[1]))
    filter = _decl("filter", ast.FilterDecl, lambda s, c: (s._name(c[0]), c[1]))
    synthesize = _decl("synthesize", ast.SynthesizeDecl,
                       lambda s, c: (s._name(c[0]), s._name(c[1]), s._name(c[2]), c[3]))
    distill = _decl("distill", ast.DistillDecl,
                    lambda s, c: (c[0], s._name(c[1]), s._name(c[2]), c[3]))

    @v_args(meta=True)
    def evaluate(self, meta, c):
        targets, benchmarks, as_name, block = c
        self.unnamed_evals += as_name is None
        return ast.evaluation(self._name(as_name) if as_name is not None else None,
                              self._span(meta), targets, benchmarks, block, self.unnamed_evals)

    @v_args(meta=True)
    def cluster(self, meta, c):
        return ast.ClusterDecl(c[0], self._span(meta))

    def start(self, c):
        return tuple(c)


def _callbacks(transformer: _ToAst) -> dict[str, Callable]:
    """rule name -> callback(meta, children) for every rule method of `transformer`, bound once."""
    calls: dict[str, Callable] = {}
    for name in dir(type(transformer)):
        if name.startswith("_") or name in ("transform",):
            continue
        raw = next((vars(k)[name] for k in type(transformer).__mro__ if name in vars(k)), None)
        if raw is None or any(name in vars(k) for k in Transformer.__mro__):
            continue
        base = getattr(raw, "base_func", None)
        if base is not None:  # @v_args(meta=True): f(self, meta, children)
            calls[name] = functools.partial(base, transformer)
        elif callable(raw):
            calls[name] = functools.partial(_children_only, functools.partial(raw, transformer))
    return calls


def _children_only(f: Callable, _meta, children):
    return f(children)


def _offset(err: UnexpectedInput, text: str) -> int:
    """Where in `text` the parser stopped (the end of the text at end of input)."""
    token = getattr(err, "token", None)
    if token is not None and token.type == "$END" or getattr(err, "pos_in_stream", None) is None:
        return len(text)
    return err.pos_in_stream


def parse_statements(text: str, file: str, start: int = 0,
                     unnamed_before: int = 0) -> tuple[ast.Statement, ...]:
    """The statements of `text` from offset `start` (where a statement starts) by lark; raises
    SpecError (one located diagnostic) on a syntax error. `unnamed_before` is the number of
    unnamed evaluations before `start`, which names the next one (eval_N). The caller has
    already refused text nested deeper than text.MAX_NESTING."""
    # what comes before `start` is blanked, not cut: every position lark reports stays the
    # file's own, and lark skips the blank as one whitespace token
    source = text if start == 0 else _blank(text[:start]) + text[start:]
    try:
        tree = lark_parser().parse(source)
    except UnexpectedInput as err:
        diag = syntax_diagnostic(err, file, text)
        if diag.message != "unterminated string":
            diag = unclosed_block(text, file, _offset(err, text)) or diag
        raise SpecError([diag], {file: text}) from None
    return _ToAst(file, unnamed_before).transform(tree)


def _blank(text: str) -> str:
    """`text` with every character but line breaks a space: the same length and lines."""
    return "\n".join(" " * len(line) for line in text.split("\n"))


__all__ = [
    "SYNTAX_ERRORS",
    "describe_token",
    "grammar_text",
    "lark_parser",
    "parse_statements",
    "syntax_diagnostic",
    "unclosed_block",
]
