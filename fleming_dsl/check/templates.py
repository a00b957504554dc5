"""Prompt templates, read the way their job reads them, but only parsed (never rendered).

A prompt's job loads its template through a jinja2 loader rooted at the template's own folder
(symlinks resolved): `{% include %}`, `{% import %}`, `{% from %}` and `{% extends %}` name files
relative to that folder, and a name that resolves outside it is refused (see docs/security.md).
`fleming check` parses each template and every template it names, following nested names up to
MAX_DEPTH deep, and reports at the prompt's template path: a syntax error, a name that leads
outside the prompt folder (and so outside the project), a name that does not exist, and, as a
warning, a name computed at render time, which only the job can judge.

Each distinct template is read and parsed once per check, however many prompts name it. What a
parse finds (the names a template refers to, or its syntax error) depends on its text alone, so it
is kept in a small JSON sidecar keyed by a hash of the text and jinja2's version, under the cache
folder graph vocabularies use: a check of unchanged templates does not import jinja2 at all (the
front end stays light), while where the names lead is judged against the disk every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fleming_dsl import ir
from fleming_dsl.check.common import Checked, call_kw, entries, option
from fleming_dsl.check.files import local_path
from fleming_dsl.check.graph_vocab import cache_dir
from fleming_dsl.errors import Diagnostic, FlemingError, did_you_mean
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import (
    MAX_PROMPT_CHARS,
    PROMPT_VARIABLES,
    RUBRIC_VARIABLES,
    TEMPLATE_TEACHER_MACROS,
    format_spec_problem,
    template_filter_problem,
    template_operation_problem,
)

MAX_DEPTH = 16  # nested template names followed; deeper ones are reported and not read
MAX_TEMPLATE_BYTES = 1 << 20  # a prompt template larger than this is not a prompt

_FOLDER_HINT = ("a template's {% include %}, {% import %} and {% extends %} read files inside the "
                "folder of the prompt's template (symlinks resolved), named relative to it")


@dataclass(frozen=True)
class Finding:
    message: str
    hint: str | None = None
    severity: str = "error"


def prompt_templates(c: Checked) -> Iterator[Diagnostic]:
    """Each prompt's template and the templates it names parse and stay in the prompt folder."""
    judged: dict[Path, tuple[Finding, ...]] = {}
    for decl in c.program.decls:
        if not isinstance(decl, ast.PromptDecl) or not decl.source.args:
            continue
        arg = decl.source.args[0]
        if not isinstance(arg, ast.Str):
            continue
        path = local_path(c, decl, arg.value)
        if path not in judged:
            judged[path] = tuple(_judge(path, arg.value, _parses(c)))
            if any(f.severity == "error" for f in judged[path]):
                c.memo.setdefault("broken_templates", set()).add(path)
        for finding in judged[path]:
            yield Diagnostic(finding.message, arg.span, hint=finding.hint, severity=finding.severity)


# What the rationale protocol gives a distillation prompt and a search never does (the label,
# and the previous attempt that rationale prompts show): runtime/jobs/distill.py builds both sets.
LABEL_VARIABLES = ("answer", "answer_text", "previous")


def search_prompts_hide_the_label(c: Checked) -> Iterator[Diagnostic]:
    """A distill with protocol = search renders its prompt without the label: a prompt whose
    template reads it would fail in the job, after the earlier steps have run."""
    for decl in c.program.decls:
        if not isinstance(decl, ast.DistillDecl):
            continue
        protocol = option(decl.block, "protocol")
        prompt = c.by_name.get(decl.prompt.name)
        if not (isinstance(protocol, ast.Name) and protocol.name == "search"
                and isinstance(prompt, ast.PromptDecl) and prompt.source.args
                and isinstance(prompt.source.args[0], ast.Str)):
            continue
        path = local_path(c, prompt, prompt.source.args[0].value)
        read = [name for name in LABEL_VARIABLES if name in _variables(path)]
        if read:
            yield Diagnostic(
                f"distill {decl.name.name} hides the label (protocol = search), but its prompt "
                f"'{decl.prompt.name}' reads {', '.join(read)}", decl.prompt.span,
                hint="a search prompt is given question, options, facts, strategy and chain "
                     "(prompts/search.j2)")


