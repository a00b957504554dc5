"""`fleming lsp`: the language server (pygls 2, stdio).

Wiring only: each LSP request is answered by the pure modules next to this one from the latest
`Analysis` of the spec the document belongs to (`analysis.py`), which is recomputed when a
document opens or changes. Parsed files are cached by content (`spec.parser.parse_module`), so a
keystroke in a spec that extends a large base re-parses only the edited file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from fleming_dsl import __version__ as VERSION
from fleming_dsl.errors import Diagnostic, SpecError
from fleming_dsl.ir import Span
from fleming_dsl.lsp import complete as completion
from fleming_dsl.lsp import actions, context, hover, lens, outline
from fleming_dsl.lsp.analysis import (
    Analysis,
    FileLink,
    Occurrence,
    analyse,
    display,
    includer,
    parse_tolerant,
    spec_file,
)
from fleming_dsl.spec import ast

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ITEM_KINDS = {"keyword": lsp.CompletionItemKind.Keyword, "option": lsp.CompletionItemKind.Property,
               "name": lsp.CompletionItemKind.Variable, "relation": lsp.CompletionItemKind.EnumMember,
               "type": lsp.CompletionItemKind.Class, "value": lsp.CompletionItemKind.Value}
_SYMBOL_KINDS = {"experiment": lsp.SymbolKind.Namespace, "cluster": lsp.SymbolKind.Namespace,
                 "model": lsp.SymbolKind.Class, "graph": lsp.SymbolKind.Struct, "sample": lsp.SymbolKind.Event,
                 "dataset": lsp.SymbolKind.File, "prompt": lsp.SymbolKind.String,
                 "synthesize": lsp.SymbolKind.Event, "distill": lsp.SymbolKind.Event,
                 "filter": lsp.SymbolKind.Event, "reward": lsp.SymbolKind.Function,
                 "stage": lsp.SymbolKind.Method, "evaluate": lsp.SymbolKind.Event,
                 "option": lsp.SymbolKind.Property, "block": lsp.SymbolKind.Object}


class FlemingServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("fleming-lsp", VERSION)
        self.root = Path.cwd()
        self.analyses: dict[str, Analysis] = {}  # spec path -> latest analysis
        self.modules: dict[str, ast.Module] = {}  # uri -> last module that parsed
        self.published: dict[str, set[str]] = {}  # spec path -> uris given diagnostics
        self.shut_down = False  # a `shutdown` request came before `exit`

    # ------------------------------------------------------------- documents and analyses
    def texts(self) -> dict[Path, str]:
        out = {}
        for uri, doc in self.workspace.text_documents.items():
            path = to_fs_path(uri)
            if path:
                out[Path(os.path.abspath(path))] = doc.source
        return out

    def spec_of(self, path: Path) -> Path:
        """The spec to analyse for `path`: itself, or, for a file without an experiment header
        (an included file), a spec that includes it: an open one, else one in the project."""
        for analysis in self.analyses.values():
            if path in analysis.paths.values() and analysis.spec != path and not _has_header(analysis, path):
                return analysis.spec
        text = self.texts().get(path)
        module = parse_tolerant(text if text is not None else _read(path, self.root), display(path, self.root))
        if module is None or module.header is not None:
            return path
        return includer(path, self.root, self.texts()) or path

    def analysis(self, uri: str) -> Analysis | None:
        path = Path(os.path.abspath(to_fs_path(uri) or ""))
        spec = self.spec_of(path)
        found = self.analyses.get(str(spec))
        if found is None:
            found = self.refresh(uri)
        return found

    def refresh(self, uri: str) -> Analysis:
        path = Path(os.path.abspath(to_fs_path(uri) or ""))
        spec = self.spec_of(path)
        result = analyse(spec, self.root, self.texts())
        self.analyses[str(spec)] = result
        shown = display(path, self.root)
        module = result.modules.get(shown)
        if module is not None:
            self.modules[uri] = module
        self.publish(result)
        return result

    def module(self, uri: str) -> ast.Module | None:
        doc = self.workspace.get_text_document(uri)
        path = to_fs_path(uri) or ""
        module = parse_tolerant(doc.source, display(Path(os.path.abspath(path)), self.root), attempts=1)
        if module is not None:
            self.modules[uri] = module
        return self.modules.get(uri)

    def publish(self, result: Analysis) -> None:
        """Diagnostics of every file of the spec; files that had some and now have none are
        cleared; the spec's own file comes last, with the version of its text."""
        grouped = {from_fs_path(str(result.path_of(shown))): diags for shown, diags in result.by_file().items()}
        own = from_fs_path(str(result.spec))
        stale = self.published.get(str(result.spec), set()) - set(grouped)
        caps = self.client_capabilities.text_document
        versioned = bool(caps and caps.publish_diagnostics and caps.publish_diagnostics.version_support)
        for uri in sorted(set(grouped) | stale | {own}, key=lambda u: u == own):
            doc = self.workspace.text_documents.get(uri)
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                uri=uri, diagnostics=[_diagnostic(d) for d in grouped.get(uri, ())],
                version=doc.version if doc is not None and versioned else None))
        self.published[str(result.spec)] = set(grouped)

    def shown(self, uri: str) -> str:
        return display(Path(os.path.abspath(to_fs_path(uri) or "")), self.root)


