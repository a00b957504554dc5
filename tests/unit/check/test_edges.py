"""Issue 28, "trust at the edges": each finding that hung the checker, passed check and went
silently wrong, or failed late, now ends as a located error or warning at check time, with its
first line asserted word for word. A check that used to hang is marked with a timeout, so the
old behaviour fails rather than stalls the suite."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project
from flm_fixtures import check_errors as errors
from flm_fixtures import check_warnings as warnings
from flm_fixtures import edit as R

from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEMING_CACHE_DIR", str(tmp_path / "cache"))


def first(err: SpecError) -> tuple[str, str | None]:
    return err.diagnostics[0].first_line(), err.diagnostics[0].hint


# ---------------------------------------------------------------- bounded whatever the numbers


@pytest.mark.timeout(20)
def test_a_huge_generations_count_gets_its_batch_hint_in_closed_form(tmp_path: Path) -> None:
    err = errors(tmp_path, R("generations = 2", "generations = 18446744073709551617"))
    assert first(err) == (
        "spec.flm:14:57: error: stage rl: batch x grad_accum x ranks = 4 x 1 x 1 = 4 is not a "
        "multiple of generations (18446744073709551617)",
        "TRL's GRPO splits each generation batch over all ranks in whole groups of generations; "
        "use batch = 18446744073709551617")


def test_the_smallest_batch_is_the_next_multiple_of_what_the_ranks_leave() -> None:
    from fleming_dsl.vocabulary import smallest_batch

    assert smallest_batch(4, 1, 1, 6) == 6
    assert smallest_batch(4, 1, 2, 6) == 6  # 2 ranks: batch x 2 a multiple of 6 -> batch 3, 6, ...
    assert smallest_batch(5, 3, 2, 12) == 6
    assert smallest_batch(7, 2, 8, 8) == 7
    assert smallest_batch(1, 1, 1, 100_000_007) == 100_000_007


@pytest.mark.timeout(20)
def test_two_hundred_sweeps_are_refused_before_they_are_expanded(tmp_path: Path) -> None:
    sweeps = "  ".join(f"sweep lrx{i} in [1, 2]" for i in range(200))
    err = errors(tmp_path, R("batch = 4 }", f"batch = 4 {sweeps} }}"))
    assert len(err.diagnostics) == 1
    assert first(err) == (
        "spec.flm:14:90: error: stage rl expands to 1,606,938,044,258,990,275,541,962,092,341,162,"
        "602,522,202,993,782,792,835,301,376 sweep points, more than 4,096",
        "each point is a training run: sweep fewer values, or split the sweep over specs")


def test_a_misspelled_swept_option_is_matched_once_per_name(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The did-you-mean of an unknown option was computed at every point of the sweep product."""
    calls = []
    real = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    sweeps = "  ".join(f"sweep lrx{i} in [1, 2]" for i in range(8))
    err = errors(tmp_path, R("batch = 4 }", f"batch = 4 {sweeps} }}"))
    assert first(err)[0] == "spec.flm:14:90: error: unknown option 'lrx0' for stage rl"
    assert sorted(calls) == [f"lrx{i}" for i in range(8)]


# ---------------------------------------------------------------- metapath direction (and issue 26)


HETIONET = {"nodes.tsv": "id\tname\tkind\nC1\taspirin\tCompound\nD1\tflu\tDisease\nG1\tg1\tGene\n",
            "edges.sif": "source\tmetaedge\ttarget\nC1\tCtD\tD1\nD1\tDaG\tG1\n"}
HETIONET_GRAPH = 'graph kg = hetionet("nodes.tsv", "edges.sif")'


def hetionet_spec(tmp_path: Path, path: str) -> str:
    for name, text in HETIONET.items():
        (tmp_path / name).write_text(text)
    text = R('graph kg = triples("kg.tsv")', HETIONET_GRAPH)
    return R("disease -[causes]-> symptom", path, text)