def _variables(path: Path) -> frozenset[str]:
    """The variables the template at `path` reads from its caller (its own text only; none when
    it cannot be read or parsed: `prompt_templates` reports that)."""
    try:
        source, problem = _read(os.path.realpath(path))
    except (OSError, ValueError):
        return frozenset()
    if problem is not None:
        return frozenset()
    key = hashlib.sha256(f"vars\0{_jinja2_version()}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()
    sidecar = _sidecars() / f"{key}.json"
    try:
        return frozenset(json.loads(sidecar.read_text(encoding="utf-8"))["variables"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import jinja2
    from jinja2 import meta

    try:
        found = sorted(meta.find_undeclared_variables(
            jinja2.Environment(trim_blocks=True, lstrip_blocks=True).parse(source)))
    except (jinja2.TemplateSyntaxError, RecursionError, MemoryError, ValueError):
        return frozenset()
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        temp = sidecar.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"variables": found}), encoding="utf-8")
        os.replace(temp, sidecar)
    except OSError:
        pass
    return frozenset(found)


def rubric_prompts_fit_grading(c: Checked) -> Iterator[Diagnostic]:
    """A prompt used to grade against a rubric (a rubric() reward's, an evaluation's
    rubric_prompt) uses only the variables grading renders it with: a prompt written for another
    step failed at the first grading ("'hops' is undefined")."""
    from fleming_dsl.check.references import refs_of

    judged: dict[Path, frozenset[str]] = {}
    for _, refs in refs_of(c):
        for ref in refs:
            prompt = c.by_name.get(ref.name.name)
            if "rubric prompt" not in ref.role or not isinstance(prompt, ast.PromptDecl) \
                    or not prompt.source.args or not isinstance(prompt.source.args[0], ast.Str):
                continue
            path = local_path(c, prompt, prompt.source.args[0].value)
            if path not in judged:
                judged[path] = _variables(path) - set(RUBRIC_VARIABLES)
            if judged[path]:
                shown = ", ".join(sorted(judged[path]))
                yield Diagnostic(f"prompt {ref.name.name} is not a rubric prompt: it uses {shown}, "
                                 "which grading does not provide", ref.name.span,
                                 expected="only " + ", ".join(RUBRIC_VARIABLES[:4]) + " (and "
                                          + ", ".join(RUBRIC_VARIABLES[4:]) + " for a multiple-choice item)",
                                 hint="write a grader prompt (templates/rubric/grader.j2 is the built-in one)")


def _real(path: str) -> str | None:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _parses(c: Checked) -> dict[str, tuple[Parse | str | None, str | None]]:
    """real path -> (its parse, why it could not be read): each template read once per check."""
    return c.memo.setdefault("template_parses", {})


def _read_and_parse(real: str, parses: dict) -> tuple[Parse | str | None, str | None]:
    if real not in parses:
        source, problem = _read(real)
        parses[real] = (None, problem) if problem is not None else (_parsed(source), None)
    return parses[real]


def _judge(path: Path, written: str, parses: dict) -> Iterator[Finding]:
    try:
        if not path.is_file():
            return  # missing_files reports a missing template
    except (OSError, ValueError):
        return
    root = _real(str(path.parent))
    top = _real(str(path))
    if root is None or top is None:
        return
    if not _inside(top, root):
        yield Finding(f"prompt template '{written}' is a link that leads outside its own folder: "
                      "its job reads templates only inside that folder", _FOLDER_HINT)
        return
    # depth-first over (real path, chain of names from the prompt's template)
    stack: list[tuple[str, tuple[str, ...]]] = [(top, (os.path.basename(written),))]
    seen: set[str] = set()
    while stack:
        real, chain = stack.pop()
        if real in seen:
            continue  # read once; a template may include itself conditionally
        seen.add(real)
        where = " -> ".join(chain)
        parsed, problem = _read_and_parse(real, parses)
        if problem is not None:
            yield Finding(f"prompt template {where} {problem}")
            continue
        if isinstance(parsed, str):  # a syntax error, or why it could not be parsed at all
            yield Finding(f"prompt template {where}{parsed}")
            continue
        for name in parsed.names:
            if not isinstance(name, str):
                yield Finding(f"prompt template {where} includes a template whose name is computed "
                              "when it renders: fleming check cannot follow it",
                              "the job still reads it only from the prompt folder; write the name "
                              "as a string to have it checked", severity="warning")
                continue
            target, finding = _resolve(name, root, where)
            if finding is not None:
                yield finding
            elif len(chain) >= MAX_DEPTH:
                yield Finding(f"prompt template {where} nests templates deeper than {MAX_DEPTH}: "
                              f"'{name}' is not checked", severity="warning")
            elif target is not None:
                stack.append((target, (*chain, name)))


