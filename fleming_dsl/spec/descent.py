"""Text -> AST for the texts that parse: a hand-written recursive-descent parser of
grammars/flm.lark.

lark's LALR parser (`spec.grammar`) builds a parse tree and then walks it into the AST; for a
spec of 100,000 declarations that took two thirds of `fleming check`, and importing lark and
building its lexer was a fifth of the check CLI's start-up. This parser reads the same grammar
straight into the same AST (the same spans, the same default evaluation names) in one pass over
one regular expression's tokens, and imports nothing but the AST.

It only ever accepts: on anything it does not parse, `parse` returns None and the caller asks
lark, which reports the syntax error or, where lark's contextual lexer reads a text
differently, parses it. So an input this parser gets wrong can only cost time, never change a
result, as long as what it accepts lark accepts alike; tests/unit/spec/test_descent.py checks
that on every spec, every test's spec text and thousands of mutations of them.

How lark's contextual lexer reads keywords, mirrored here: a word is a keyword only where the
grammar expects that keyword (`model` names an option, `sweep` starts a sweep only at the
start of a block item), and `true`/`false` are always booleans where a value starts.
"""

from __future__ import annotations

import re

from fleming_dsl.spec import ast
from fleming_dsl.spec.text import STATEMENT_KEYWORDS, as_float, new_span, number, quantity, unquote

# The grammar's terminals, in the order lark's lexer tries them (QUANTITY.3 over FLOAT.2 over
# INT; longer punctuation first). Whatever none of them matches is `bad`: not a spec.
_TOKEN = re.compile(r"""
  (?P<ws>[ \t\f\r\n]+)
| (?P<comment>\#[^\n]*)
| (?P<STRING>"(?:\\.|[^"\\\n])*")
| (?P<QUANTITY>[0-9][0-9_]*(?:\.[0-9]+)?(?:KB|MB|GB|TB|s|m|h|d)(?![A-Za-z0-9_]))
| (?P<FLOAT>[0-9][0-9_]*\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?|[0-9][0-9_]*[eE][+-]?[0-9]+)
| (?P<INT>[0-9][0-9_]*)
| (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
| (?P<CMP>>=|<=|==|>|<)
| (?P<punct>-\[|\]->|-->|\.\.|[-{}()\[\],=*+:])
| (?P<bad>[\s\S])
""", re.VERBOSE)

# a token: (kind, text, line, column, end column, offset); punctuation's kind is its text
Token = tuple[str, str, int, int, int, int]
_END: Token = ("$END", "", 0, 0, 0, 0)


class NoParse(Exception):
    """This parser does not accept the text; lark decides."""


def tokenize(text: str) -> list[Token]:
    """The text's tokens, without whitespace and comments, up to a character no token takes,
    which ends the list as a `bad` token (no rule accepts it). Tokens never span lines (strings
    cannot), so a token's end is on its own line."""
    tokens: list[Token] = []
    append = tokens.append
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "ws":
            gap = match.group()
            newlines = gap.count("\n")
            if newlines:
                line += newlines
                line_start = match.start() + gap.rindex("\n") + 1
            continue
        if kind == "comment":
            continue
        value = match.group()
        start = match.start()
        col = start - line_start + 1
        append((value if kind == "punct" else kind, value, line, col, col + len(value), start))
        if kind == "bad":
            break
    return tokens


# `KIND NAME = call [block]` (the flag: whether a block may follow) and `KIND NAME from NAME block`
_NAMED_CALLS = {"model": (ast.ModelDecl, True), "graph": (ast.GraphDecl, True),
                "dataset": (ast.DatasetDecl, True), "stage": (ast.StageDecl, True),
                "prompt": (ast.PromptDecl, False), "reward": (ast.RewardDecl, False)}
_FROM_BLOCKS = {"sample": ast.SampleDecl, "filter": ast.FilterDecl}


