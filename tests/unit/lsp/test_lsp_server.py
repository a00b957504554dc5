"""`fleming lsp` end to end: a pytest-lsp client drives the real server over stdio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import pytest_lsp
from lsp_client import Published
from lsp_fixtures import make_project, server_command, server_env
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")


SECRET = "fleming-test-secret-7f3a"  # in the server's environment; must never reach the client


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The usual project plus files no request may trip over (every test here runs beside them):
    a link to /proc/self/environ named like a spec, a line starting with a non-ASCII letter
    after a syntax error, and a number past 64 bits."""
    root = make_project(tmp_path_factory.mktemp("lsp") / "proj")
    specs = root / "specs"
    (specs / "env.flm").symlink_to("/proc/self/environ")
    (specs / "uber.flm").write_text('model x = hf(\nÜber = 3\n', encoding="utf-8")
    tiny = (specs / "tiny.flm").read_text(encoding="utf-8")
    (specs / "big.flm").write_text(tiny.replace("generations = 4", "generations = 18446744073709551617"),
                                   encoding="utf-8")
    return root


@pytest_lsp.fixture(config=ClientServerConfig(server_command=server_command(),
                                              server_env={**server_env(), "FLEMING_TEST_SECRET": SECRET}),
                    scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=from_fs_path(str(project))))
    yield
    await lsp_client.shutdown_session()


def uri_of(project: Path, name: str) -> str:
    return from_fs_path(str(project / "specs" / name))


async def open_doc(client: LanguageClient, project: Path, name: str, text: str | None = None) -> str:
    uri = uri_of(project, name)
    text = (project / "specs" / name).read_text() if text is None else text
    waiter = Published(client, uri)
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="flm", version=1, text=text)))
    await waiter.wait()
    return uri


async def change(client: LanguageClient, uri: str, text: str, version: int) -> None:
    """Replace the document's text and wait for its diagnostics."""
    waiter = Published(client, uri)
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)]))
    await waiter.wait()


def doc(uri: str) -> t.TextDocumentIdentifier:
    return t.TextDocumentIdentifier(uri=uri)


def at(line: int, col: int) -> t.Position:
    """1-based line and column, as the spec listings number them."""
    return t.Position(line=line - 1, character=col - 1)


# ---------------------------------------------------------------- diagnostics


async def test_clean_spec_has_no_diagnostics(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    assert list(client.diagnostics[uri]) == []


async def test_error_in_base_is_reported_on_the_base_file(client: LanguageClient, project: Path):
    child = await open_doc(client, project, "broken_child.flm")
    base = uri_of(project, "broken_base.flm")
    [diag] = client.diagnostics[base]
    assert diag.message.splitlines()[0] == "unknown option 'betta' for stage rl1"
    assert "hint: did you mean 'beta'?" in diag.message
    assert diag.severity == t.DiagnosticSeverity.Error
    assert (diag.range.start.line, diag.range.start.character) == (70, 2)
    assert (diag.range.end.line, diag.range.end.character) == (70, 7)
    assert list(client.diagnostics[child]) == []


async def test_diagnostics_follow_edits(client: LanguageClient, project: Path):
    text = (project / "specs" / "child.flm").read_text()
    uri = await open_doc(client, project, "child.flm", text)
    assert list(client.diagnostics[uri]) == []
    await change(client, uri, text.replace("epochs = 1", "epochs = -1"), 2)
    [diag] = client.diagnostics[uri]
    assert diag.message == "'epochs' must be > 0, got -1.0"
    assert diag.range.start == at(6, 12)
    await change(client, uri, text.replace("batch = 8\n}", "batch = 8\n"), 3)  # a syntax error
    [diag] = client.diagnostics[uri]
    assert diag.message.startswith("unclosed block: missing '}'")
    await change(client, uri, text, 4)
    assert list(client.diagnostics[uri]) == []


async def test_an_included_file_is_checked_through_the_spec_that_includes_it(client: LanguageClient,
                                                                            project: Path):
    uri = await open_doc(client, project, "common.flm")
    [diag] = client.diagnostics[uri]
    assert diag.message.startswith("invalid regular expression: unterminated character set")
    assert diag.range.start == at(1, 22)  # as the CLI: common.flm:1:22


async def test_external_data_is_a_warning(client: LanguageClient, project: Path):
    text = (project / "specs" / "tiny.flm").read_text().replace("../data/eval/pubmedqa.json",
                                                                 "../elsewhere/pubmedqa.json")
    uri = await open_doc(client, project, "tiny_external.flm", text)
    [diag] = client.diagnostics[uri]
    assert diag.severity == t.DiagnosticSeverity.Warning
    assert diag.message.startswith("data file not found: ../elsewhere/pubmedqa.json (treated as external data")


# ---------------------------------------------------------------- hover


async def test_hover_on_an_option_shows_its_reference_entry(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(62, 3)))
    assert hover.contents.value == ("**lr** (stage)\n\npeak learning rate\n\n"
                                    "type: number · default: 1e-05 · range: > 0")
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(11, 42)))
    assert hover.contents.value.startswith("**layers** (tiny() model source)\n\ntransformer layers")
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(22, 14)))
    assert hover.contents.value == ("**inverse_degree() weight**: `weight = inverse_degree(...)`\n\n"
                                    "- `alpha`: number = 0.75")