class Signature(NamedTuple):
    """A macro's parameters, as a caller passing keywords meets them."""

    name: str
    params: tuple[str, ...]
    any_keyword: bool  # it reads `kwargs`, so jinja2 lets it take keywords it has no parameter for
    line: int


@dataclass(frozen=True)
class Parse:
    """What a template's text refers to: the templates it names (None where computed when it
    renders), the variables it reads but does not set, with the line each is first read on, and
    the macros it defines or imports."""

    names: tuple[str | None, ...]
    variables: tuple[tuple[str, int], ...] = ()
    macros: tuple[str, ...] = ()
    signatures: tuple[Signature, ...] = ()  # of each macro the template defines itself

    def signature(self, macro: str) -> Signature | None:
        return next((s for s in self.signatures if s.name == macro), None)


# bump when what a sidecar holds changes (4: variables and macros, and a template refused as
# unbounded is an error; 5: macro signatures, format specs judged)
_SIDECAR_VERSION = 5


def _parsed(source: str) -> Parse | str:
    """What `source` refers to, or the end of a message saying why it does not parse; from the
    sidecar when this text was parsed before."""
    key = hashlib.sha256(f"{_SIDECAR_VERSION}\0{_jinja2_version()}\0{source}".encode(
        "utf-8", "surrogatepass")).hexdigest()
    sidecar = _sidecars() / f"{key}.json"
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(data.get("error"), str):
            return data["error"]
        return Parse(tuple(n if isinstance(n, str) else None for n in data["names"]),
                     tuple((str(v), int(line)) for v, line in data["variables"]),
                     tuple(str(m) for m in data["macros"]),
                     tuple(Signature(str(n), tuple(map(str, params)), bool(kw), int(line))
                           for n, params, kw, line in data["signatures"]))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    try:
        found: Parse | str = _parse(source)
    except (RecursionError, MemoryError, ValueError) as err:  # e.g. expressions nested 10,000 deep
        return f" cannot be parsed ({type(err).__name__})"  # not kept: it may be this process's limit
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        temp = sidecar.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"error": found} if isinstance(found, str) else {
            "names": found.names, "variables": found.variables, "macros": found.macros,
            "signatures": found.signatures}),
            encoding="utf-8")
        os.replace(temp, sidecar)
    except OSError:
        pass  # a read-only cache only costs a parse next time
    return found


def _parse(source: str) -> Parse | str:
    """jinja2's own reading of a template: its referenced templates and undeclared variables
    (jinja2.meta), and its macros from the AST; or why it is refused (unparsable, or unbounded
    from its constants alone)."""
    import jinja2  # only on a text not parsed before: jinja2 is not part of the light front end
    from jinja2 import meta, nodes

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as err:
        return f": syntax error at line {err.lineno}: {err.message}"
    unbounded = _unbounded(tree)
    if unbounded is not None:
        return unbounded
    # a name set anywhere in the template is taken as set: jinja2 counts a name set in one
    # branch of an {% if %} as undeclared in the other, where it is rarely read
    stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    undeclared = meta.find_undeclared_variables(tree) - set(env.globals) - stored
    first_line: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in undeclared and node.ctx == "load":
            first_line[node.name] = min(first_line.get(node.name, node.lineno), node.lineno)
    defined = list(tree.find_all(nodes.Macro))
    macros = {m.name for m in defined}
    for imported in tree.find_all(nodes.FromImport):
        macros.update(n if isinstance(n, str) else n[1] for n in imported.names)
    # a macro that reads `kwargs` takes any keyword (jinja2 compiles it with catch_kwargs)
    signatures = sorted(Signature(m.name, tuple(a.name for a in m.args),
                                  any(n.name == "kwargs" and n.ctx == "load" for n in m.find_all(nodes.Name)),
                                  m.lineno) for m in defined)
    return Parse(tuple(n if isinstance(n, str) else None
                       for n in meta.find_referenced_templates(tree)),
                 tuple(sorted(first_line.items(), key=lambda item: (item[1], item[0]))),
                 tuple(sorted(macros)), tuple(signatures))