class _Parser:
    def __init__(self, tokens: list[Token], file: str):
        self.tokens = [*tokens, _END, _END]  # two ends: peeking one past the last never fails
        self.pos = 0
        self.file = file
        self.unnamed_evals = 0

    # tokens ------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[self.pos + ahead]

    def take(self, kind: str) -> Token:
        tok = self.tokens[self.pos]
        if tok[0] != kind:
            raise NoParse
        self.pos += 1
        return tok

    def keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise NoParse
        self.pos += 1
        return self.tokens[self.pos - 1]

    def at_keyword(self, word: str) -> bool:
        tok = self.tokens[self.pos]
        return tok[0] == "NAME" and tok[1] == word

    def next(self) -> Token:
        """The next token, whatever its kind (not the end)."""
        tok = self.tokens[self.pos]
        if tok is _END:
            raise NoParse
        self.pos += 1
        return tok

    def at(self, kind: str) -> bool:
        return self.tokens[self.pos][0] == kind

    def span(self, first: Token, last: Token):
        return new_span(self.file, first[2], first[3], last[2], last[4])

    def last(self) -> Token:
        return self.tokens[self.pos - 1]

    def name(self, tok: Token) -> ast.Name:
        return ast.Name(tok[1], self.token_span(tok))

    def token_span(self, tok: Token):
        return new_span(self.file, tok[2], tok[3], tok[2], tok[4])

    # statements --------------------------------------------------------
    def module(self) -> tuple[list[ast.Statement], list[int], bool]:
        """The statements read, the offset where each starts, and whether that is the whole
        file. Past the first statement it cannot read it stops; that one's start is last in
        the offsets."""
        statements: list[ast.Statement] = []
        starts: list[int] = []
        while self.tokens[self.pos] is not _END:
            starts.append(self.tokens[self.pos][5])
            try:
                statements.append(self.statement())
            except NoParse:
                return statements, starts, False
        return statements, starts, True

    def statement(self) -> ast.Statement:
        first = self.take("NAME")
        word = first[1]
        if word in _NAMED_CALLS:
            return self.named_call(first, *_NAMED_CALLS[word])
        if word in _FROM_BLOCKS:
            return self.from_block(first, _FROM_BLOCKS[word])
        if word == "synthesize":
            return self.synthesize(first)
        if word == "distill":
            return self.distill(first)
        if word == "evaluate":
            return self.evaluate(first)
        if word == "experiment":
            name = self.take("STRING")
            extends = None
            if self.at_keyword("extends"):
                self.pos += 1
                tok = self.take("STRING")
                extends = ast.Str(unquote(tok[1]), self.token_span(tok))
            block = self.block() if self.at("{") else None
            return ast.Header(ast.Str(unquote(name[1]), self.token_span(name)), extends, block,
                              self.span(first, self.last()))
        if word == "include":
            tok = self.take("STRING")
            return ast.Include(ast.Str(unquote(tok[1]), self.token_span(tok)), self.span(first, tok))
        if word == "drop":
            tok = self.take("NAME")
            return ast.Drop(self.name(tok), self.span(first, tok))
        if word == "cluster":
            block = self.block()
            return ast.ClusterDecl(block, self.span(first, self.last()))
        raise NoParse

    def named_call(self, first: Token, cls, with_block: bool):
        name = self.name(self.take("NAME"))
        self.take("=")
        call = self.call(self.take("NAME"))
        if not with_block:
            return cls(first[1], name, self.span(first, self.last()), call)
        block = self.block() if self.at("{") else None
        return cls(first[1], name, self.span(first, self.last()), call, block)

    def from_block(self, first: Token, cls):
        name = self.name(self.take("NAME"))
        self.keyword("from")
        source = self.name(self.take("NAME"))
        block = self.block()
        return cls(first[1], name, self.span(first, self.last()), source, block)

    def _with_using(self) -> tuple[ast.Name, ast.Name, ast.Block | None]:
        self.keyword("with")
        teacher = self.name(self.take("NAME"))
        self.keyword("using")
        prompt = self.name(self.take("NAME"))
        return teacher, prompt, self.block() if self.at("{") else None

    def synthesize(self, first):
        name = self.name(self.take("NAME"))
        self.keyword("from")
        source = self.name(self.take("NAME"))
        teacher, prompt, block = self._with_using()
        return ast.SynthesizeDecl("synthesize", name, self.span(first, self.last()), source,
                                  teacher, prompt, block)

    def distill(self, first):
        name = self.name(self.take("NAME"))
        self.keyword("from")
        sources = self.refs()
        teacher, prompt, block = self._with_using()
        return ast.DistillDecl("distill", name, self.span(first, self.last()), sources, teacher,
                               prompt, block)

    def evaluate(self, first):
        targets = self.refs()
        self.keyword("on")
        benchmarks = self.refs()
        as_name = None
        if self.at_keyword("as"):
            self.pos += 1
            as_name = self.take("NAME")
        block = self.block() if self.at("{") else None
        self.unnamed_evals += as_name is None
        return ast.evaluation(self.name(as_name) if as_name is not None else None,
                              self.span(first, self.last()), targets, benchmarks, block,
                              self.unnamed_evals)

    def refs(self) -> tuple[ast.Name, ...]:
        if not self.at("["):
            return (self.name(self.take("NAME")),)
        return self.bracketed_names()[0]

    def bracketed_names(self) -> tuple[tuple[ast.Name, ...], Token]:
        """`[a, b,]` (one name at least): the names and the closing token."""
        self.take("[")
        names = [self.name(self.take("NAME"))]
        while self.at(","):
            self.pos += 1
            if self.at("]"):
                break
            names.append(self.name(self.take("NAME")))
        return tuple(names), self.take("]")

    # blocks ------------------------------------------------------------
    def block(self) -> ast.Block:
        first = self.take("{")
        items = []
        while not self.at("}"):
            items.append(self.item())
        close = self.take("}")
        return ast.Block(tuple(items), self.span(first, close))

    def item(self):
        first = self.take("NAME")
        if first[1] in STATEMENT_KEYWORDS and self.tokens[self.pos - 2][0] in (")", "}"):
            # lark's LALR tables share the state after ')' and '}' with the ends of statements,
            # so its contextual lexer reads a statement keyword there as the keyword, not as an
            # item's name, and refuses the text: leave it to lark
            raise NoParse
        if first[1] == "sweep":
            key = self.name(self.take("NAME"))
            self.keyword("in")
            values = self.value()
            return ast.SweepItem(key, values, self.span(first, self.last()))
        key = self.name(first)
        if self.at("="):
            self.pos += 1
            value = self.value()
            return ast.Option(key, value, self.span(first, self.last()))
        call = None
        if self.at("("):
            args, kwargs, end = self.args()
            call = ast.Call(key, args, kwargs, self.span(first, end))
        block = self.block() if self.at("{") else None
        return ast.Entry(key, call, block, self.span(first, self.last()))

    def args(self) -> tuple[tuple, tuple, Token]:
        """`( ... )`: the positional values, the keyword arguments, and the closing token."""
        self.take("(")
        positional, keywords = [], []
        while not self.at(")"):
            tok = self.peek()
            if tok[0] == "NAME" and self.peek(1)[0] == "=" and tok[1] not in ("true", "false"):
                self.pos += 2
                keywords.append(ast.KwArg(self.name(tok), self.value()))
            else:
                positional.append(self.value())
            if not self.at(","):
                break
            self.pos += 1
        close = self.take(")")
        return tuple(positional), tuple(keywords), close

    def call(self, head: Token) -> ast.Call:
        args, kwargs, close = self.args()
        return ast.Call(self.name(head), args, kwargs, self.span(head, close))

    # values ------------------------------------------------------------
    def value(self):
        tok = self.next()
        kind = tok[0]
        if kind == "NAME":
            word = tok[1]
            if word == "true" or word == "false":
                return ast.Bool(word == "true", self.token_span(tok))
            follow = self.peek()[0]
            if follow == "(":
                return self.call(tok)
            if follow == "[":
                return self.index(tok)
            if follow == "CMP":
                op = self.take("CMP")[1]
                amount = self.signed_number(self.next())
                return ast.Compare(self.name(tok), op, as_float(amount.value), self.span(tok, self.last()))
            if follow == "+":
                return self.sum(tok, ast.Term(1.0, self.name(tok)))
            if follow == "-[" or follow == "-->":
                return self.metapath(tok)
            return self.name(tok)
        if kind == "STRING":
            if self.peek()[0] in ("-[", "-->"):
                return self.metapath(tok)
            return ast.Str(unquote(tok[1]), self.token_span(tok))
        if kind == "QUANTITY":
            amount, unit = quantity(tok[1])
            return ast.Quantity(amount, unit, self.token_span(tok))
        if kind == "[":
            return self.list(tok)
        if kind == "*":
            return self.metapath(tok)
        if kind == "INT" and self.at(".."):
            self.pos += 1
            hi = self.take("INT")
            return ast.Range(number(tok[1]), number(hi[1]), self.span(tok, hi))
        amount = self.signed_number(tok)
        follow = self.peek()[0]
        if follow == "*":
            self.pos += 1
            reward = self.name(self.take("NAME"))
            term = ast.Term(as_float(amount.value), reward)
            if self.at("+"):
                return self.sum(tok, term)
            return ast.Sum((term,), self.span(tok, self.last()))
        if follow == ":":
            self.pos += 1
            right = self.signed_number(self.next())
            return ast.Ratio(as_float(amount.value), as_float(right.value), self.span(tok, self.last()))
        return amount

    def signed_number(self, tok: Token) -> ast.Num:
        """INT, FLOAT, or '-' and one of them (`tok` already taken)."""
        if tok[0] == "INT" or tok[0] == "FLOAT":
            return ast.Num(number(tok[1]), self.token_span(tok))
        if tok[0] != "-":
            raise NoParse
        digits = self.next()
        if digits[0] != "INT" and digits[0] != "FLOAT":
            raise NoParse
        return ast.Num(-number(digits[1]), self.span(tok, digits))

    def sum(self, first: Token, term: ast.Term) -> ast.Sum:
        terms = [term]
        while self.at("+"):
            self.pos += 1
            tok = self.next()
            if tok[0] == "NAME":
                terms.append(ast.Term(1.0, self.name(tok)))
                continue
            weight = self.signed_number(tok)
            self.take("*")
            terms.append(ast.Term(as_float(weight.value), self.name(self.take("NAME"))))
        return ast.Sum(tuple(terms), self.span(first, self.last()))

    def index(self, head: Token) -> ast.Index:
        keys, close = self.bracketed_names()
        return ast.Index(self.name(head), keys, self.span(head, close))

    def list(self, first: Token) -> ast.ListV:
        items = []
        while not self.at("]"):
            items.append(self.value())
            if not self.at(","):
                break
            self.pos += 1
        close = self.take("]")
        return ast.ListV(tuple(items), self.span(first, close))

    def metapath(self, first: Token) -> ast.Metapath:
        """`node (edge node)+`, from its first node's token (already taken)."""
        nodes, edges = [self.path_node(first)], []
        while self.at("-[") or self.at("-->"):
            open_ = self.next()
            if open_[0] == "-->":
                edges.append(ast.PathEdge(None, self.token_span(open_)))
            else:
                rel = self.next()
                if rel[0] == "NAME":
                    relation = rel[1]
                elif rel[0] == "STRING":
                    relation = unquote(rel[1])
                else:
                    raise NoParse
                edges.append(ast.PathEdge(relation, self.span(open_, self.take("]->"))))
            nodes.append(self.path_node(self.next()))
        if not edges:  # a lone `*` is not a value
            raise NoParse
        return ast.Metapath(tuple(nodes), tuple(edges), self.span(first, self.last()))

    def path_node(self, tok: Token) -> ast.PathNode:
        """A node type as written (a name or a string), or any type (`*`)."""
        if tok[0] == "NAME":
            return ast.PathNode(tok[1], self.token_span(tok))
        if tok[0] == "STRING":
            return ast.PathNode(unquote(tok[1]), self.token_span(tok))
        if tok[0] == "*":
            return ast.PathNode(None, self.token_span(tok))
        raise NoParse


def parse(text: str, file: str) -> tuple[tuple[ast.Statement, ...], int | None]:
    """The file's statements this parser reads, and where lark's parser must take over (None
    when it reads the whole file).

    It reads statement by statement; at the first statement it does not accept it stops, and
    gives back the statement before that one too, so that lark re-reads from a statement it
    reads alike: it enters the failing statement in the state a whole-file parse would, and
    reports the same error, in the time of the rest of the file rather than all of it. The
    caller refuses text nested deeper than text.MAX_NESTING first, which bounds recursion."""
    statements, starts, whole = _Parser(tokenize(text), file).module()
    if whole:
        return tuple(statements), None
    kept = max(len(statements) - 1, 0)
    return tuple(statements[:kept]), starts[kept]


__all__ = ["NoParse", "parse", "tokenize"]