def test_a_hetionet_relation_is_not_walked_backwards_silently(tmp_path: Path) -> None:
    err = errors(tmp_path, hetionet_spec(tmp_path, "Disease -[CtD]-> Compound"))
    assert first(err) == (
        "spec.flm:5:35: error: relation 'CtD' runs Compound -> Disease: Disease -[CtD]-> Compound "
        "would walk it backwards",
        'to walk it from Disease to Compound, write -["CtD:rev"]-> (a metapath walks a relation the '
        "way the graph writes it)")
    assert warnings(tmp_path, hetionet_spec(tmp_path, 'Disease -["CtD:rev"]-> Compound')) == []
    assert warnings(tmp_path, hetionet_spec(tmp_path, "Compound -[CtD]-> Disease -[DaG]-> Gene")) == []


def test_a_triples_relation_is_walked_as_written(tmp_path: Path) -> None:
    err = errors(tmp_path, R("disease -[causes]-> symptom", "symptom -[causes]-> disease"))
    assert first(err)[0] == ("spec.flm:5:35: error: relation 'causes' runs disease -> symptom: "
                             "symptom -[causes]-> disease would walk it backwards")
    assert warnings(tmp_path, R("disease -[causes]-> symptom", 'symptom -["causes:rev"]-> disease')) == []


def test_a_relation_that_never_joins_the_written_types_fails_at_check(tmp_path: Path) -> None:
    """It used to pass check and fail in the sample job."""
    err = errors(tmp_path, R("disease -[causes]-> symptom", "disease -[causes]-> disease"))
    assert str(err).splitlines()[0] == ("spec.flm:5:35: error: relation 'causes' never leads from "
                                        "disease to disease")
    assert err.diagnostics[0].expected == "one of its steps: disease -> symptom"


def test_a_graph_declares_how_its_relations_read(tmp_path: Path) -> None:
    graph = 'graph kg = triples("kg.tsv") { reads { causes = ["causes", "is caused by"] } }'
    exp, _ = check_experiment(write_project(tmp_path, R('graph kg = triples("kg.tsv")', graph)),
                              project_root=tmp_path)
    assert exp.declarations()["kg"].readings == (("causes", "causes", "is caused by"),)
    err = errors(tmp_path, R('graph kg = triples("kg.tsv")', graph.replace("causes =", "cuases =")))
    assert first(err) == ("spec.flm:4:40: error: relation 'cuases' is not in graph kg",
                          "did you mean 'causes'?")
    err = errors(tmp_path, R('graph kg = triples("kg.tsv")', graph.replace('["causes", "is caused by"]', '"x"')))
    assert first(err) == ("spec.flm:4:49: error: 'causes' must be two phrases, how the relation reads "
                          "from its head and from its tail, got a string",
                          'causes = ["has symptom", "is a symptom of"]')


def test_a_gzipped_hetionet_edges_file_is_read_at_check(tmp_path: Path) -> None:
    import gzip

    spec = hetionet_spec(tmp_path, "Disease -[CtD]-> Compound").replace("edges.sif", "edges.sif.gz")
    with gzip.open(tmp_path / "edges.sif.gz", "wt") as handle:
        handle.write(HETIONET["edges.sif"])
    assert first(errors(tmp_path, spec))[0].startswith("spec.flm:5:35: error: relation 'CtD' runs")


# ---------------------------------------------------------------- silent results, late errors, waste


def test_more_options_than_the_sample_draws_is_an_error(tmp_path: Path) -> None:
    text = R("synthesize q from s with teacher using ask", "synthesize q from s with teacher using ask { options = 6 }")
    err = errors(tmp_path, text)
    assert first(err) == (
        "spec.flm:9:46: error: synthesize q asks for 6 options per item, but sample s draws 3 "
        "distractors: its items would have 4",
        "draw more in sample s: distractors = same_type(k = 5), or write options = 4")


def test_an_overlong_term_that_can_never_apply_is_a_warning(tmp_path: Path) -> None:
    text = R("reward correct = choice_match(tag = \"answer\")",
             "reward correct = choice_match(tag = \"answer\")\nreward long = overlong(1024, 256)")
    text = R("rewards = correct ", "rewards = correct + 0.5 * long  max_completion_length = 128 ", text)
    assert warnings(tmp_path, text) == [
        "spec.flm:15:38: warning: reward long is always 0 in stage rl: it penalises completions past "
        "768 tokens, but max_completion_length = 128 stops them before"]