def _unbounded(tree) -> str | None:
    """The end of a message when the template computes, from constants alone, something its
    job's sandbox refuses (vocabulary.py: a power, a repetition, a %-format width or a
    filter width past what a prompt needs), or None."""
    from jinja2 import nodes

    values: dict[int, object] = {}

    def const(node):  # the node's value when constants alone decide it, else _UNKNOWN
        if id(node) in values:
            return values[id(node)]
        value = _UNKNOWN
        if isinstance(node, nodes.Const):
            value = node.value
        elif isinstance(node, (nodes.Tuple, nodes.List)):
            items = [const(i) for i in node.items]
            value = _UNKNOWN if _UNKNOWN in items else tuple(items)
        elif isinstance(node, nodes.BinExpr):
            left, right = const(node.left), const(node.right)
            if left is not _UNKNOWN and right is not _UNKNOWN:
                problem = template_operation_problem(node.operator, left, right)
                if problem is not None:
                    raise _Refused(node.lineno, problem)
                if not _too_long(left, right):
                    try:
                        value = _OPERATORS[node.operator](left, right)
                    except (ArithmeticError, TypeError, ValueError):
                        value = _UNKNOWN
        elif isinstance(node, nodes.UnaryExpr) and node.operator == "-":
            inner = const(node.node)
            value = -inner if isinstance(inner, (int, float)) else _UNKNOWN
        values[id(node)] = value
        return value

    try:
        for node in tree.find_all((nodes.BinExpr, nodes.Filter, nodes.Call)):
            if isinstance(node, nodes.BinExpr):
                const(node)
                continue
            if isinstance(node, nodes.Call):
                _judge_format_call(node, const)
                continue
            args = tuple(const(a) for a in [*node.args, *(k.value for k in node.kwargs)])
            value = const(node.node) if node.node is not None else _UNKNOWN
            problem = template_filter_problem(node.name, tuple(a for a in args if a is not _UNKNOWN),
                                              None if value is _UNKNOWN else value)
            if problem is not None:
                raise _Refused(node.lineno, problem)
    except _Refused as refused:
        return f": line {refused.line}: {refused.problem}: its job refuses it"
    return None


def _judge_format_call(node, const) -> None:
    """`"{:>999999999}".format(x)`: a constant string's format fields, judged by their specs as
    the job's sandbox judges them (a spec computed when it renders is the sandbox's alone)."""
    import string

    from jinja2 import nodes

    if not (isinstance(node.node, nodes.Getattr) and node.node.attr in ("format", "format_map")):
        return
    text = const(node.node.node)
    if not isinstance(text, str):
        return
    try:
        specs = [spec for _, field, spec, _ in string.Formatter().parse(text) if field is not None and spec]
    except ValueError:
        return  # not a format string: the job's format call fails with Python's own message
    problem = next((p for p in map(format_spec_problem, specs) if p is not None), None)
    if problem is not None:
        raise _Refused(node.lineno, problem)


def _too_long(left: object, right: object) -> bool:
    """Whether joining two constant texts would pass a prompt's length (not worth building)."""
    sizes = [len(v) for v in (left, right) if isinstance(v, (str, tuple))]
    return sum(sizes) > MAX_PROMPT_CHARS


_UNKNOWN = object()
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "//": operator.floordiv, "%": operator.mod, "**": operator.pow}


class _Refused(FlemingError):
    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


def _sidecars() -> Path:
    return cache_dir().parent / "templates"


@functools.lru_cache(maxsize=1)
def _jinja2_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jinja2")
    except metadata.PackageNotFoundError:
        return "?"


def _read(real: str) -> tuple[str, str | None]:
    try:
        if os.path.getsize(real) > MAX_TEMPLATE_BYTES:
            return "", f"is larger than {MAX_TEMPLATE_BYTES >> 20} MB: not a prompt"
        with open(real, encoding="utf-8") as handle:
            return handle.read(), None
    except UnicodeDecodeError as err:
        return "", f"is not UTF-8 text (byte {err.start})"
    except OSError as err:
        return "", f"cannot be read: {err.strerror or type(err).__name__}"


def _resolve(name: str, root: str, where: str) -> tuple[str | None, Finding | None]:
    """(real path, None) of a template name as the job's loader resolves it, or (None, why not)."""
    pieces = []
    for piece in name.split("/"):
        if piece == os.pardir or os.sep in piece:
            return None, Finding(f"prompt template {where} reads '{name}', which lies outside the "
                                 "prompt folder", _FOLDER_HINT)
        if piece and piece != ".":
            pieces.append(piece)
    candidate = os.path.join(root, *pieces)
    try:
        exists = os.path.isfile(candidate)
    except (OSError, ValueError):
        exists = False
    if not exists:
        return None, Finding(f"prompt template {where} reads '{name}', which does not exist in the "
                             "prompt folder", _FOLDER_HINT)
    real = _real(candidate)
    if real is None or not _inside(real, root):
        return None, Finding(f"prompt template {where} reads '{name}', which lies outside the "
                             "prompt folder", _FOLDER_HINT)
    return real, None


# ---------------------------------------------------------------- what a step passes its prompt