def _read(path: Path, root: Path) -> str:
    if not spec_file(path, root):
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _has_header(analysis: Analysis, path: Path) -> bool:
    module = analysis.modules.get(analysis.display(path))
    return module is not None and module.header is not None


def _range(span: Span) -> lsp.Range:
    return lsp.Range(start=lsp.Position(line=max(span.line - 1, 0), character=max(span.col - 1, 0)),
                     end=lsp.Position(line=max(span.end_line - 1, 0), character=max(span.end_col - 1, 0)))


def _diagnostic(d: Diagnostic) -> lsp.Diagnostic:
    span = d.span or Span(file="", line=1, col=1, end_line=1, end_col=2)
    message = d.message + (f"\nexpected {d.expected}" if d.expected else "") + (f"\nhint: {d.hint}" if d.hint else "")
    severity = lsp.DiagnosticSeverity.Error if d.severity == "error" else lsp.DiagnosticSeverity.Warning
    return lsp.Diagnostic(range=_range(span), message=message, severity=severity, source="fleming")


def _location(analysis: Analysis, span: Span) -> lsp.Location:
    return lsp.Location(uri=from_fs_path(str(analysis.path_of(span.file))), range=_range(span))


server = FlemingServer()


@server.feature(lsp.INITIALIZE)
def initialize(ls: FlemingServer, params: lsp.InitializeParams) -> None:
    folders = params.workspace_folders or []
    root = (to_fs_path(folders[0].uri) if folders else None) or \
        (to_fs_path(params.root_uri) if params.root_uri else None) or params.root_path
    if root and os.path.isdir(root):
        ls.root = Path(os.path.abspath(root))
        os.chdir(ls.root)  # paths in specs and plans are relative to the project root, as for the CLI


@server.feature(lsp.SHUTDOWN)
def on_shutdown(ls: FlemingServer, params: None) -> None:
    ls.shut_down = True


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: FlemingServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: FlemingServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: FlemingServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: FlemingServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.modules.pop(params.text_document.uri, None)


def _under(ls: FlemingServer, uri: str, pos: lsp.Position):
    analysis = ls.analysis(uri)
    if analysis is None:
        return None, None
    return analysis, analysis.at(ls.shown(uri), pos.line + 1, pos.character + 1)


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def on_hover(ls: FlemingServer, params: lsp.HoverParams) -> lsp.Hover | None:
    uri, pos = params.text_document.uri, params.position
    analysis, item = _under(ls, uri, pos)
    text = None
    if isinstance(item, Occurrence) and analysis is not None:
        text = hover.resolved(analysis, item.name)
        if text is None:
            decl = next((d for d in analysis.decls if d.name.name == item.name), None)
            text = f"**{item.name}**: {decl.kind} ({decl.span.file}:{decl.span.line})" if decl else None
    elif isinstance(item, FileLink):
        text = f"{item.kind}: `{item.target}`" + ("" if item.target.exists() else " (not found)")
    else:
        source = ls.workspace.get_text_document(uri).source
        text = _hover_text(ls.module(uri), source, pos.line + 1, pos.character + 1)
    if text is None:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))