def test_a_model_evaluated_twice_is_an_error_at_check(tmp_path: Path) -> None:
    """It failed at compile: two jobs writing one file."""
    err = errors(tmp_path, R("evaluate [rl] on [test]", "evaluate [base, base] on [test]"))
    assert first(err) == ("spec.flm:15:17: error: evaluate lists the model 'base' twice",
                          "each is evaluated once: remove the repeat")


def test_more_shards_than_items_is_a_warning(tmp_path: Path) -> None:
    text = R("synthesize q from s with teacher using ask", "synthesize q from s with teacher using ask { shards = 500 }")
    assert warnings(tmp_path, text) == [
        "spec.flm:9:46: warning: synthesize q is cut into 500 shards, but has at most 10 items: 490 "
        "jobs would have nothing to do"]


def test_several_nodes_for_a_one_process_step_is_an_error(tmp_path: Path) -> None:
    text = R("synthesize q from s with teacher using ask",
             "synthesize q from s with teacher using ask { resources { nodes = 4 } }")
    assert first(errors(tmp_path, text)) == (
        "spec.flm:9:58: error: synthesize q runs as one process: 'nodes = 4' would hold nodes it never uses",
        "only training stages run over several nodes; use shards = N to spread a data step over jobs")


def test_deepspeed_on_a_one_process_cpu_stage_is_an_error(tmp_path: Path) -> None:
    err = errors(tmp_path, R("{ lr = 1e-4 }", "{ lr = 1e-4  deepspeed = zero3_offload }"))
    assert first(err) == (
        "spec.flm:13:44: error: stage sft1 runs as one CPU process, so 'deepspeed = zero3_offload' "
        "would be dropped",
        "DeepSpeed ZeRO shards over ranks: add resources { gpus = N } (or nodes = N for CPU ranks), "
        "or remove deepspeed")


def test_deepspeed_over_several_cpu_ranks_is_accepted(tmp_path: Path) -> None:
    """ZeRO over gloo on CPU ranks is real (tests/e2e/test_multirank_training.py)."""
    text = R("{ lr = 1e-4 }", "{ lr = 1e-4  deepspeed = zero2  resources { nodes = 2 } }")
    check_experiment(write_project(tmp_path, text), project_root=tmp_path)  # no error


