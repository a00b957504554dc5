"""A stage option is one field of `ir.Training` (`ir.option`), a resources option one of
`ir.Resources`, an evaluate option one of `ir.Evaluate` (or of its inline `ir.Sharding`): lowering's converter and range check, the reference row, the language server's
completion and the `trl { }` block's managed fields are read off it, so a new option needs
nothing else at compile time."""

from __future__ import annotations

import json

from fleming_dsl import ir
from fleming_dsl.lower import options as reference
from fleming_dsl.lower.schema import (
    DISTILL_OPTIONS,
    EVALUATE_OPTIONS,
    MANAGED_TRL_FIELDS,
    RESOURCE_OPTIONS,
    TRAINING_OPTIONS,
    managed_trl_fields,
    range_text,
    option_rows,
    read,
)
from fleming_dsl.lower.values import Diagnostics, Options, to_bool, to_int, to_name
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.spec import ast


class _WithANewOption(ir.Training):
    """What adding an option is: one field with its row."""

    rollout_chunks: int = ir.option(2, "rollouts generated per forward pass", ge=1, le=64,
                                    word="chunks", methods=("grpo",), unit="rollouts",
                                    lands=("trl.generation_chunks",))
    flash: bool = ir.option(False, "flash attention", lands=("trl.use_flash",))


def _num(value: int) -> ast.Num:
    return ast.Num(value=value, span=ir.Span(file="s.flm", line=1, col=1, end_line=1, end_col=2))


def test_a_new_field_is_a_stage_option_with_its_converter_range_and_landing_place() -> None:
    rows = {o.word: o for o in option_rows(_WithANewOption)}
    chunks, flash = rows["chunks"], rows["flash"]
    assert (chunks.target, chunks.methods, chunks.unit, chunks.range, chunks.meaning) == (
        "rollout_chunks", ("grpo",), "rollouts", "in 1..64", "rollouts generated per forward pass")
    assert (chunks.convert, flash.convert, flash.check, flash.methods) == (to_int, to_bool, None, ("sft", "grpo"))
    assert [chunks.check(x) for x in (0, 1, 64, 65)] == ["in 1..64", None, None, "in 1..64"]
    assert chunks.convert(_num(3), "chunks", Diagnostics()) == 3
    assert {"generation_chunks", "use_flash"} <= managed_trl_fields(tuple(rows.values()))
    assert list(rows)[:-2] == [o.word for o in TRAINING_OPTIONS]  # the rest is unchanged


def test_ranges_are_written_as_lowering_reports_them() -> None:
    def text(**bounds) -> str:
        return range_text(ir.option(0, "x", **bounds).metadata)

    assert [text(gt=0), text(ge=1), text(gt=0, le=1), text(ge=0, lt=1), text()] == [
        "> 0", ">= 1", "in (0, 1]", "in [0, 1)", ""]
    # a whole number between two bounds, as values.in_range says it: 'options' must be in 2..26
    assert range_text(ir.option(0, "x", ge=2, le=26).metadata, whole=True) == "in 2..26"


def test_the_reference_and_the_managed_fields_come_from_the_fields() -> None:
    stage = reference.block("stage")
    assert stage is not None
    for o in TRAINING_OPTIONS:
        row = stage.option(o.word)
        info = ir.Training.model_fields[o.target]
        assert (row.range, row.unit, row.default_value()) == (o.range, o.unit, info.default), o.word
        assert row.meaning.endswith(info.description), o.word
    resources = reference.block("resources")
    assert resources is not None
    assert [(o.name, o.type, o.range, o.unit) for o in resources.options][3:6] == [
        ("mem", "size (512MB, 80GB, 1TB)", "> 0", "MB"), ("gpu_mem", "size (512MB, 80GB, 1TB)", "> 0", "MB"),
        ("time", "duration (30s, 30m, 48h, 2d)", "> 0", "minutes")]
    assert [o.word for o in RESOURCE_OPTIONS] == [o.name for o in resources.options]
    assert {"learning_rate", "num_generations", "vllm_server_timeout"} <= MANAGED_TRL_FIELDS
    assert "dynamic_sampling" not in MANAGED_TRL_FIELDS  # the job's own: it lands in no TRL field


