"""The check rules (fleming_dsl/check/): each finding of issue 11 that used to pass `fleming check`
and fail hours later in a job, or run silently wrong, is now a located error or a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project
from flm_fixtures import check_errors as errors
from flm_fixtures import check_warnings as warnings
from flm_fixtures import edit as R

from fleming_dsl.check import RULES, after_lowering
from fleming_dsl.check.graph_vocab import cache_dir, vocabulary
from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEMING_CACHE_DIR", str(tmp_path / "cache"))


PUBMEDQA_ROW = {"12345": {"QUESTION": "q?", "CONTEXTS": ["c"], "final_decision": "yes"}}

# (case, spec text, files to write over the fixture's, first rendered line, hint)
CASES = [
    ("hops_past_metapath", R("count = 10 }", "count = 10  hops = 1..3 }"), {},
     "spec.flm:5:75: error: 'hops' goes up to 3, but the metapath has 1 step: a metapath is walked as written",
     "write hops = 1, or write a longer path out step by step"),
    ("mask_outside_path", R("count = 10 }", "count = 10  mask = 2 }"), {},
     "spec.flm:5:75: error: 'mask' index 2 is outside the path: the shortest walk has nodes 0..1",
     "mask = anchor (the start), mask = target (the end), or an index from 0 to 1"),
    ("count_impossible", R("count = 10", "count = 1_000_000_000_000_000_000"), {},
     "spec.flm:5:64: error: 'count' must be at most 100_000_000, got 1_000_000_000_000_000_000",
     "split a larger sample into several sample declarations"),
    ("relation_not_in_graph", R("-[causes]->", "-[cause]->"), {},
     "spec.flm:5:35: error: relation 'cause' is not in graph kg",
     "did you mean 'causes'?"),
    ("node_type_not_in_graph", R("-> symptom", "-> symptoms"), {},
     "spec.flm:5:47: error: node type 'symptoms' is not in graph kg",
     "did you mean 'symptom'?"),
    ("set_and_swept", R("{ lr = 1e-4 }", "{ lr = 1e-4  sweep lr in [1e-5, 1e-6] }"), {},
     "spec.flm:13:33: error: 'lr' is both set and swept in stage sft1",
     "drop 'lr = ...' or add its value to the sweep at line 13"),
    ("plateau_on_sft_reward", R("{ lr = 1e-4 }", "{ lr = 1e-4  until = plateau(reward) }"), {},
     "spec.flm:13:60: error: stage sft1 does not log a metric 'reward'",
     None),
    ("plateau_on_sft_default_metric", R("{ lr = 1e-4 }", "{ lr = 1e-4  until = plateau(patience = 3) }"), {},
     "spec.flm:13:52: error: stage sft1 is sft: its plateau watches the loss",
     "write until = plateau(loss, patience = N)"),
    ("plateau_metric_not_logged", R("batch = 4 }", "batch = 4  until = plateau(loss) }"), {},
     "spec.flm:14:101: error: stage rl does not log a metric 'loss'",
     None),
    ("miner_without_max_steps", R("clean[easy]", "mine_hard(clean, pass < 0.5)"), {},
     "spec.flm:14:23: error: stage rl mines hard samples but sets no max_steps",
     "add max_steps = N: mining re-estimates pass rates every refresh steps until max_steps"),
    ("grpo_true", R("grpo(sft1, clean[easy])", "grpo(true, clean[easy])"), {},
     "spec.flm:14:17: error: the init model of stage rl must be the name of a model or an earlier stage",
     "grpo(base, data) starts from model 'base'"),
    ("sft_false", R("sft(base, clean)", "sft(base, false)"), {},
     "spec.flm:13:24: error: the data of stage sft1 must be a dataset, dataset[easy, moderate] or mine_hard(pool, pass < 0.5)",
     None),
    ("evaluate_template_teacher", R("evaluate [rl]", "evaluate [teacher]"), {},
     "spec.flm:15:11: error: cannot evaluate 'teacher': a template() teacher reads each item's answer, so its accuracy would measure nothing",
     "evaluate stages, or models declared with hf(), local(), tiny() or openai()"),
    ("verify_label_without_judge", R("filter clean from cot { format ", "filter clean from train { format  verify_label "), {},
     "spec.flm:11:35: error: verify_label in filter clean has no judge: no distill or synthesize teacher is upstream of it",
     "name one: verify_label(model = teacher, votes = 5)"),
    ("search_option_without_search", R("[q, train] with teacher using ask", "[q, train] with teacher using ask { evidence = true }"), {},
     "spec.flm:10:54: error: 'evidence' acts only under protocol = search",
     "add protocol = search to this block, or remove 'evidence'"),
    ("rewrite_names_a_model", R("[q, train] with teacher using ask", "[q, train] with teacher using ask { protocol = search  rewrite = teacher }"), {},
     "spec.flm:10:83: error: 'teacher' is a model, but the rewrite prompt must be a prompt",
     "declared prompt names: ask"),
    ("search_prompt_reads_the_label", R("[q, train] with teacher using ask", "[q, train] with teacher using hunt { protocol = search }",
                                        R('prompt ask = template("ask.j2")', 'prompt ask = template("ask.j2")  prompt hunt = template("hunt.j2")')),
     {"hunt.j2": "{{ question }} The answer is {{ answer }} ({{ answer_text }}).\n"},
     "spec.flm:10:48: error: distill cot hides the label (protocol = search), but its prompt 'hunt' reads answer, answer_text",
     "a search prompt is given question, options, facts, strategy and chain (prompts/search.j2)"),
    ("dataset_wrong_format", R('mcq("test.jsonl")', 'medqa("test.json")'), {"test.json": json.dumps(PUBMEDQA_ROW)},
     "spec.flm:7:16: error: dataset test is declared medqa, but the first record of test.json (at 12345) has no field 'question'",
     "its fields (CONTEXTS, QUESTION, final_decision) fit pubmedqa: write pubmedqa(...)"),
    ("split_without_field", R('mcq("test.jsonl")', 'mcq("test.jsonl") { split = "health" }'), {},
     "spec.flm:7:36: error: 'split' does not apply to mcq data: its rows have no field to select on",
     "point the dataset at the file of the split you want"),
]


@pytest.mark.parametrize("case,text,files,first_line,hint", CASES, ids=[c[0] for c in CASES])
def test_rule(tmp_path: Path, case: str, text: str, files: dict, first_line: str, hint: str | None) -> None:
    spec = write_project(tmp_path, text)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(SpecError) as info:
        check_experiment(spec, project_root=tmp_path)
    diag = info.value.diagnostics[0]
    assert diag.first_line() == first_line
    assert diag.hint == hint
    assert "Traceback" not in str(info.value)


def test_batch_shape_is_checked_after_lowering_for_every_sweep_point(tmp_path: Path) -> None:
    err = errors(tmp_path, R("generations = 2  batch = 4", "generations = 2  sweep batch in [4, 3]"))
    assert [d.first_line() for d in err.diagnostics] == [
        "spec.flm:14:57: error: stage rl: batch x grad_accum x ranks = 3 x 1 x 1 = 3 is not a "
        "multiple of generations (2)"]


def test_rules_on_resolved_values_report_beside_the_rules_on_the_ast(tmp_path: Path) -> None:
    """One check shows every independent problem: a rule on written text (evaluating the template
    teacher) does not hide a rule on resolved values (the mask past the default hops)."""
    text = R("count = 10 }", "count = 10  mask = 2 }", R("evaluate [rl]", "evaluate [rl, teacher]"))
    assert [d.first_line() for d in errors(tmp_path, text).diagnostics] == [
        "spec.flm:5:75: error: 'mask' index 2 is outside the path: the shortest walk has nodes 0..1",
        "spec.flm:15:15: error: cannot evaluate 'teacher': a template() teacher reads each item's "
        "answer, so its accuracy would measure nothing"]


def test_plateau_metric_lists_what_the_stage_logs(tmp_path: Path) -> None:
    err = errors(tmp_path, R("batch = 4 }", "batch = 4  until = plateau(loss) }"))
    assert err.diagnostics[0].expected == "one of reward, correct, bucket/easy, bucket/moderate, bucket/hard"


def test_unset_api_key_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEMING_TEST_KEY", raising=False)
    text = R("model teacher = template()",
             'model teacher = openai(base_url = "http://x", api_key_env = "FLEMING_TEST_KEY", model = "m")')
    assert warnings(tmp_path, text) == [
        "spec.flm:3:61: warning: environment variable FLEMING_TEST_KEY (the API key of model 'teacher') "
        "is not set here"]
    monkeypatch.setenv("FLEMING_TEST_KEY", "k")
    assert warnings(tmp_path, text) == []


def test_benchmark_that_is_trained_on_is_a_warning(tmp_path: Path) -> None:
    assert warnings(tmp_path, R("on [test]", "on [train]")) == [
        "spec.flm:7:9: warning: dataset 'test' is declared but never used",
        "spec.flm:15:19: warning: benchmark 'train' is also training data (of stage sft1): its scores "
        "measure memory, not skill"]


def test_answer_pattern_narrower_than_the_options_is_a_warning(tmp_path: Path) -> None:
    text = R('reward correct = choice_match(tag = "answer")',
             'reward correct = regex("<answer>[A-C]</answer>")')
    text = R('dataset train = mcq("train.jsonl")', 'dataset train = medqa("train.jsonl")', text)
    text = R("distill cot from [q, train]", "distill cot from [train]", text)
    spec = write_project(tmp_path, text)
    (tmp_path / "train.jsonl").write_text(json.dumps(
        {"question": "q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "D"}))
    found = check_experiment(spec, project_root=tmp_path)[1]
    assert found[-1].first_line() == (
        "spec.flm:14:48: warning: reward correct accepts answers [A-C], but stage rl trains on items "
        "with up to 4 options (A-D)")


def test_vocabulary_is_read_once_into_a_sidecar_keyed_by_the_file(tmp_path: Path) -> None:
    kg = tmp_path / "kg.csv"
    kg.write_text("relation,display_relation,x_index,x_id,x_type,x_name,x_source,y_index,y_id,y_type,"
                  "y_name,y_source\nindication,indication,0,1,drug,a,s,1,2,disease,b,s\n")
    vocab = vocabulary("primekg", [kg])
    assert (vocab.relations, vocab.node_types) == ({"indication"}, {"drug", "disease"})
    (sidecar,) = cache_dir().iterdir()
    assert json.loads(sidecar.read_text()) == {"relations": ["indication"], "node_types": ["disease", "drug"],
                                               "ends": [["indication", "drug", "disease"]]}
    sidecar.write_text(json.dumps({"relations": ["from-sidecar"], "node_types": [], "ends": []}))
    assert vocabulary("primekg", [kg]).relations == {"from-sidecar"}  # not read again
    kg.write_text(kg.read_text() + "contraindication,c,0,1,drug,a,s,1,2,disease,b,s\n")
    assert vocabulary("primekg", [kg]).relations == {"indication", "contraindication"}


def test_absent_graph_only_warns(tmp_path: Path) -> None:
    text = R('triples("kg.tsv")', 'triples("far/kg.tsv")', R("-[causes]->", "-[cause]->"))
    assert warnings(tmp_path, text)[0].startswith("spec.flm:4:20: warning: data file not found: far/kg.tsv")


def test_rules_are_one_ordered_list_with_the_lowered_ones_last() -> None:
    flags = [after_lowering(rule) for rule in RULES]
    assert flags == sorted(flags)
    assert len({rule.__name__ for rule in RULES}) == len(RULES)


def test_sft_plateau_on_loss_reaches_the_job(tmp_path: Path) -> None:
    from fleming_dsl.plan.planner import plan

    text = R("{ lr = 1e-4 }", "{ lr = 1e-4  until = plateau(loss, patience = 3) }")
    exp, _ = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    job = plan(exp, "generated/t").job("sft_sft1")
    assert (job.config.plateau.metric, job.config.plateau.patience) == ("loss", 3)


@pytest.mark.parametrize("filters, where", [
    # a filter of a filter of a dataset: the judge is looked for through the whole chain
    ("filter f1 from train { format }\nfilter f2 from f1 { verify_label }\n", "spec.flm:17:21"),
    # filters that read each other: no teacher anywhere upstream
    ("filter f1 from f2 { format }\nfilter f2 from f1 { verify_label }\n", "spec.flm:17:21"),
])
def test_verify_label_without_a_judge_is_rejected_at_check_not_in_the_planner(
        tmp_path: Path, filters: str, where: str) -> None:
    """The planner's fallback for a judge-less verify_label is an assertion now: every way to
    reach it is a located check error."""
    err = errors(tmp_path, MINIMAL + filters)
    lines = [d.first_line() for d in err.diagnostics]
    assert f"{where}: error: verify_label in filter f2 has no judge: no distill or synthesize " \
           "teacher is upstream of it" in lines


def test_verify_label_finds_the_teacher_through_a_chain_of_filters(tmp_path: Path) -> None:
    from fleming_dsl.plan.planner import plan

    text = MINIMAL + "".join(f"filter f{i} from {'clean' if i == 1 else f'f{i - 1}'} {{ format }}\n"
                             for i in range(1, 400)) + "filter last from f399 { verify_label }\n"
    exp, _ = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    steps = plan(exp, "generated/t").job("filter_last").config.steps
    assert next(s for s in steps if s.step == "verify_label").judge.backend.kind == "template"


def test_chains_longer_than_the_recursion_limit_check_in_loops(tmp_path: Path) -> None:
    """Init chains of stages and source chains of filters are walked without recursion (issue 11:
    a 100,000-deep chain must neither hit RecursionError nor take quadratic time)."""
    import sys

    depth = sys.getrecursionlimit() + 500
    text = MINIMAL + "".join(
        f"filter f{i} from {'clean' if i == 1 else f'f{i - 1}'} {{ format  verify_label }}\n"
        for i in range(1, depth)) + "".join(
        f"stage s{i} = sft({'sft1' if i == 1 else f's{i - 1}'}, f{depth - 1}) {{ lr = 1e-5 }}\n"
        for i in range(1, depth))
    exp, _ = check_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert len(exp.stages) == depth + 1 and exp.stages[-1].init == f"s{depth - 2}"
