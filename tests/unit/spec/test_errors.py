"""Bad specs: each gives one located error whose first line (and hint) users read exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.compiler import check_experiment, load_experiment
from fleming_dsl.errors import Diagnostic, SpecError
from fleming_dsl.ir import Span
from fleming_dsl.spec.grammar import SYNTAX_ERRORS
from fleming_dsl.spec.parser import parse_module


def R(old: str, new: str) -> str:  # noqa: N802 - reads like the edit it makes
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new, 1)


def first_error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    return info.value


# (case, spec text, first rendered line, hint or None)
BAD_SPECS = [
    ('undefined_teacher', R("with teacher using ask\n", "with teachr using ask\n"),
     "spec.flm:9:26: error: undefined name 'teachr' (the teacher)",
     "did you mean 'teacher'?"),
    ('undefined_graph', R("sample s from kg", "sample s from kgg"),
     "spec.flm:5:15: error: undefined name 'kgg' (the graph)",
     "did you mean 'kg'?"),
    ('wrong_kind_init', R("sft(base, clean)", "sft(train, clean)"),
     "spec.flm:13:18: error: 'train' is a dataset, but the init model must be a model or a stage",
     'declared model or stage names: base, teacher, sft1, rl'),
    ('wrong_kind_benchmark', R("on [test]", "on [rl]"),
     "spec.flm:15:19: error: 'rl' is a stage, but a benchmark must be a dataset",
     'declared dataset names: train, test'),
    ('duplicate', R("dataset test =", "dataset train ="),
     "spec.flm:7:9: error: 'train' is already declared (as a dataset at spec.flm:6)",
     'give it another name, or drop one of them'),
    ('cycle', R("sft(base, clean)", "sft(rl, clean)"),
     "spec.flm:13:7: error: 'sft1' depends on itself: sft1 -> rl -> sft1",
     'a stage starts from a model or an earlier stage'),
    ('unknown_option', R("{ lr = 1e-4 }", "{ lr = 1e-4  epoch = 2 }"),
     "spec.flm:13:44: error: unknown option 'epoch' for stage sft1",
     "did you mean 'epochs'?"),
    ('unknown_option_backend', R("model teacher = template()", 'model teacher = hf("x") { backend = vllm(tpp = 8) }'),
     "spec.flm:3:42: error: unknown option 'tpp' for vllm()",
     "did you mean 'tp'?"),
    ('lr_zero', R("{ lr = 1e-4 }", "{ lr = 0 }"),
     "spec.flm:13:38: error: 'lr' must be > 0, got 0.0",
     None),
    ('hops_reversed', R("count = 10 }", "count = 10  hops = 3..2 }"),
     "spec.flm:5:75: error: 'hops' range is empty: 3 > 2",
     'write 2..3'),
    ('thresholds_unordered', R("easy = pass >= 0.75  moderate = pass >= 0.25", "easy = pass >= 0.25  moderate = pass >= 0.75"),
     'spec.flm:11:60: error: bucket thresholds must be ordered easy > moderate, got easy = 0.25, moderate = 0.75',
     None),
    ('threshold_range', R("easy = pass >= 0.75", "easy = pass >= 1.5"),
     "spec.flm:11:60: error: 'easy' threshold must be in (0, 1], got 1.5",
     None),
    ('generations_one', R("generations = 2  batch = 4", "generations = 1  batch = 4"),
     "spec.flm:14:71: error: 'generations' must be >= 2, got 1",
     None),
    ('batch_divisible', R("generations = 2  batch = 4", "generations = 3  batch = 4"),
     "spec.flm:14:57: error: stage rl: batch x grad_accum x ranks = 4 x 1 x 1 = 4 is not a multiple of generations (3)",
     "TRL's GRPO splits each generation batch over all ranks in whole groups of generations; use batch = 6"),
    ('clues_zero', R("count = 10 }", "count = 10  clues = 0 }"),
     "spec.flm:5:76: error: 'clues' must be >= 1, got 0",
     None),
    ('count_zero', R("count = 10", "count = 0"),
     "spec.flm:5:64: error: 'count' must be > 0, got 0",
     None),
    ('votes_agree', R("{ format ", "{ format  verify_label(votes = 2, agree = 3) "),
     "spec.flm:11:57: error: 'agree' (3) cannot exceed 'votes' (2)",
     None),
    ('missing_template', R('template("ask.j2")', 'template("asks.j2")'),
     'spec.flm:8:23: error: template file not found: asks.j2',
     'paths are relative to the folder of spec.flm'),
    ('missing_data_folder_exists', R('mcq("test.jsonl")', 'mcq("tests.jsonl")'),
     'spec.flm:7:20: error: data file not found: tests.jsonl',
     "did you mean 'test.jsonl'?"),
    ('unknown_dataset_format', R('mcq("test.jsonl")', 'medqaa("test.jsonl")'),
     "spec.flm:7:16: error: unknown dataset format 'medqaa'",
     "did you mean 'medqa'?"),
    ('unknown_model_source', R("tiny(hidden = 32)", 'hugging("x")'),
     "spec.flm:2:14: error: unknown model source 'hugging'",
     None),
    ('unknown_filter_step', R("{ format ", "{ formatt "),
     "spec.flm:11:25: error: unknown filter step 'formatt'",
     "did you mean 'format'?"),
    ('unknown_reward', R("choice_match(tag", "choice_mach(tag"),
     "spec.flm:12:18: error: unknown reward function 'choice_mach'",
     "did you mean 'choice_match'?"),
    ('bad_regex', R('reward correct = choice_match(tag = "answer")', 'reward correct = regex("[A-")'),
     'spec.flm:12:24: error: invalid regular expression: unterminated character set at position 0',
     None),
    ('wrong_type_string', R("{ lr = 1e-4 }", '{ lr = "fast" }'),
     "spec.flm:13:38: error: 'lr' must be a number, got a string",
     None),
    ('bad_enum', R("{ lr = 1e-4 }", "{ lr = 1e-4  deepspeed = zero4 }"),
     "spec.flm:13:56: error: 'deepspeed' must be one of none, zero2, zero3, zero3_offload; got 'zero4'",
     "did you mean 'zero3'?"),
    ('bad_duration', R("{ lr = 1e-4 }", '{ lr = 1e-4  resources { time = "soon" } }'),
     "spec.flm:13:63: error: 'time' must be a duration such as 30m, 48h or 2d, got a string",
     None),
    ('sft_rewards', R("{ lr = 1e-4 }", "{ lr = 1e-4  rewards = correct }"),
     "spec.flm:13:44: error: 'rewards' applies only to grpo stages",
     None),
    ('grpo_no_rewards', R("rewards = correct  generations", "generations"),
     'spec.flm:14:7: error: grpo stage rl needs rewards',
     'rewards = 1.0 * correct + 0.1 * form'),
    ('teacher_no_backend', R("with teacher using ask\n", "with base using ask\n"),
     "spec.flm:9:26: error: the teacher 'base' has no generation backend",
     'give model base a block such as { backend = vllm(tp = 8) } or { backend = transformers() }'),
    ('unknown_bucket', R("clean[easy]", "clean[easyy]"),
     "spec.flm:14:29: error: 'bucket' must be one of easy, moderate, hard; got 'easyy'",
     "did you mean 'easy'?"),
    ('choice_match_accept', R('choice_match(tag = "answer")', 'choice_match(tag = "answer", accept = txt)'),
     "spec.flm:12:56: error: 'accept' must be one of letter, text; got 'txt'",
     "did you mean 'text'?"),
    ('choice_match_partial', R('choice_match(tag = "answer")', 'choice_match(tag = "answer", partial = 1.5)'),
     "spec.flm:12:57: error: 'partial' must be a number in [0, 1), got 1.5",
     "the right option earns 1.0; partial is what naming another option earns"),
    ('evaluate_accept', R("evaluate [rl] on [test]", "evaluate [rl] on [test] { accept = texts }"),
     "spec.flm:15:36: error: 'accept' must be one of letter, text; got 'texts'",
     "did you mean 'text'?"),
    ('synthesize_options', R("with teacher using ask\n", "with teacher using ask { options = 1 }\n"),
     "spec.flm:9:56: error: 'options' must be in 2..26, got 1",
     None),
    ('synthesize_variants', R("with teacher using ask\n", "with teacher using ask { variants = 0 }\n"),
     "spec.flm:9:57: error: 'variants' must be >= 1, got 0",
     None),
    ('sweep_outside_stage', R("count = 10 }", "count = 10  sweep count in [1, 2] }"),
     'spec.flm:5:68: error: sweeps are allowed only in stage blocks',
     None),
    ('sweep_empty', R("{ lr = 1e-4 }", "{ sweep lr in [] }"),
     'spec.flm:13:45: error: a sweep needs a non-empty list of values: sweep lr in [1e-5, 5e-6]',
     None),
    ('sweep_twice', R("{ lr = 1e-4 }", "{ sweep lr in [1, 2]  sweep lr in [3] }"),
     "spec.flm:13:59: error: 'lr' is swept twice in stage sft1",
     'list all its values in one sweep'),
    ('sweep_value_twice', R("{ lr = 1e-4 }", "{ sweep lr in [1e-5, 2e-5, 1e-05, 3e-5] }"),
     "spec.flm:13:46: error: sweep 'lr' lists a value twice",
     None),
    ('unnamed_evaluation_clash', R('dataset test = mcq("test.jsonl")', 'dataset test = mcq("test.jsonl")  dataset eval = mcq("test.jsonl")'),
     "spec.flm:15:1: error: 'eval' is already declared (as a dataset at spec.flm:7)",
     'name this evaluation: evaluate ... on ... as <name>'),
    ('buckets_without_difficulty', R("clean[easy]", "cot[easy]"),
     "spec.flm:14:23: error: 'cot' has no difficulty buckets: only a filter with a difficulty step has easy/moderate/hard items",
     'train on cot itself, or add difficulty(...) to a filter'),
    ('sft_on_miner', R("sft(base, clean)", "sft(base, mine_hard(clean, pass < 0.5))"),
     "spec.flm:13:24: error: mine_hard() mines data for grpo stages; an sft stage trains on a dataset",
     None),
    ('option_twice', R("{ lr = 1e-4 }", "{ lr = 1e-4  lr = 2e-4 }"),
     "spec.flm:13:44: error: option 'lr' is given twice",
     'first given at line 13'),
    ('missing_header', R('experiment "t" { seed = 1 }\n', ''),
     'spec.flm:1:1: error: a spec needs an experiment header: experiment "name" { ... }',
     None),
    ('bad_experiment_name', R('experiment "t"', 'experiment "t/x"'),
     "spec.flm:1:12: error: experiment name 't/x' must be letters, digits, '.', '_' or '-'",
     'it names the folder generated/<experiment>/'),
    ('include_missing', R('experiment "t" { seed = 1 }\n', 'experiment "t" { seed = 1 }\ninclude "nope.flm"\n'),
     'spec.flm:2:9: error: included file not found: nope.flm',
     'paths are relative to the folder of spec.flm'),
    ('extends_missing', R('experiment "t" {', 'experiment "t" extends "base.flm" {'),
     'spec.flm:1:24: error: base spec file not found: base.flm',
     'paths are relative to the folder of spec.flm'),
    ('drop_without_base', R('evaluate [rl] on [test]', 'drop rl'),
     'spec.flm:15:1: error: drop is only allowed in a spec that extends another',
     'experiment "name" extends "base.flm" { ... }'),
    ('unknown_cluster_option', MINIMAL + 'cluster { acount = "x" }\n',
     "spec.flm:16:11: error: unknown option 'acount' for the cluster block",
     "did you mean 'account'?"),
    ('syntax_missing_eq', R("model base = tiny", "model base tiny"),
     "spec.flm:2:12: error: missing '=' after the declared name",
     None),
    ('syntax_unterminated', R('mcq("test.jsonl")', 'mcq("test.jsonl)'),
     'spec.flm:7:20: error: unterminated string',
     'close it with " on the same line'),
    ('mine_hard_ratio', R("clean[easy]) {", "mine_hard(clean, pass < 0.5, ratio = 2)) { max_steps = 4"),
     "spec.flm:14:60: error: 'ratio' must be solved:failed such as 1:2, got a number",
     None),
    ('until_not_plateau', R("batch = 4 }", "batch = 4  until = 5 }"),
     "spec.flm:14:93: error: 'until' must be plateau(metric, patience = N)",
     None),
    ('workdir_not_string', R("seed = 1", "seed = 1  workdir = runs"),
     "spec.flm:1:38: error: 'workdir' must be a string, got a name",
     'write it in quotes: "runs"'),
    ('distractors_policy', R("count = 10 }", "count = 10  distractors = other_type(k = 3) }"),
     "spec.flm:5:82: error: unknown distractor policy 'other_type'",
     "did you mean 'same_type'?"),
    ('wrong_kind_decontaminate', R("{ format ", "{ format  decontaminate(against = [base]) "),
     "spec.flm:11:58: error: 'base' is a model, but an evaluation set to decontaminate against must be a dataset",
     'declared dataset names: train, test'),
    ('openai_missing_model', R("model teacher = template()", 'model teacher = openai(base_url = "http://x", api_key_env = "K")'),
     'spec.flm:3:17: error: openai() needs model = "<served model name>"',
     None),
    ('evaluate_undefined_target', R("evaluate [rl]", "evaluate [rl3]"),
     "spec.flm:15:11: error: undefined name 'rl3' (a model to evaluate)",
     "did you mean 'rl'?"),
    ('shards_zero', R("with teacher using ask\n", "with teacher using ask { shards = 0 }\n"),
     "spec.flm:9:55: error: 'shards' must be >= 1, got 0",
     None),
    ('shards_word', R("with teacher using ask\n", "with teacher using ask { shards = many }\n"),
     "spec.flm:9:55: error: 'shards' must be a whole number or auto; got 'many'",
     None),
    ('auto_without_size', R("with teacher using ask\n", "with teacher using ask { shards = auto }\n"),
     'spec.flm:9:55: error: shards = auto in synthesize q needs items_per_shard = <items per job>',
     'for example: shards = auto  items_per_shard = 5_000'),
    ('size_without_auto', R("with teacher using ask\n",
                            "with teacher using ask { shards = 4  items_per_shard = 100 }\n"),
     "spec.flm:9:58: error: 'items_per_shard' applies only with shards = auto",
     'remove it, or write shards = auto instead of shards = 4'),
    ('auto_unbounded', R("distill cot from [q, train] with teacher using ask",
                         "distill cot from [q, train] with teacher using ask { shards = auto  items_per_shard = 5 }"),
     "spec.flm:10:63: error: shards = auto needs an upper bound on the items, but dataset 'train' declares no limit",
     'write shards = <N>, or give dataset train a limit = <rows>'),
    ('filter_shards_disagree', R("{ format  difficulty(model = base)",
                                 "{ format  verify_label(model = teacher, shards = 2)  difficulty(model = base, shards = 3)"),
     'spec.flm:11:101: error: filter clean: verify_label and difficulty run in the same shard jobs, so they take one shard count; got [2, 3]',
     'give both the same shards = N, or write it on one'),
]


def test_minimal_spec_is_valid(tmp_path: Path) -> None:
    exp = load_experiment(write_project(tmp_path), project_root=tmp_path)
    assert [s.name for s in exp.stages] == ["sft1", "rl"]


@pytest.mark.parametrize("case,text,first_line,hint", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec(tmp_path: Path, case: str, text: str, first_line: str, hint: str | None) -> None:
    err = first_error(tmp_path, text)
    diag = err.diagnostics[0]
    assert diag.first_line() == first_line
    assert diag.hint == hint
    assert str(err).splitlines()[0] == first_line
    assert "Traceback" not in str(err)


def test_at_least_thirty_distinct_bad_specs() -> None:
    assert len({c[2] for c in BAD_SPECS}) >= 30


def test_rendering_has_source_line_caret_expected_and_hint(tmp_path: Path) -> None:
    err = first_error(tmp_path, R("{ lr = 1e-4 }", "{ lr = 1e-4  epoch = 2 }"))
    assert str(err).splitlines() == [
        "spec.flm:13:44: error: unknown option 'epoch' for stage sft1",
        "  stage sft1 = sft(base, clean) { lr = 1e-4  epoch = 2 }",
        "                                             ^^^^^",
        "  expected one of batch, bf16, deepspeed, epochs, grad_accum, gradient_checkpointing, "
        "logging_steps, lora, lr, lr_scheduler_type, max_grad_norm, max_length, max_steps, packing, "
        "save_steps, until, warmup_ratio, warmup_steps, weight_decay",
        "  hint: did you mean 'epochs'?",
    ]


def test_all_check_errors_are_reported_together(tmp_path: Path) -> None:
    text = R("with teacher using ask\n", "with teachr using ask\n").replace("sample s from kg", "sample s from kgg")
    err = first_error(tmp_path, text)
    assert [d.first_line() for d in err.diagnostics] == [
        "spec.flm:5:15: error: undefined name 'kgg' (the graph)",
        "spec.flm:9:26: error: undefined name 'teachr' (the teacher)",
    ]


def test_many_errors_are_capped(tmp_path: Path) -> None:
    text = MINIMAL + "".join(f"evaluate [nope{i}] on [test] as e{i}\n" for i in range(30))
    err = first_error(tmp_path, text)
    assert len(err.diagnostics) == 30
    assert str(err).splitlines()[-1] == "... and 10 more errors"


@pytest.mark.parametrize("message,example", [(m, e) for m, examples in SYNTAX_ERRORS.items()
                                             for e in examples])
def test_syntax_error_table(message: str, example: str) -> None:
    """Every example in the table of known mistakes is recognised as its own mistake."""
    with pytest.raises(SpecError) as info:
        parse_module(example, "x.flm")
    (diag,) = info.value.diagnostics
    assert diag.message == message
    assert diag.span is not None and diag.span.file == "x.flm"


def test_unknown_token_fallback_names_tokens_readably() -> None:
    with pytest.raises(SpecError) as info:
        parse_module("cluster { account = \"a\" ) }", "x.flm")
    assert str(info.value).splitlines()[0] == "x.flm:1:25: error: unexpected ')'"
    assert info.value.diagnostics[0].expected == "one of 'sweep', '}', a name"


def test_unexpected_character(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_module("model m = hf(\"x\") @", "x.flm")
    assert str(info.value).splitlines()[:3] == [
        "x.flm:1:19: error: unexpected character '@'",
        "  model m = hf(\"x\") @",
        "                    ^",
    ]


def test_external_data_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """A data file whose folder does not exist here is external (staged on the cluster)."""
    text = R('mcq("test.jsonl")', 'mcq("data/benchmarks/test.jsonl")')
    exp, warnings = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert exp.datasets[1].path == "data/benchmarks/test.jsonl"
    assert [w.first_line() for w in warnings] == [
        "spec.flm:7:20: warning: data file not found: data/benchmarks/test.jsonl "
        "(treated as external data: its folder does not exist here either)"]


def test_missing_file_rule_on_temp_dirs(tmp_path: Path) -> None:
    from fleming_dsl.check.files import FileRef, missing_file
    from fleming_dsl.spec import ast

    span = Span(file="s.flm", line=1, col=1, end_line=1, end_col=5)
    (tmp_path / "have").mkdir()
    (tmp_path / "have" / "a.jsonl").write_text("")
    ok = FileRef(ast.Str("have/a.jsonl", span), "data")
    typo = FileRef(ast.Str("have/b.jsonl", span), "data")
    external = FileRef(ast.Str("far/b.jsonl", span), "data")
    template = FileRef(ast.Str("far/t.j2", span), "template")
    assert missing_file(ok, tmp_path) is None
    assert missing_file(typo, tmp_path).severity == "error"
    assert missing_file(external, tmp_path).severity == "warning"
    assert missing_file(template, tmp_path).severity == "error"


def test_include_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.flm").write_text('include "b.flm"\n')
    (tmp_path / "b.flm").write_text('include "a.flm"\n')
    text = MINIMAL + 'include "a.flm"\n'
    err = first_error(tmp_path, text)
    assert err.diagnostics[0].first_line() == "b.flm:1:9: error: included cycle: a.flm -> b.flm -> a.flm"


def test_syntax_error_in_included_file_points_into_it(tmp_path: Path) -> None:
    (tmp_path / "more.flm").write_text('dataset extra = mcq("test.jsonl"\n')
    err = first_error(tmp_path, MINIMAL + 'include "more.flm"\n')
    assert err.diagnostics[0].first_line() == "more.flm:1:33: error: unclosed '(': missing ')'"
    assert str(err).splitlines()[1] == '  dataset extra = mcq("test.jsonl"'


def test_diagnostic_without_span_renders() -> None:
    assert str(SpecError([Diagnostic("no such spec", None)])) == "error: no such spec"


def test_unreadable_spec_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(tmp_path / "nope.flm", project_root=tmp_path)
    assert str(info.value) == "nope.flm:1:1: error: cannot read nope.flm: No such file or directory"
    (tmp_path / "bin.flm").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError) as info:
        load_experiment(tmp_path / "bin.flm", project_root=tmp_path)
    assert str(info.value).splitlines()[0] == \
        "bin.flm:1:1: error: the file is not UTF-8: byte 0xff cannot start a character here"


def test_unused_inputs_are_warnings(tmp_path: Path) -> None:
    text = MINIMAL + 'dataset spare = mcq("train.jsonl")\n'
    exp, warnings = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert [w.first_line() for w in warnings] == [
        "spec.flm:16:9: warning: dataset 'spare' is declared but never used"]
    assert "spare" in exp.declarations()