def _hover_text(module: ast.Module | None, source: str, line: int, col: int) -> str | None:
    """An option's entry, a function's, a value's option, else a keyword's (the word under the
    cursor: keywords have no node of their own in the AST)."""
    word = context.word_at(source, line, col)
    if module is not None:
        found = context.option_at(module, line, col)
        if found is not None:
            return hover.option_entry(found[0], found[1].name)
        func = context.function_at(module, line, col)
        if func is not None:
            return hover.function_entry(func.removesuffix("()"))
        found = context.value_at(module, line, col)
        if found is not None:
            return hover.value_entry(found[0], found[1].name, word)
    return hover.keyword_entry(word) if word else None


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: FlemingServer, params: lsp.DefinitionParams):
    analysis, item = _under(ls, params.text_document.uri, params.position)
    if isinstance(item, FileLink):
        return [lsp.Location(uri=from_fs_path(str(item.target)),
                             range=lsp.Range(start=lsp.Position(line=0, character=0),
                                             end=lsp.Position(line=0, character=0)))]
    if isinstance(item, Occurrence):
        return [_location(analysis, o.span) for o in analysis.occurrences_of(item.name) if o.role == "decl"]
    return None


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def on_references(ls: FlemingServer, params: lsp.ReferenceParams):
    analysis, item = _under(ls, params.text_document.uri, params.position)
    if isinstance(item, FileLink):
        return [_location(analysis, link.span) for link in analysis.links if link.target == item.target]
    if not isinstance(item, Occurrence):
        return None
    keep_decl = params.context.include_declaration
    return [_location(analysis, o.span) for o in analysis.occurrences_of(item.name)
            if keep_decl or o.role != "decl"]


@server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
def on_prepare_rename(ls: FlemingServer, params: lsp.PrepareRenameParams):
    analysis, item = _under(ls, params.text_document.uri, params.position)
    if isinstance(item, Occurrence):
        return _range(item.span)
    return None


@server.feature(lsp.TEXT_DOCUMENT_RENAME)
def on_rename(ls: FlemingServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
    analysis, item = _under(ls, params.text_document.uri, params.position)
    if not isinstance(item, Occurrence):
        return None
    new = params.new_name
    if not _NAME.fullmatch(new) or new in context.TOP_KEYWORDS:
        raise _refused(f"'{new}' is not a valid name: letters, digits and _, not starting with a digit")
    if new != item.name and any(d.name.name == new for d in analysis.decls):
        raise _refused(f"'{new}' is already declared")
    changes: dict[str, list[lsp.TextEdit]] = {}
    for occ in analysis.occurrences_of(item.name):
        uri = from_fs_path(str(analysis.path_of(occ.span.file)))
        changes.setdefault(uri, []).append(lsp.TextEdit(range=_range(occ.span), new_text=new))
    return lsp.WorkspaceEdit(changes=changes)


def _refused(message: str) -> JsonRpcException:
    """A request the server understood and declines: LSP's RequestFailed, the message for the
    user, no traceback."""
    return JsonRpcException(message, code=lsp.LSPErrorCodes.RequestFailed)


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def on_code_action(ls: FlemingServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    analysis = ls.analysis(uri)
    if analysis is None:
        return []
    first, last = params.range.start.line + 1, params.range.end.line + 1
    return [lsp.CodeAction(title=act.title, kind=lsp.CodeActionKind.QuickFix, is_preferred=True,
                           diagnostics=[_diagnostic(act.diagnostic)],
                           edit=lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(range=_range(act.fix.span),
                                                                               new_text=act.fix.text)]}))
            for act in actions.actions(analysis, ls.shown(uri), first, last)]


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=["[", "(", " ", "{", "\n"]))
def on_completion(ls: FlemingServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    offset = doc.offset_at_position(params.position)
    cursor = context.scan(doc.source, offset)
    analysis = ls.analysis(uri)
    items = []
    for item in completion.complete(analysis, cursor):
        entry = lsp.CompletionItem(label=item.label, kind=_ITEM_KINDS[item.kind], detail=item.detail or None,
                                   documentation=item.doc or None)
        if item.insert:
            entry.insert_text = item.insert
            entry.insert_text_format = lsp.InsertTextFormat.Snippet
        items.append(entry)
    return lsp.CompletionList(is_incomplete=False, items=items)


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def on_formatting(ls: FlemingServer, params: lsp.DocumentFormattingParams):
    from fleming_dsl.spec.fmt import format_source

    doc = ls.workspace.get_text_document(params.text_document.uri)
    try:
        formatted = format_source(doc.source, ls.shown(params.text_document.uri))
    except SpecError:
        return None  # the diagnostics already say why
    if formatted == doc.source:
        return []
    lines = doc.source.splitlines()
    end = lsp.Position(line=len(lines), character=0)
    return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=formatted)]


