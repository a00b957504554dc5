"""The front end on valid specs: what the text means once lowered to the IR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flm_fixtures import FILES, MINIMAL, write_project
from paths import REPO

from fleming_dsl.compiler import check_experiment, load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.spec import ast
from fleming_dsl.spec.grammar import lark_parser
from fleming_dsl.spec.parser import parse_module


def load(tmp_path: Path, text: str):
    return load_experiment(write_project(tmp_path, text), project_root=tmp_path)


def stage_block(extra: str) -> str:
    return MINIMAL.replace("{ lr = 1e-4 }", "{ lr = 1e-4  " + extra + " }", 1)


# ---------------------------------------------------------------- the shipped specs


def test_tiny_spec_lowers_to_the_recipe() -> None:
    exp = load_experiment(REPO / "specs" / "tiny.flm", project_root=REPO)
    assert (exp.name, exp.seed, exp.workdir, exp.spec) == ("tiny", 7, "runs/tiny", "specs/tiny.flm")
    teacher = exp.declarations()["teacher"]
    assert (teacher.source, teacher.ref, teacher.backend.kind, teacher.backend.temperature) == \
        ("local", "", "template", 0.0)
    assert exp.models[0].tiny.vocab == 4000
    assert exp.graphs[0].paths == ("data/medkg/kg.csv",)
    sample = exp.samples[0]
    assert (sample.start_type, sample.hops_min, sample.hops_max, sample.mask) == ("effect/phenotype", 2, 2, 1)
    assert sample.steps[0].node_type == "disease"
    assert exp.prompts[0].path == "prompts/vignette.j2"
    assert [s.step for s in exp.filters[0].steps] == \
        ["format", "verify_label", "dedupe", "decontaminate", "difficulty"]
    rl1, rl2 = exp.stages[1], exp.stages[2]
    assert rl1.data.dataset == "rl_pool" and not rl1.data.buckets and rl1.plateau is None
    assert [(t.reward, t.weight) for t in rl1.rewards] == [("correct", 1.0), ("form", 0.2), ("brevity", 0.1)]
    assert (rl2.data.miner.pool, rl2.data.miner.pass_below, rl2.data.miner.solved_ratio,
            rl2.data.miner.failed_ratio, rl2.data.miner.estimate) == ("rl_pool", 0.5, 1.0, 2.0, 64)
    assert exp.evaluations[0].targets == ("base", "cold_start", "rl1", "rl2")


@pytest.mark.parametrize("spec", sorted(p.name for p in (REPO / "specs").glob("*.flm")
                                        if not p.name.startswith(".")))
def test_every_shipped_spec_checks(spec: str) -> None:
    exp, warnings = check_experiment(REPO / "specs" / spec, project_root=REPO)
    assert all(w.severity == "warning" for w in warnings)
    json.loads(exp.model_dump_json())  # JSON-serialisable


def test_7b_spec_sweeps_stage_one_and_fans_out() -> None:
    exp = load_experiment(REPO / "specs" / "fleming_r1_7b.flm", project_root=REPO)
    assert exp.name == "fleming-r1-7b" and exp.workdir == "runs/fleming-r1-7b"
    assert [(s.name, s.init, s.sweep) for s in exp.stages] == [
        ("cold_start", "base", {}),
        ("rl1_beta_0p001", "cold_start", {"beta": 0.001}),
        ("rl1_beta_0p0", "cold_start", {"beta": 0.0}),
        ("rl2_beta_0p001", "rl1_beta_0p001", {"beta": 0.001}),
        ("rl2_beta_0p0", "rl1_beta_0p0", {"beta": 0.0}),
    ]
    assert exp.stages[1].training.beta == 0.001 and exp.stages[2].training.beta == 0.0
    assert exp.stages[4].training.beta == 0.001  # rl2's own beta: the sweep only names the branch
    assert exp.evaluations[0].targets == ("base", "cold_start", "rl1_beta_0p001", "rl1_beta_0p0",
                                          "rl2_beta_0p001", "rl2_beta_0p0")
    assert len(exp.evaluations[0].benchmarks) == 9
    teacher = exp.declarations()["teacher"]
    assert (teacher.backend.kind, teacher.backend.tensor_parallel) == ("vllm", 8)
    rl1 = exp.stages[1]
    assert (rl1.training.deepspeed, rl1.resources.gpus, rl1.resources.time_min, rl1.resources.mem_mb) == \
        ("zero3", 8, 48 * 60, 900 * 1024)
    assert exp.cluster.account == "medreason" and exp.cluster.gpu_partition == "gpu"
    assert exp.samples[0].count == 50_000


def test_32b_spec_drops_the_cold_start() -> None:
    exp = load_experiment(REPO / "specs" / "fleming_r1_32b.flm", project_root=REPO)
    assert exp.declarations()["base"].ref == "Qwen/Qwen3-32B"
    assert [(s.name, s.init) for s in exp.stages] == [("rl1", "base"), ("rl2", "rl1")]
    assert exp.stages[0].resources.nodes == 4
    assert exp.evaluations[0].targets == ("base", "rl1", "rl2")
    assert exp.spec == "specs/fleming_r1_32b.flm"
    # declarations from the base keep the base's file in their span
    assert exp.declarations()["teacher"].span.file == "specs/fleming_r1_base.flm"
    assert exp.declarations()["base"].span.file == "specs/fleming_r1_32b.flm"


# ---------------------------------------------------------------- values and units


@pytest.mark.parametrize("written,mem_mb,time_min", [
    ("mem = 80GB  time = 48h", 80 * 1024, 48 * 60),
    ("mem = 512MB  time = 30m", 512, 30),
    ('mem = "2GB"  time = "2d"', 2048, 2 * 24 * 60),
    ("mem = 1_024MB  time = 90m", 1024, 90),
    ("mem = 1TB  time = 90s", 1024 * 1024, 2),
])
def test_sizes_and_durations(tmp_path: Path, written: str, mem_mb: int, time_min: int) -> None:
    exp = load(tmp_path, stage_block(f"resources {{ {written} }}"))
    res = exp.stages[0].resources
    assert (res.mem_mb, res.time_min) == (mem_mb, time_min)


def test_numbers_with_underscores_and_exponents(tmp_path: Path) -> None:
    exp = load(tmp_path, MINIMAL.replace("count = 10", "count = 20_000").replace("lr = 1e-4", "lr = 2.5E-5"))
    assert exp.samples[0].count == 20_000 and exp.stages[0].training.lr == 2.5e-5


def test_metapath_any_relation_and_any_type(tmp_path: Path) -> None:
    spec = write_project(tmp_path, MINIMAL.replace("disease -[causes]-> symptom",
                                                   '* --> "gene/protein" -["off-label use"]-> drug'))
    (tmp_path / "kg.tsv").write_text("TP53\tgene/protein\toff-label use\taspirin\tdrug\n")
    exp = load_experiment(spec, project_root=tmp_path)
    s = exp.samples[0]
    assert s.start_type is None
    assert [(st.relation, st.node_type) for st in s.steps] == [(None, "gene/protein"), ("off-label use", "drug")]
    assert (s.hops_min, s.hops_max) == (2, 2)  # no hops: the path's own length


def test_strings_keep_backslashes_except_escapes() -> None:
    module = parse_module(r'reward r = regex("<think>.*</think>\s*\"x\"\\")', "x.flm")
    (decl,) = module.statements
    assert decl.function.args[0].value == '<think>.*</think>\\s*"x"\\'


def test_keywords_are_names_where_no_keyword_fits(tmp_path: Path) -> None:
    """`model`, `reward` and `sample` are keywords but still usable as option/argument names."""
    module = parse_module("filter f from c { difficulty(model = m, samples = 4) }\n"
                          "stage s = grpo(a, b) { until = plateau(reward, patience = 3) }", "x.flm")
    assert isinstance(module.statements[0], ast.FilterDecl)
    exp = load(tmp_path, MINIMAL.replace("batch = 4 }", "batch = 4  until = plateau(reward, patience = 3) }"))
    assert exp.stages[1].plateau.metric == "reward"


def test_model_sources_and_backends(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    text = MINIMAL.replace("model teacher = template()", "\n".join([
        'model teacher = openai(base_url = "http://localhost:8000/v1", api_key_env = "OPENAI_API_KEY", model = "gpt-4o-mini") { temperature = 0.2 }',
        'model judge = hf("meta/llama") { backend = transformers()  max_tokens = 64 }',
        'model mine = local("weights") { backend = vllm(tp = 2)  timeout = 30s }',
    ]))
    decls = load(tmp_path, text).declarations()
    t = decls["teacher"]
    assert (t.source, t.ref, t.backend.kind, t.backend.api_key_env, t.backend.base_url, t.backend.temperature) == \
        ("hf", "gpt-4o-mini", "openai", "OPENAI_API_KEY", "http://localhost:8000/v1", 0.2)
    assert (decls["judge"].backend.kind, decls["judge"].backend.max_tokens) == ("transformers", 64)
    assert (decls["mine"].source, decls["mine"].ref, decls["mine"].backend.tensor_parallel,
            decls["mine"].backend.timeout_s) == ("local", "weights", 2, 30.0)


def test_graph_formats_and_dataset_options(tmp_path: Path) -> None:
    for f, text in (("nodes.tsv", "id\tname\tkind\n"), ("edges.sif", "source\tmetaedge\ttarget\n"),
                    ("x.jsonl", "")):
        (tmp_path / f).write_text(text)
    text = MINIMAL + ('graph het = hetionet("nodes.tsv", "edges.sif")\n'
                      'dataset mp = mmlu_pro("x.jsonl") { split = "health"  limit = 100 }\n')
    exp = load(tmp_path, text)
    assert exp.graphs[1].format == "hetionet" and exp.graphs[1].paths == ("nodes.tsv", "edges.sif")
    assert (exp.datasets[2].format, exp.datasets[2].split, exp.datasets[2].limit) == ("mmlu_pro", "health", 100)


def test_lora_block_and_evaluate_options(tmp_path: Path) -> None:
    text = stage_block("lora { r = 8  alpha = 16 }").replace(
        "evaluate [rl] on [test]", "evaluate [base, rl] on [test] as final { samples = 4  temperature = 0.6  limit = 50 }")
    exp = load(tmp_path, text)
    assert (exp.stages[0].training.lora.r, exp.stages[0].training.lora.alpha) == (8, 16)
    ev = exp.evaluations[0]
    assert (ev.name, ev.targets, ev.samples, ev.temperature, ev.limit) == ("final", ("base", "rl"), 4, 0.6, 50)


# ---------------------------------------------------------------- sweeps


def test_two_sweeps_make_a_grid_and_downstream_fans_out(tmp_path: Path) -> None:
    exp = load(tmp_path, MINIMAL.replace("{ lr = 1e-4 }", "{ sweep lr in [1e-4, 0.5]  sweep epochs in [1, 2] }"))
    names = [s.name for s in exp.stages]
    assert names == ["sft1_lr_0p0001_epochs_1", "sft1_lr_0p0001_epochs_2", "sft1_lr_0p5_epochs_1",
                     "sft1_lr_0p5_epochs_2", "rl_lr_0p0001_epochs_1", "rl_lr_0p0001_epochs_2",
                     "rl_lr_0p5_epochs_1", "rl_lr_0p5_epochs_2"]
    assert exp.stages[3].sweep == {"lr": 0.5, "epochs": 2}
    assert exp.stages[3].training.epochs == 2.0
    assert exp.stages[7].init == "sft1_lr_0p5_epochs_2" and exp.stages[7].sweep == {"lr": 0.5, "epochs": 2}
    assert exp.evaluations[0].targets == tuple(names[4:])


def test_sweep_of_an_unknown_option_is_reported(tmp_path: Path) -> None:
    from fleming_dsl.errors import SpecError
    with pytest.raises(SpecError) as info:
        load(tmp_path, stage_block("sweep lrr in [1, 2]"))
    assert info.value.diagnostics[0].first_line().endswith("error: unknown option 'lrr' for stage sft1")


# ---------------------------------------------------------------- include / extends / paths


def test_include_extends_override_and_drop(tmp_path: Path) -> None:
    write_project(tmp_path, MINIMAL, name="base.flm")
    (tmp_path / "shared.flm").write_text('dataset extra = mcq("train.jsonl")\ncluster { account = "lab" }\n')
    child = tmp_path / "child.flm"
    child.write_text('experiment "child" extends "base.flm" { workdir = "out" }\n'
                     'include "shared.flm"\n'
                     'model base = hf("Qwen/Qwen3-32B")\n'
                     'drop sft1\n'
                     'stage rl = grpo(base, clean[easy]) { rewards = correct  generations = 2  batch = 2 }\n'
                     'cluster { partition = "batch" }\n')
    exp = load_experiment(child, project_root=tmp_path)
    assert (exp.name, exp.seed, exp.workdir) == ("child", 1, "out")  # seed from the base header
    assert exp.models[0].ref == "Qwen/Qwen3-32B" and exp.models[0].span.file == "child.flm"
    assert [(s.name, s.init) for s in exp.stages] == [("rl", "base")]
    assert [d.name for d in exp.datasets] == ["train", "test", "extra"]
    assert (exp.cluster.account, exp.cluster.partition) == ("lab", "batch")


def test_paths_are_relative_to_the_spec_and_stored_project_relative(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    for f in ("kg.tsv", "train.jsonl", "test.jsonl"):
        (tmp_path / "data" / f).write_text(FILES[f])
    (tmp_path / "specs" / "ask.j2").write_text(FILES["ask.j2"])
    text = (MINIMAL.replace('"kg.tsv"', '"../data/kg.tsv"').replace('"train.jsonl"', '"../data/train.jsonl"')
            .replace('"test.jsonl"', '"../data/test.jsonl"'))
    (tmp_path / "specs" / "s.flm").write_text(text)
    exp = load_experiment(tmp_path / "specs" / "s.flm", project_root=tmp_path)
    assert exp.graphs[0].paths == ("data/kg.tsv",)
    assert exp.prompts[0].path == "specs/ask.j2"
    assert (exp.spec, exp.workdir) == ("specs/s.flm", "runs/t")


# ---------------------------------------------------------------- properties of the front end


def test_text_can_stand_in_for_the_file(tmp_path: Path) -> None:
    write_project(tmp_path)
    exp = load_experiment(tmp_path / "unsaved.flm", project_root=tmp_path,
                          text=MINIMAL.replace('"t"', '"unsaved"'))
    assert (exp.name, exp.spec, exp.stages[0].span.file) == ("unsaved", "unsaved.flm", "unsaved.flm")


def test_loading_is_deterministic() -> None:
    a = load_experiment(REPO / "specs" / "fleming_r1_7b.flm", project_root=REPO)
    b = load_experiment(REPO / "specs" / "fleming_r1_7b.flm", project_root=REPO)
    assert a.model_dump_json() == b.model_dump_json()


def test_parser_is_built_once() -> None:
    assert lark_parser() is lark_parser()


def test_front_end_imports_nothing_heavy() -> None:
    code = ("import sys; from fleming_dsl.compiler import load_experiment; "
            "load_experiment('specs/tiny.flm'); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'vllm', 'numba', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- lark's contextual lexer, decided


def test_a_keyword_is_a_whole_word() -> None:
    """`modelx` is one name, never `model x` (lark's contextual lexer once split it)."""
    with pytest.raises(SpecError) as info:
        parse_module('modelx = hf("a")\n', "spec.flm")
    assert str(info.value).splitlines()[0] == (
        "spec.flm:1:1: error: a declaration starts with a keyword: experiment, include, model, "
        "graph, sample, dataset, prompt, synthesize, distill, filter, reward, stage, evaluate, cluster")
    with pytest.raises(SpecError) as info:
        parse_module("sample s fromkg { count = 1 }\n", "spec.flm")
    assert str(info.value).splitlines()[0] == (
        "spec.flm:1:10: error: 'sample' is written: sample NAME from GRAPH { ... }")


def test_a_statement_keyword_after_a_bracket_in_a_block_starts_a_declaration() -> None:
    """The documented rule (grammars/flm.lark, docs/language.md): after `)` or `}` inside a
    block, a statement keyword is read as one, so a block left open is reported there."""
    with pytest.raises(SpecError) as info:
        parse_module('model m = tiny() {\n  resources { gpus = 1 }  model = 2\n}\n', "spec.flm")
    assert str(info.value).splitlines()[0] == (
        "spec.flm:2:27: error: a declaration cannot start inside a block: close the block with '}' first")
    module = parse_module('model m = tiny() {\n  gpus = 1  model = 2\n}\n', "spec.flm")
    assert [o.key.name for o in module.statements[0].block.options()] == ["gpus", "model"]


@pytest.mark.parametrize("text, first", [
    ("Über = 3\n", "spec.flm:1:1: error: unexpected character 'Ü'"),
    ('éxperiment "x" {}\n', "spec.flm:1:1: error: unexpected character 'é'"),
    # the search for an unclosed block reads lines that start with a non-ASCII letter too
    ('experiment "x" {\n  seed = 1\nÜber = 3\nmodel m = hf("x")\n',
     "spec.flm:3:1: error: unexpected character 'Ü'"),
    ('experiment "x" {\n  seed = 1\néxperiment\nmodel m = hf("x")\n',
     "spec.flm:3:1: error: unexpected character 'é'"),
    ('experiment "x" {\n  seed = 1\nmodel m = hf("x")\nÜber\n',
     "spec.flm:2:11: error: unclosed block: missing '}'"),
])
def test_a_line_starting_with_a_non_ascii_letter_is_a_located_error(text: str, first: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_module(text, "spec.flm")
    assert str(info.value).splitlines()[0] == first


def test_the_tools_read_the_parsers_tokens() -> None:
    """The formatter, the semantic tokens and the highlighter read the parser's own tokens: a
    keyword used as an option name is a NAME there, as the parser read it."""
    from fleming_dsl.spec.grammar import parse_tokens

    tokens, whole = parse_tokens('model m = tiny() { model = 2 }  # note\n')
    assert whole
    assert [(t.type, str(t)) for t in tokens][:2] == [("MODEL", "model"), ("NAME", "m")]
    assert ("NAME", "model") in [(t.type, str(t)) for t in tokens]
    assert tokens[-1].type == "COMMENT"