def test_use_vllm_on_a_stage_without_gpus_or_vllm_is_a_warning(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the stage can generate with it")
    assert warnings(tmp_path, R("batch = 4 }", "batch = 4  use_vllm = true }")) == [
        "spec.flm:14:85: warning: stage rl has no GPU and vllm is not installed: 'use_vllm = true' "
        "would fall back to generating with transformers"]


# ---------------------------------------------------------------- hints that were misleading


@pytest.mark.parametrize("written, hint", [
    ("mem = 8000", "write the unit: 8000MB"),
    ("mem = 64", "write the unit: 64GB"),
    ("time = 90", "write the unit: 90m"),
    ("time = 48", "write the unit: 48h"),
])
def test_a_bare_size_or_duration_gets_the_unit_it_most_likely_meant(tmp_path: Path, written: str,
                                                                     hint: str) -> None:
    err = errors(tmp_path, R("{ lr = 1e-4 }", f"{{ lr = 1e-4  resources {{ {written} }} }}"))
    assert first(err)[1] == hint


def test_a_unit_word_after_a_number_says_how_units_are_written(tmp_path: Path) -> None:
    err = errors(tmp_path, R("{ lr = 1e-4 }", "{ lr = 1e-4  resources { time = 90min } }"))
    assert [(d.first_line(), d.hint) for d in err.diagnostics] == [
        ("spec.flm:13:63: error: 'time' must be a duration such as 30m, 48h or 2d, got a number",
         "write the unit: 90m"),
        ("spec.flm:13:65: error: unexpected 'min' in resources of stage sft1",
         "a unit is one of s, m, h, d, KB, MB, GB, TB, written right after the number: 90m, 48h, 80GB")]


def test_a_name_dropped_in_a_child_says_where_it_was_dropped(tmp_path: Path) -> None:
    write_project(tmp_path, MINIMAL, name="base.flm")
    child = tmp_path / "child.flm"
    child.write_text('experiment "c" extends "base.flm" { }\ndrop sft1\n')
    with pytest.raises(SpecError) as info:
        check_experiment(child, project_root=tmp_path)
    assert first(info.value) == (
        "base.flm:14:17: error: undefined name 'sft1' (the init model)",
        "'sft1' is dropped at child.flm:2:1 (drop sft1); drop or replace rl too, or keep sft1")


def test_an_unquoted_relation_that_is_not_a_name_gets_a_hint_to_quote_it(tmp_path: Path) -> None:
    err = errors(tmp_path, R("disease -[causes]-> symptom", "disease -[Gr>G:rev]-> symptom"))
    assert first(err) == ("spec.flm:5:39: error: a metapath step is written -[relation]-> type",
                          'a relation that is not a plain name is quoted: -["Gr>G:rev"]->')


def test_a_hub_id_with_a_quote_or_spaces_is_refused(tmp_path: Path) -> None:
    err = errors(tmp_path, R("model base = tiny(hidden = 32)", 'model base = hf("org/x\\" + y")'))
    assert first(err) == ("spec.flm:2:17: error: 'org/x\" + y' is not a Hugging Face hub id",
                          'a hub id is "name" or "org/name" of letters, digits, "-", "_" and ".", e.g. '
                          'hf("Qwen/Qwen2.5-7B-Instruct")')


def test_a_graph_path_that_is_a_folder_is_an_error_at_check(tmp_path: Path) -> None:
    (tmp_path / "kgdir").mkdir()
    err = errors(tmp_path, R('triples("kg.tsv")', 'triples("kgdir")'))
    assert first(err) == ("spec.flm:4:20: error: graph file is a folder: kgdir",
                          "name the file inside it (kg.csv, nodes.tsv, edges.sif, ...)")


def test_a_graph_path_that_is_a_folder_is_a_located_job_error(tmp_path: Path) -> None:
    from fleming_dsl.errors import JobError
    from fleming_dsl.runtime.graph.io import read_graph

    with pytest.raises(JobError) as info:
        read_graph("triples", [str(tmp_path)])
    assert str(info.value) == f"{tmp_path}: a folder, where a graph file is expected"


NINES = "9" * 400  # an int past a float's range: float() of it raised OverflowError


@pytest.mark.parametrize("old, new, message", [
    ("lr = 1e-4", f"lr = {NINES}", "spec.flm:13:38: error: 'lr' must be a finite number, got a whole "
                                   "number of 400 digits"),
    ("rewards = correct", f"rewards = {NINES} * correct",
     "spec.flm:14:451: error: the weight of 'correct' must be a finite number"),
    ("pass >= 0.75", f"pass >= {NINES}", "spec.flm:11:60: error: 'easy' threshold must be in (0, 1], got inf"),
])
def test_a_number_past_a_float_s_range_is_a_located_error(tmp_path: Path, old: str, new: str,
                                                          message: str) -> None:
    assert first(errors(tmp_path, R(old, new)))[0] == message


def test_a_ratio_past_a_float_s_range_parses(tmp_path: Path) -> None:
    from fleming_dsl.spec.parser import parse_module

    module = parse_module(f"stage s = grpo(a, mine_hard(p, pass < 0.5, ratio = 1:{NINES})) {{ }}\n", "x.flm")
    assert module.statements


@pytest.mark.parametrize("old, new", [
    ("generations = 2", "generations = 18446744073709551617  use_vllm = true  resources { gpus = 1 }"),
    ("count = 10 }", f"count = 10  distractors = same_type(k = {NINES}) }}"),
])
def test_huge_numbers_the_fuzzer_found_in_other_rules_are_located(tmp_path: Path, old: str, new: str) -> None:
    """bench/fuzz_check.py (seed fresh-28): an OverflowError in the vLLM memory estimate and in the
    option-count rule."""
    assert re.match(r"spec\.flm:\d+:\d+: error: ", str(errors(tmp_path, R(old, new))))