def _symbol(sym: outline.Symbol) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(name=sym.name, detail=sym.detail or None,
                              kind=_SYMBOL_KINDS.get(sym.kind, lsp.SymbolKind.Variable),
                              range=_range(sym.span), selection_range=_range(sym.selection),
                              children=[_symbol(c) for c in sym.children])


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def on_symbols(ls: FlemingServer, params: lsp.DocumentSymbolParams):
    module = ls.module(params.text_document.uri)
    return [_symbol(s) for s in outline.symbols(module)] if module else []


@server.feature(lsp.TEXT_DOCUMENT_FOLDING_RANGE)
def on_folding(ls: FlemingServer, params: lsp.FoldingRangeParams):
    uri = params.text_document.uri
    module = ls.module(uri)
    if module is None:
        return []
    text = ls.workspace.get_text_document(uri).source
    kinds = {"region": lsp.FoldingRangeKind.Region, "comment": lsp.FoldingRangeKind.Comment}
    return [lsp.FoldingRange(start_line=a, end_line=b, kind=kinds[k]) for a, b, k in outline.folding(module, text)]


@server.feature(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                lsp.SemanticTokensLegend(token_types=list(outline.TOKEN_TYPES),
                                         token_modifiers=list(outline.TOKEN_MODIFIERS)))
def on_semantic_tokens(ls: FlemingServer, params: lsp.SemanticTokensParams) -> lsp.SemanticTokens:
    uri = params.text_document.uri
    text = ls.workspace.get_text_document(uri).source
    return lsp.SemanticTokens(data=outline.semantic_tokens(ls.analysis(uri), ls.shown(uri), text))


@server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
def on_code_lens(ls: FlemingServer, params: lsp.CodeLensParams):
    uri = params.text_document.uri
    analysis = ls.analysis(uri)
    if analysis is None or analysis.experiment is None:
        return []
    shown = ls.shown(uri)
    decls = {d.name.name: d.span.line for d in analysis.decls
             if d.span.file == shown and d.kind in lens.LENS_KINDS}
    out = []
    for item in lens.lenses(analysis.experiment, shown, decls, ls.root):
        line = lsp.Range(start=lsp.Position(line=item.line - 1, character=0),
                         end=lsp.Position(line=item.line - 1, character=0))
        out.append(lsp.CodeLens(range=line, command=lsp.Command(title=item.title, command="")))
    return out


# ---------------------------------------------------------------- the command


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lsp", help="the language server for editors (stdio)",
        description="Run the fleming language server on stdin/stdout (Language Server Protocol): "
                    "diagnostics, hover, definition, references, rename, completion, quick fixes, "
                    "formatting, symbols, semantic tokens, folding and job-impact code lenses for "
                    ".flm files. Exits 0 after the client's shutdown and exit.")
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace | None = None) -> int:
    """Serve until the client's `exit`: 0 after a `shutdown`, 1 without one (as LSP asks)."""
    # pygls closes the stream it writes to on exit: give it a duplicate of stdout, so the
    # command's own stdout stays open for the CLI's last flush
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb") as out:
        server.start_io(sys.stdin.buffer, out)
    return 0 if server.shut_down else 1