async def test_hover_on_a_name_shows_its_resolved_configuration(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "child.flm")
    # `base` in `sft(base, clean)`: the model from the base spec, defaults filled in
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(5, 24)))
    text = hover.contents.value
    assert "model base  (specs/base.flm:11)" in text
    assert '  tiny.layers       = 2  <- line 11' in text
    assert '  tiny.max_position = 512  (default)' in text
    # the stage the child redeclares: its own values, lines of child.flm
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(5, 8)))
    text = hover.contents.value
    assert "stage cold_start  (specs/child.flm:5)" in text
    flat = re.sub(r" {2,}", " ", text)  # the padding follows the longest field name
    assert "training.lr = 0.001 <- line 7" in flat
    assert 'init = "base" <- line 5' in flat


async def test_hover_shows_every_sweep_point(client: LanguageClient, project: Path):
    text = (project / "specs" / "child.flm").read_text().replace("lr = 1e-3", "sweep lr in [1e-3, 1e-4]")
    uri = await open_doc(client, project, "child_sweep.flm", text)
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(5, 8)))
    assert hover.contents.value.startswith("**cold_start**: 2 declarations after sweep expansion")
    assert "stage cold_start_lr_0p001" in hover.contents.value
    assert "stage cold_start_lr_0p0001" in hover.contents.value


# ---------------------------------------------------------------- navigation


async def test_definition_of_names_and_files(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "child.flm")
    [loc] = await client.text_document_definition_async(t.DefinitionParams(text_document=doc(uri), position=at(5, 30)))
    assert loc.uri == uri_of(project, "base.flm")  # clean, declared in the base
    assert loc.range.start == at(45, 8)
    [loc] = await client.text_document_definition_async(t.DefinitionParams(text_document=doc(uri), position=at(1, 34)))
    assert loc.uri == uri_of(project, "base.flm")  # the extends target
    tiny = await open_doc(client, project, "tiny.flm")
    [loc] = await client.text_document_definition_async(t.DefinitionParams(text_document=doc(tiny),
                                                                           position=at(33, 30)))
    assert loc.uri == from_fs_path(str(project / "prompts" / "question.j2"))
    [loc] = await client.text_document_definition_async(t.DefinitionParams(text_document=doc(tiny),
                                                                           position=at(16, 30)))
    assert loc.uri == from_fs_path(str(project / "data" / "medkg" / "kg.csv"))


