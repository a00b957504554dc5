"""The parser: lark's LALR parser for grammars/flm.lark, built once per process, which builds the
AST while it parses (an embedded transformer: no parse tree is made), and the friendly syntax
errors.

The grammar file is the one definition of the language. The parser's tokens as it reads them,
comments included, are available too (`parse_tokens`): the formatter, the language server's
semantic tokens and the Pygments highlighter read those rather than lexing on their own."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from fleming_dsl.errors import Diagnostic, SpecError
from fleming_dsl.ir import Span
from fleming_dsl.resources import resource_dir
from fleming_dsl.spec import ast
from fleming_dsl.spec.text import as_float, new_span, number, quantity, scan_brackets, unquote


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


class _Tap:
    """lark's post-lexer hook: passes the parser's tokens through untouched, and while a caller
    asks for them (`parse_tokens`) also keeps them, with the comments the lexer skips."""

    always_accept = ()

    def __init__(self) -> None:
        self.tokens: list[Token] | None = None

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        if self.tokens is None:
            return stream  # the usual parse: no wrapper between lexer and parser
        return self._keep(stream)

    def _keep(self, stream: Iterator[Token]) -> Iterator[Token]:
        for tok in stream:
            self.tokens.append(tok)
            yield tok

    def comment(self, tok: Token) -> Token:
        if self.tokens is not None:
            self.tokens.append(tok)
        return tok


@functools.lru_cache(maxsize=None)
def _parser() -> tuple[Lark, "_Build", _Tap]:
    grammar = grammar_text()
    build, tap = _Build(), _Tap()
    # keep_all_tokens: the AST's spans start at a statement's keyword and end at its last
    # bracket, which the builder reads from the tokens (an embedded transformer gets no `meta`)
    lark = Lark(grammar, parser="lalr", transformer=build, postlex=tap, keep_all_tokens=True,
                maybe_placeholders=True, lexer_callbacks={"COMMENT": tap.comment},
                cache=_cache_file(grammar))
    return lark, build, tap


# one parse at a time: the builder and the tap hold the state of the parse under way
_LOCK = threading.RLock()


def lark_parser() -> Lark:
    """The shared LALR parser (its terminals name tokens in messages)."""
    return _parser()[0]


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
    "a declaration cannot start inside a block: close the block with '}' first": [
        'cluster { resources { gpus = 1 } model m = hf("x") }',
        'stage s = sft(a, b) { lora(r = 8) stage t = sft(a, b) }',
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


_KEYWORD = re.compile(r"([a-z]+)\(\?!\[A-Za-z0-9_\]\)")  # a keyword terminal: a word, then no word character


def describe_token(kind: str) -> str:
    """A terminal's name as a user would write it: NAME -> 'a name', LBRACE -> '{', MODEL -> 'model'."""
    if kind in _TOKEN_WORDS:
        return _TOKEN_WORDS[kind]
    try:
        pattern = lark_parser().get_terminal(kind).pattern
    except KeyError:
        return kind.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    word = _KEYWORD.fullmatch(pattern.value)
    return f"'{word.group(1)}'" if word else kind.lower()


@functools.lru_cache(maxsize=1)
def statement_keywords() -> frozenset[str]:
    """The words a statement starts with, as the grammar's start state accepts them."""
    accepts = lark_parser().parse_interactive("").accepts()
    return frozenset(describe_token(t).strip("'") for t in accepts if t != "$END")


def _expected(names: set[str]) -> str:
    words = sorted({describe_token(n) for n in names if not n.startswith("_") or n == "$END"})
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "one of " + ", ".join(words) if len(words) > 1 else (words[0] if words else "")


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unclosed_block(text: str, file: str, error_at: int) -> Diagnostic | None:
    """The usual cause of a syntax error inside a block: its '}' was forgotten.

    Blocks are indented, so a statement keyword at the start of a line while a '{' is still open
    (or the end of the file) means the block before it was never closed. Reported where the '}'
    belongs, with the '{' it would close."""
    lines = text.splitlines()
    error_line = text.count("\n", 0, error_at) + 1
    keywords = statement_keywords()
    keyword_lines = [i + 1 for i, l in enumerate(lines[:error_line])
                     if (word := _WORD.match(l)) is not None and word.group() in keywords]
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
                _parse(example, "<example>")
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


# ---------------------------------------------------------------- the AST, built while parsing


class _Refs(tuple):
    """`[a, b]` or `a` as the names it holds, and where it was written (for the statement's span)."""

    span: Span


class _Args:
    """A call's `(...)`: its positional and keyword arguments, and where it was written."""

    __slots__ = ("positional", "kwargs", "span")

    def __init__(self, positional: tuple, kwargs: tuple, span: Span):
        self.positional, self.kwargs, self.span = positional, kwargs, span


class _TermAt:
    """One term of a reward sum, and where it was written (for the sum's span)."""

    __slots__ = ("term", "span")

    def __init__(self, term: ast.Term, span: Span):
        self.term, self.span = term, span


def _is_token(x, kind: str) -> bool:
    return isinstance(x, Token) and x.type == kind


class _Build:
    """lark's callbacks, one per rule (or alias): each gets the rule's children (every token kept,
    None for an optional part not written) and returns the AST node. Spans run from the first
    child to the last. `file` and `unnamed_evals` are the state of the parse under way."""

    def __init__(self) -> None:
        self.file = "<input>"
        self.unnamed_evals = 0

    # spans -------------------------------------------------------------
    def _tok(self, t: Token) -> Span:
        return new_span(self.file, t.line, t.column, t.end_line, t.end_column)

    def _name(self, t: Token) -> ast.Name:
        return ast.Name(str(t), self._tok(t))

    def _span(self, c) -> Span:
        first, last, i = c[0], c[-1], len(c) - 1  # every rule starts with a part always written
        while last is None:
            i -= 1
            last = c[i]
        if isinstance(first, Token):
            line, col = first.line, first.column
        else:
            line, col = first.span.line, first.span.col
        if isinstance(last, Token):
            return new_span(self.file, line, col, last.end_line, last.end_column)
        return new_span(self.file, line, col, last.span.end_line, last.span.end_col)

    # values ------------------------------------------------------------
    def string(self, c):
        return ast.Str(unquote(str(c[0])), self._tok(c[0]))

    def int(self, c):
        return ast.Num(number(str(c[0])), self._tok(c[0]))

    float = int

    def neg_int(self, c):
        return ast.Num(-number(str(c[1])), self._span(c))

    neg_float = neg_int

    def quantity(self, c):
        amount, unit = quantity(str(c[0]))
        return ast.Quantity(amount, unit, self._tok(c[0]))

    def true(self, c):
        return ast.Bool(True, self._tok(c[0]))

    def false(self, c):
        return ast.Bool(False, self._tok(c[0]))

    def name(self, c):
        return self._name(c[0])

    def args(self, c):
        items = [x for x in c[1:-1] if x is not None and not isinstance(x, Token)]
        return _Args(tuple(x for x in items if not isinstance(x, ast.KwArg)),
                     tuple(x for x in items if isinstance(x, ast.KwArg)), self._span(c))

    def kwarg(self, c):
        return ast.KwArg(self._name(c[0]), c[2])

    def call(self, c):
        return ast.Call(self._name(c[0]), c[1].positional, c[1].kwargs, self._span(c))

    def index(self, c):
        names = [self._name(t) for t in c if _is_token(t, "NAME")]
        return ast.Index(names[0], tuple(names[1:]), self._span(c))

    def list(self, c):
        return ast.ListV(tuple(x for x in c[1:-1] if x is not None and not isinstance(x, Token)),
                         self._span(c))

    def range(self, c):
        return ast.Range(number(str(c[0])), number(str(c[2])), self._span(c))

    def ratio(self, c):
        return ast.Ratio(as_float(c[0].value), as_float(c[2].value), self._span(c))

    def compare(self, c):
        return ast.Compare(self._name(c[0]), str(c[1]), as_float(c[2].value), self._span(c))

    def weighted(self, c):
        # a lone `0.5 * form` is a one-term sum; inside a sum, `term` unwraps it again
        return ast.Sum((ast.Term(as_float(c[0].value), self._name(c[2])),), self._span(c))

    def term(self, c):
        x = c[0]
        if isinstance(x, ast.Sum):
            return _TermAt(x.terms[0], x.span)
        return _TermAt(ast.Term(1.0, self._name(x)), self._tok(x))

    def sum(self, c):
        return ast.Sum(tuple(t.term for t in c if isinstance(t, _TermAt)), self._span(c))

    def node_name(self, c):
        return ast.PathNode(str(c[0]), self._tok(c[0]))

    def node_str(self, c):
        return ast.PathNode(unquote(str(c[0])), self._tok(c[0]))

    def node_any(self, c):
        return ast.PathNode(None, self._tok(c[0]))

    def edge_rel(self, c):
        raw = str(c[1])
        return ast.PathEdge(unquote(raw) if c[1].type == "STRING" else raw, self._span(c))

    def edge_any(self, c):
        return ast.PathEdge(None, self._tok(c[0]))

    def metapath(self, c):
        return ast.Metapath(tuple(x for x in c if isinstance(x, ast.PathNode)),
                            tuple(x for x in c if isinstance(x, ast.PathEdge)), self._span(c))

    # blocks ------------------------------------------------------------
    def option(self, c):
        return ast.Option(self._name(c[0]), c[2], self._span(c))

    def entry(self, c):
        name, args = self._name(c[0]), c[1]
        call = None if args is None else ast.Call(name, args.positional, args.kwargs,
                                                  self._span(c[:2]))
        return ast.Entry(name, call, c[2], self._span(c))

    def sweep(self, c):
        return ast.SweepItem(self._name(c[1]), c[3], self._span(c))

    def block(self, c):
        return ast.Block(tuple(c[1:-1]), self._span(c))

    def ref_one(self, c):
        refs = _Refs((self._name(c[0]),))
        refs.span = self._tok(c[0])
        return refs

    def ref_list(self, c):
        refs = _Refs(self._name(t) for t in c if _is_token(t, "NAME"))
        refs.span = self._span(c)
        return refs

    # statements --------------------------------------------------------
    def _str(self, t: Token) -> ast.Str:
        return ast.Str(unquote(str(t)), self._tok(t))

    def experiment(self, c):
        extends = self._str(c[3]) if c[3] is not None else None
        return ast.Header(self._str(c[1]), extends, c[4], self._span(c))

    def include(self, c):
        return ast.Include(self._str(c[1]), self._span(c))

    def drop(self, c):
        return ast.Drop(self._name(c[1]), self._span(c))

    def _decl(kind: str, cls, shape: Callable):  # noqa: N805 - a small factory used below
        def build(self, c):
            return cls(kind, self._name(c[1]), self._span(c), *shape(self, c))
        return build

    model = _decl("model", ast.ModelDecl, lambda s, c: (c[3], c[4]))
    graph = _decl("graph", ast.GraphDecl, lambda s, c: (c[3], c[4]))
    dataset = _decl("dataset", ast.DatasetDecl, lambda s, c: (c[3], c[4]))
    prompt = _decl("prompt", ast.PromptDecl, lambda s, c: (c[3],))
    reward = _decl("reward", ast.RewardDecl, lambda s, c: (c[3],))
    stage = _decl("stage", ast.StageDecl, lambda s, c: (c[3], c[4]))
    sample = _decl("sample", ast.SampleDecl, lambda s, c: (s._name(c[3]), c[4]))
    filter = _decl("filter", ast.FilterDecl, lambda s, c: (s._name(c[3]), c[4]))
    synthesize = _decl("synthesize", ast.SynthesizeDecl,
                       lambda s, c: (s._name(c[3]), s._name(c[5]), s._name(c[7]), c[8]))
    distill = _decl("distill", ast.DistillDecl,
                    lambda s, c: (tuple(c[3]), s._name(c[5]), s._name(c[7]), c[8]))

    def evaluate(self, c):
        _, targets, _, benchmarks, _, as_name, block = c
        self.unnamed_evals += as_name is None
        return ast.evaluation(self._name(as_name) if as_name is not None else None,
                              self._span(c), tuple(targets), tuple(benchmarks), block,
                              self.unnamed_evals)

    def cluster(self, c):
        return ast.ClusterDecl(c[1], self._span(c))

    def start(self, c):
        return tuple(c)


def _offset(err: UnexpectedInput, text: str) -> int:
    """Where in `text` the parser stopped (the end of the text at end of input)."""
    token = getattr(err, "token", None)
    if token is not None and token.type == "$END" or getattr(err, "pos_in_stream", None) is None:
        return len(text)
    return err.pos_in_stream


def _parse(text: str, file: str, tokens: list[Token] | None = None) -> tuple[ast.Statement, ...]:
    """The statements of `text`, built while lark parses; lark's UnexpectedInput on a syntax
    error. With `tokens`, the parser's tokens and the comments are appended to it as read."""
    lark, build, tap = _parser()
    with _LOCK:
        build.file, build.unnamed_evals, tap.tokens = file, 0, tokens
        try:
            return lark.parse(text)
        finally:
            tap.tokens = None


def parse_statements(text: str, file: str, tokens: list[Token] | None = None) -> tuple[ast.Statement, ...]:
    """The statements of `text`; raises SpecError (one located diagnostic) on a syntax error.
    The caller has already refused text nested deeper than text.MAX_NESTING."""
    try:
        return _parse(text, file, tokens)
    except UnexpectedInput as err:
        diag = syntax_diagnostic(err, file, text)
        if diag.message != "unterminated string":
            diag = unclosed_block(text, file, _offset(err, text)) or diag
        raise SpecError([diag], {file: text}) from None


def parse_tokens(text: str) -> tuple[list[Token], bool]:
    """The tokens the parser reads in `text`, comments included, in order, and whether the whole
    text parsed (on a syntax error: the tokens up to it)."""
    tokens: list[Token] = []
    try:
        _parse(text, "<tokens>", tokens)
    except UnexpectedInput:
        return sorted(tokens, key=position), False
    return sorted(tokens, key=position), True


def position(tok: Token) -> tuple[int, int]:
    """A token's place, to order the parser's tokens and the comments it skipped."""
    return tok.line, tok.column


__all__ = [
    "SYNTAX_ERRORS",
    "describe_token",
    "grammar_text",
    "lark_parser",
    "parse_statements",
    "parse_tokens",
    "statement_keywords",
    "syntax_diagnostic",
    "unclosed_block",
]