@dataclass(frozen=True)
class PromptUse:
    step: str  # a key of vocabulary.PROMPT_VARIABLES
    user: str  # the declaration that renders it, as users read it: "synthesize questions"
    prompt: ast.Name
    template_teacher: bool  # the teacher answers with the prompt's own macros


def prompt_uses(c: Checked) -> Iterator[PromptUse]:
    """Each place a step renders a prompt (rubric rewards pass their data's own fields: unchecked)."""
    for decl in c.program.decls:
        if isinstance(decl, (ast.SynthesizeDecl, ast.DistillDecl)):
            step = "synthesize" if isinstance(decl, ast.SynthesizeDecl) else "distill"
            kind = "search" if step == "distill" and _is_search(decl) else step
            teacher = c.by_name.get(decl.teacher.name)
            yield PromptUse(kind, f"{step} {decl.name.name}", decl.prompt,
                            isinstance(teacher, ast.ModelDecl) and teacher.source.func.name == "template")
            rewrite = option(decl.block, "rewrite") if step == "distill" else None
            if isinstance(rewrite, ast.Name):
                yield PromptUse("rewrite", f"the rewrite of distill {decl.name.name}", rewrite, False)
        elif isinstance(decl, ast.FilterDecl):
            for entry in entries(decl.block, ir.DIFFICULTY):
                prompt = call_kw(entry.call, "prompt")
                if isinstance(prompt, ast.Name):
                    yield PromptUse("difficulty", f"the difficulty step of filter {decl.name.name}",
                                    prompt, False)


def _is_search(decl: ast.DistillDecl) -> bool:
    protocol = option(decl.block, "protocol")
    return isinstance(protocol, ast.Name) and protocol.name == "search"


def prompt_variables_provided(c: Checked) -> Iterator[Diagnostic]:
    """A prompt reads only the variables its step passes, and defines the macros its teacher
    calls: `{{ anwser }}` or a synthesize prompt without `stem` fails here, not in the job."""
    for use in prompt_uses(c):
        decl = c.by_name.get(use.prompt.name)
        if not isinstance(decl, ast.PromptDecl) or not decl.source.args \
                or not isinstance(decl.source.args[0], ast.Str):
            continue
        arg = decl.source.args[0]
        path = local_path(c, decl, arg.value)
        real = _real(str(path))
        if path in c.memo.get("broken_templates", ()) or real is None:
            continue  # prompt_templates reported why it cannot be used
        parse = _read_and_parse(real, _parses(c))[0] if os.path.isfile(real) else None
        if not isinstance(parse, Parse):
            continue  # missing or not parsed: missing_files and prompt_templates report it
        passed = PROMPT_VARIABLES[use.step]
        for name, line in parse.variables:
            if use.step == "search" and name in LABEL_VARIABLES:
                continue  # search_prompts_hide_the_label says why it is not there
            if name not in passed:
                yield Diagnostic(f"prompt template {arg.value}:{line} reads '{name}', which "
                                 f"{use.user} does not pass", arg.span,
                                 expected=f"the variables {use.step} passes: {', '.join(passed)}",
                                 hint=did_you_mean(name, list(passed))
                                 or "docs/data.md lists the variables each step passes")
        if use.template_teacher:
            for macro in TEMPLATE_TEACHER_MACROS.get(use.step, ()):
                if macro not in parse.macros:
                    yield Diagnostic(f"prompt template {arg.value} defines no macro '{macro}', which "
                                     f"the template teacher of {use.user} answers with", arg.span,
                                     hint=f"add {{% macro {macro}({', '.join(passed)}) %}}...{{% endmacro %}} "
                                          "(see prompts/question.j2), or use a model as the teacher")
                    continue
                yield from _macro_takes(parse.signature(macro), passed, arg, use)


def _macro_takes(signature: Signature | None, passed: tuple[str, ...], arg: ast.Str,
                 use: PromptUse) -> Iterator[Diagnostic]:
    """The template teacher calls the macro with every variable its step passes, by keyword:
    jinja2 refuses a keyword the macro has no parameter for (unless it reads `kwargs`)."""
    if signature is None or signature.any_keyword:
        return  # imported from another template (not followed), or it takes any keyword
    name, params, _, line = signature
    missing = [v for v in passed if v not in params]
    if missing:
        yield Diagnostic(f"prompt template {arg.value}:{line} defines macro '{name}' without the "
                         f"parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which the "
                         f"template teacher of {use.user} passes", arg.span,
                         hint=f"write {{% macro {name}({', '.join(passed)}) %}} (see prompts/question.j2)")