async def test_references(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    refs = await client.text_document_references_async(t.ReferenceParams(
        text_document=doc(uri), position=at(45, 9), context=t.ReferenceContext(include_declaration=True)))
    lines = sorted(r.range.start.line + 1 for r in refs)
    assert lines == [45, 60, 67, 78]  # declaration, sft data, grpo data, mine_hard pool
    refs = await client.text_document_references_async(t.ReferenceParams(
        text_document=doc(uri), position=at(56, 9), context=t.ReferenceContext(include_declaration=False)))
    assert sorted(r.range.start.line + 1 for r in refs) == [68, 79]


async def test_references_to_a_file(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    refs = await client.text_document_references_async(t.ReferenceParams(
        text_document=doc(uri), position=at(28, 35), context=t.ReferenceContext(include_declaration=True)))
    assert [(r.uri, r.range.start.line + 1, r.range.start.character + 1) for r in refs] == [(uri, 28, 29)]


async def test_rename_edits_every_file_of_the_spec(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "child.flm")
    edit = await client.text_document_rename_async(t.RenameParams(
        text_document=doc(uri), position=at(5, 24), new_name="student"))
    base = uri_of(project, "base.flm")
    assert sorted(e.range.start.line + 1 for e in edit.changes[base]) == [11, 60]
    assert [e.range.start.line + 1 for e in edit.changes[uri]] == [5]
    assert {e.new_text for es in edit.changes.values() for e in es} == {"student"}
    with pytest.raises(Exception, match="'teacher' is already declared"):
        await client.text_document_rename_async(t.RenameParams(
            text_document=doc(uri), position=at(5, 24), new_name="teacher"))


# ---------------------------------------------------------------- completion


async def complete(client: LanguageClient, project: Path, name: str, text: str, line: int, col: int):
    uri = await open_doc(client, project, name, text)
    result = await client.text_document_completion_async(t.CompletionParams(text_document=doc(uri),
                                                                            position=at(line, col)))
    return {item.label: item for item in result.items}


async def test_completion_of_keywords_and_options(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    items = await complete(client, project, "c1.flm", base + "\n", 92, 1)
    assert {"model", "stage", "sample", "evaluate", "include", "drop"} <= set(items)
    text = base.replace("  max_length = 256\n", "  max_length = 256\n  gr\n")
    items = await complete(client, project, "c2.flm", text, 65, 5)
    assert items["grad_accum"].detail == "whole number = 1"
    assert items["lr"].detail == "number = 1e-05"
    assert {"resources", "lora", "sweep"} <= set(items)
    assert "count" not in items  # a sample option
    text = base.replace("  temperature = 0.0\n", "  temperature = 0.0\n  backend = vllm(\n")
    items = await complete(client, project, "c3.flm", text, 14, 18)
    assert set(items) == {"tp", "tensor_parallel"}


async def test_completion_of_names_by_kind(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    items = await complete(client, project, "c4.flm", base + "\nsynthesize more from rare_dx with ", 92, 35)
    assert set(items) == {"base", "teacher"}
    items = await complete(client, project, "c5.flm", base + "\nevaluate rl2 on [", 92, 18)
    assert set(items) == {"medqa_train", "medqa_test", "medmcqa_dev", "pubmedqa"}
    text = base.replace("  rewards = 1.0 * correct + 0.2 * form + 0.1 * brevity\n  generations = 4\n  batch = 8\n"
                        "  beta = 0.0\n  lr = 5e-5\n  max_completion_length = 48\n  max_steps = 8\n}",
                        "  rewards = ", 1)
    items = await complete(client, project, "c6.flm", text, 68, 13)
    assert set(items) == {"correct", "form", "brevity"}


PATH_LINE = ('  path = disease -[disease_phenotype_positive]-> "effect/phenotype" '
             '-[disease_phenotype_positive]-> disease\n')


async def test_completion_of_relations_and_node_types(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    text = base.replace(PATH_LINE, "  path = disease -[\n")
    items = await complete(client, project, "c7.flm", text, 20, 20)
    assert "disease_phenotype_positive" in items and "drug_protein" in items
    assert items["drug_protein"].kind == t.CompletionItemKind.EnumMember
    text = base.replace(PATH_LINE, "  path = \n")
    items = await complete(client, project, "c8.flm", text, 20, 10)
    assert {"disease", '"effect/phenotype"', "drug", "*"} <= set(items)


# ---------------------------------------------------------------- formatting and outline


async def test_formatting(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "fmt.flm", 'experiment "f" { seed = 1 }\nmodel   m=hf("x")  # a model\n')
    [edit] = await client.text_document_formatting_async(t.DocumentFormattingParams(
        text_document=doc(uri), options=t.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edit.new_text == 'experiment "f" {\n  seed = 1\n}\nmodel m = hf("x")  # a model\n'


async def test_document_symbols(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(text_document=doc(uri)))
    names = [s.name for s in symbols]
    assert names[:4] == ["tiny", "base", "teacher", "medkg"]
    assert names[-1] == "eval"
    rl1 = next(s for s in symbols if s.name == "rl1")
    assert rl1.detail == "stage = grpo(...)" and rl1.kind == t.SymbolKind.Method
    assert [c.name for c in rl1.children][:3] == ["rewards", "generations", "batch"]


async def test_folding_ranges(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    ranges = await client.text_document_folding_range_async(t.FoldingRangeParams(text_document=doc(uri)))
    spans = {(r.start_line + 1, r.end_line + 1, r.kind) for r in ranges}
    assert (1, 4, t.FoldingRangeKind.Comment) in spans
    assert (18, 26, t.FoldingRangeKind.Region) in spans  # sample rare_dx
    assert (50, 53, t.FoldingRangeKind.Region) in spans  # difficulty(...) { ... }


async def test_semantic_tokens(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    result = await client.text_document_semantic_tokens_full_async(t.SemanticTokensParams(text_document=doc(uri)))
    types = ("keyword", "variable", "property", "function", "string", "number", "comment",
             "operator", "type", "enumMember")
    text = (project / "specs" / "tiny.flm").read_text().splitlines()
    line = col = 0
    decoded = []
    data = result.data
    for i in range(0, len(data), 5):
        line += data[i]
        col = data[i + 1] if data[i] else col + data[i + 1]
        decoded.append((line + 1, text[line][col:col + data[i + 2]], types[data[i + 3]], data[i + 4]))
    on_20 = [(word, kind) for n, word, kind, _ in decoded if n == 20]
    assert on_20 == [("path", "property"), ("=", "operator"), ("disease", "type"), ("-[", "operator"),
                     ("disease_phenotype_positive", "enumMember"), ("]->", "operator"),
                     ('"effect/phenotype"', "string"), ("-[", "operator"),
                     ("disease_phenotype_positive", "enumMember"), ("]->", "operator"), ("disease", "type")]
    on_37 = [(word, kind, mods) for n, word, kind, mods in decoded if n == 37]
    assert on_37[:3] == [("synthesize", "keyword", 0), ("questions", "variable", 1), ("from", "keyword", 0)]
    assert ("rare_dx", "variable", 0) in on_37
    assert decoded[0][2] == "comment"


async def test_code_lens_counts_jobs_against_head(client: LanguageClient, project: Path):
    text = (project / "specs" / "tiny.flm").read_text()
    uri = await open_doc(client, project, "tiny.flm", text)
    lenses = await client.text_document_code_lens_async(t.CodeLensParams(text_document=doc(uri)))
    by_line = {lens.range.start.line + 1: lens.command.title for lens in lenses}
    assert set(by_line) == {18, 37, 39, 45, 60, 67, 78, 88}  # data steps, stages, the evaluation
    assert by_line[78] == "unchanged since HEAD · an edit here re-runs 3 jobs"  # grpo_rl2, eval_rl2, report
    edited = text.replace("  lr = 5e-5\n", "  lr = 1e-4\n  resources {\n    gpus = 2\n    time = 3h\n  }\n", 1)
    await change(client, uri, edited, 2)  # rl1, now on 2 GPUs for 3 hours
    lenses = await client.text_document_code_lens_async(t.CodeLensParams(text_document=doc(uri)))
    by_line = {lens.range.start.line + 1: lens.command.title for lens in lenses}
    # grpo_rl1 changed; grpo_rl2, eval_rl1, eval_rl2 and the report are invalidated
    assert by_line[67] == "changed since HEAD: re-runs 5 jobs, 6 GPU-h · an edit here re-runs 5 jobs, 6 GPU-h"
    assert by_line[60] == "unchanged since HEAD · an edit here re-runs 7 jobs, 6 GPU-h"
    await change(client, uri, text, 3)


# ---------------------------------------------------------------- answers by position


async def test_completion_after_reward_offers_reward_functions(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    items = await complete(client, project, "p1.flm", base + "\nreward x = ", 92, 12)
    assert set(items) == {"choice_match", "length_penalty", "overlong", "regex", "rubric"}
    assert items["overlong"].documentation.startswith("**overlong() reward**: `reward NAME = overlong(")
    items = await complete(client, project, "p2.flm", base + "\nstage s = ", 92, 11)
    assert set(items) == {"sft", "grpo"}


async def test_completion_in_a_reward_sum_offers_reward_names(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    text = base.replace("  rewards = 1.0 * correct + 0.2 * form + 0.1 * brevity\n  generations = 4\n  batch = 8\n"
                        "  beta = 0.0\n  lr = 5e-5\n  max_completion_length = 48\n  max_steps = 8\n}",
                        "  rewards = 1.0 * correct + 0.2 * ", 1)
    items = await complete(client, project, "p3.flm", text, 68, 34)
    assert set(items) == {"correct", "form", "brevity"}


async def test_completion_offers_only_the_stage_methods_options(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    sft = await complete(client, project, "p4.flm", base.replace("  max_length = 256\n", "  max_length = 256\n  \n"),
                         65, 3)
    assert {"lr", "epochs", "max_length", "deepspeed", "lora", "until"} <= set(sft)
    assert not {"generations", "beta", "rewards", "use_vllm", "loss_type"} & set(sft)
    grpo = await complete(client, project, "p5.flm", base.replace("  max_steps = 8\n", "  max_steps = 8\n  \n", 1),
                          75, 3)
    assert {"lr", "generations", "beta", "rewards", "use_vllm", "loss_type"} <= set(grpo)


async def test_completion_of_an_options_values(client: LanguageClient, project: Path):
    base = (project / "specs" / "tiny.flm").read_text()
    items = await complete(client, project, "p6.flm", base.replace("  max_length = 256\n",
                                                                   "  max_length = 256\n  deepspeed = \n"), 65, 15)
    assert list(items) == ["none", "zero2", "zero3", "zero3_offload"]
    items = await complete(client, project, "p7.flm", base.replace("  keep = correct\n", "  keep = \n"), 42, 10)
    assert list(items) == ["correct", "all"]


async def hover_at(client: LanguageClient, uri: str, line: int, col: int) -> str | None:
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(uri), position=at(line, col)))
    return hover.contents.value if hover else None


async def test_hover_on_keywords_functions_and_values(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    assert (await hover_at(client, uri, 60, 2)).startswith(
        "**stage**: `stage NAME = sft(INIT, DATA) { ... } / grpo(INIT, DATA) { ... }`\n\n"
        "stage method: `sft`, `grpo`\n- `lr`: number\n")
    assert (await hover_at(client, uri, 56, 3)) == (
        "**reward**: `reward NAME = FUNCTION(...)`\n\na verifiable reward for grpo stages\n\n"
        "reward function: `choice_match`, `length_penalty`, `overlong`, `regex`, `rubric`")
    assert (await hover_at(client, uri, 37, 23)) == (
        "**from**: `KIND NAME from SOURCE`\n\nthe declaration the step reads")
    assert (await hover_at(client, uri, 56, 20)) == (
        "**choice_match() reward**: `reward NAME = choice_match(TAG, ACCEPT)`\n\n"
        "- `tag`: string (also the first positional argument)\n"
        "- `accept`: letter or text (also the second positional argument) = letter\n"
        "- `partial`: number (also the third positional argument) = 0.0")
    assert (await hover_at(client, uri, 19, 89)) is None  # `with` in a comment
    sft = await hover_at(client, uri, 60, 21)
    assert sft.startswith("**sft()**: a stage method (one of sft, grpo)\n\noptions: `lr`, `epochs`, ")
    assert "`max_length`" in sft and "`generations`" not in sft
    assert (await hover_at(client, uri, 16, 16)) == "**primekg()**: a graph format (one of primekg, hetionet, triples)"
    assert (await hover_at(client, uri, 23, 11)) == (
        "`anchor`: a value of **mask**\n\n**mask** (sample)\n\nwhich entity of the path becomes the answer "
        "(an index counts from 0, the start, up to the shortest walk's end)\n\n"
        "type: anchor, target or a node index · default: target · range: >= 0")


async def test_hover_on_synthesize_options(client: LanguageClient, project: Path):
    text = (project / "specs" / "tiny.flm").read_text().replace(
        "using ask\n", "using ask {\n  variants = 2\n  options = 4\n}\n", 1)
    uri = await open_doc(client, project, "h1.flm", text)
    assert (await hover_at(client, uri, 38, 4)).startswith("**variants** (synthesize)\n\nitems per sampled path")
    assert (await hover_at(client, uri, 39, 4)).startswith("**options** (synthesize)\n\noptions per item")


async def test_code_action_applies_the_did_you_mean(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "broken_base.flm")
    [action] = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=doc(uri), range=t.Range(start=at(71, 4), end=at(71, 4)),
        context=t.CodeActionContext(diagnostics=list(client.diagnostics[uri]))))
    assert action.title == "Replace 'betta' with 'beta'"
    assert action.kind == t.CodeActionKind.QuickFix
    [edit] = action.edit.changes[uri]
    assert (edit.range.start, edit.range.end, edit.new_text) == (at(71, 3), at(71, 8), "beta")
    assert action.diagnostics[0].message.startswith("unknown option 'betta' for stage rl1")
    none = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=doc(uri), range=t.Range(start=at(60, 1), end=at(60, 1)),
        context=t.CodeActionContext(diagnostics=[])))
    assert list(none) == []


async def test_code_actions_for_quotes_and_a_misspelt_value(client: LanguageClient, project: Path):
    text = (project / "specs" / "tiny.flm").read_text().replace(
        "  max_length = 256\n", "  max_length = 256\n  deepspeed = zero22\n  resources {\n    partition = gpu\n  }\n")
    uri = await open_doc(client, project, "a1.flm", text)
    found = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=doc(uri), range=t.Range(start=at(65, 1), end=at(67, 1)),
        context=t.CodeActionContext(diagnostics=[])))
    assert sorted((a.title, a.edit.changes[uri][0].range.start, a.edit.changes[uri][0].new_text) for a in found) == [
        ("Replace 'gpu' with '\"gpu\"'", at(67, 17), '"gpu"'),
        ("Replace 'zero22' with 'zero2'", at(65, 15), "zero2")]


async def test_code_actions_for_a_graph_name_and_a_data_file(client: LanguageClient, project: Path):
    text = (project / "specs" / "tiny.flm").read_text().replace(
        '-[disease_phenotype_positive]-> disease\n', '-[disease_phenotype_positiv]-> disease\n', 1).replace(
        '"../data/eval/medqa_test.jsonl"', '"../data/eval/medqa_tset.jsonl"')
    uri = await open_doc(client, project, "a2.flm", text)
    found = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=doc(uri), range=t.Range(start=at(20, 1), end=at(29, 1)),
        context=t.CodeActionContext(diagnostics=[])))
    assert [(a.edit.changes[uri][0].range.start, a.edit.changes[uri][0].new_text) for a in found] == [
        (at(20, 69), "-[disease_phenotype_positive]->"), (at(29, 29), '"../data/eval/medqa_test.jsonl"')]


async def test_hover_on_a_keywords_value(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "tiny.flm")
    assert (await hover_at(client, uri, 24, 42)).startswith("**near** (same_type() distractors)\n\nprefer distractors")


async def test_rename_to_a_taken_name_is_a_request_failure(client: LanguageClient, project: Path):
    uri = await open_doc(client, project, "child.flm")
    with pytest.raises(JsonRpcException) as failure:
        await client.text_document_rename_async(t.RenameParams(
            text_document=doc(uri), position=at(5, 24), new_name="teacher"))
    assert failure.value.code == t.LSPErrorCodes.RequestFailed
    assert failure.value.message == "'teacher' is already declared"
    assert failure.value.data is None  # no traceback


async def test_hostile_files_do_not_break_other_documents(client: LanguageClient, project: Path):
    tiny = await open_doc(client, project, "tiny.flm")
    lr = t.HoverParams(text_document=doc(tiny), position=at(62, 3))
    assert (await client.text_document_hover_async(lr)).contents.value.startswith("**lr** (stage)")
    common = await open_doc(client, project, "common.flm")  # scans every .flm for its includer
    assert [d.message.splitlines()[0] for d in client.diagnostics[common]] == [
        "invalid regular expression: unterminated character set at position 0"]
    uber = await open_doc(client, project, "uber.flm")
    assert client.diagnostics[uber]  # located, whatever the parser says
    big = await open_doc(client, project, "big.flm")  # answered: checking it is bounded
    assert any("18446744073709551617" in d.message for d in client.diagnostics[big])
    assert (await client.text_document_hover_async(lr)).contents.value.startswith("**lr** (stage)")
    published = json.dumps({uri: [d.message for d in ds] for uri, ds in client.diagnostics.items()})
    assert SECRET not in published