def test_a_training_job_config_holds_its_methods_options_only() -> None:
    common = dict(job="j", experiment="e", seed=1, meta="m", model="base", data="d.jsonl",
                  deepspeed_config=None, accelerate_config=None, output="out")
    sft = jc.SftJob(**common, training=ir.Training(lr=0.5, generations=4))
    written = json.loads(jc.config_text(sft))["training"]
    assert (written["lr"], "packing" in written, "generations" in written) == (0.5, True, False)
    assert jc.SftJob.model_validate_json(jc.config_text(sft)).training == ir.Training(lr=0.5)
    grpo = jc.GrpoJob(**common, training=ir.Training(vllm_mode="server", epsilon=0.3), rewards=(),
                      plateau=None, miner=None, metrics="m.jsonl")
    assert (grpo.training.epsilon_high, grpo.training.vllm_gpu_memory_utilization) == (0.3, 0.9)
    assert "packing" not in json.loads(jc.config_text(grpo))["training"]


def _word(name: str) -> ast.Name:
    return ast.Name(name=name, span=ir.Span(file="s.flm", line=1, col=1, end_line=1, end_col=2))


def test_an_evaluation_takes_its_options_and_its_inline_sharding_from_ir_evaluate() -> None:
    rows = {o.word: o for o in EVALUATE_OPTIONS}
    assert list(rows) == ["samples", "temperature", "max_tokens", "limit", "accept", "shards",
                          "items_per_shard", "grader", "rubric_prompt", "engine", "metrics"]
    shards = rows["shards"]
    assert (shards.via, shards.model, shards.written, shards.range) == ("sharding", "Sharding",
                                                                         "whole number or auto", ">= 1")
    assert (rows["grader"].convert, rows["max_tokens"].unit, rows["temperature"].check(-0.5)) == (
        to_name, "tokens", ">= 0")
    evaluate = reference.block("evaluate")
    assert evaluate is not None
    assert [(o.name, o.default_text()) for o in evaluate.options][4:7] == [
        ("accept", "letter"), ("shards", "1"), ("items_per_shard", "none")]
    # shards = auto is no whole number: the inline options are left to lower/shards.py
    diags = Diagnostics()
    opts = Options([(_word("samples"), _num(0)), (_word("max_tokens"), _num(64)),
                    (_word("shards"), _word("auto"))], "an evaluation", diags)
    assert read(EVALUATE_OPTIONS, opts) == {"max_tokens": 64}
    assert [d.message for d in diags] == ["'samples' must be >= 1, got 0"]


def test_a_list_of_choices_is_read_and_described_from_its_literal_type() -> None:
    refine = {o.word: o for o in DISTILL_OPTIONS}["refine"]
    value = ast.ListV(items=(_word("explore"), _word("backtrack")), span=_word("x").span)
    assert refine.convert(value, "refine", Diagnostics()) == ("explore", "backtrack")
    diags = Diagnostics()
    refine.convert(ast.ListV(items=(_word("guess"),), span=_word("x").span), "refine", diags)
    assert [d.message for d in diags] == ["'refine' must be one of backtrack, explore, self_correct; got 'guess'"]
    distill = reference.block("distill")
    assert distill is not None
    assert distill.option("refine").type == "list of backtrack, explore, self_correct"


def test_an_inline_models_options_may_mean_something_else_in_a_block() -> None:
    synthesize = reference.block("synthesize")
    assert synthesize is not None
    assert synthesize.option("items_per_shard").meaning == "with shards = auto: sampled paths per job"
    assert reference.block("distill").option("items_per_shard").meaning == (
        ir.Sharding.model_fields["items_per_shard"].description)
