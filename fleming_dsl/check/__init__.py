"""Every static rule a spec must pass, in one ordered list (as sqlglot's optimizer `RULES`).

A rule is a function `rule(checked) -> Iterator[Diagnostic]`. A rule about what is written (names,
references, files, template texts) reads the merged AST (`checked.program`, its symbol table
`checked.by_name`) and runs before lowering. A rule that needs a value reads it resolved (defaults
filled in, init chains followed, sweeps expanded) from the IR, `checked.experiment` (by name:
`checked.declarations`), is marked `after_lowering` and runs after it; it never restates a default.
It points at the option that set the value (`checked.decl_at(node.span)` finds the declaration),
or at the declaration when the value is a default. Option names, value types and value ranges are
judged while lowering, where each value meets its IR field.

A new rule is a small function in the module of its concern (references, files, models, samples,
data, stages) and one line in `RULES`. What a job or the planner also needs (a limit, a predicate
worded once) goes in `fleming_dsl/vocabulary.py`, never imported from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fleming_dsl import ir
from fleming_dsl.check import (
    cluster,
    data,
    files,
    graph_files,
    grpo,
    models,
    multirank,
    references,
    rollout,
    results,
    samples,
    stages,
    templates,
)
from fleming_dsl.check.common import Checked
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast

Rule = Callable[[Checked], Iterator[Diagnostic]]


RULES: tuple[Rule, ...] = (
    references.duplicate_names,
    references.undefined_names,
    references.wrong_kinds,
    references.cycles,
    models.teachers_have_backends,
    models.evaluated_models_are_not_oracles,
    stages.stage_arguments,
    stages.buckets_need_difficulty,
    stages.rubric_data_is_graded,
    stages.rubric_data_feeds_no_data_job,
    stages.sweep_or_option,
    stages.plateau_is_logged,
    stages.miner_has_max_steps,
    stages.verify_label_has_judge,
    cluster.shell_safe_cluster_names,
    cluster.container_is_an_image,
    samples.hops_within_metapath,
    samples.counts_are_reachable,
    files.missing_files,
    templates.prompt_templates,
    templates.search_prompts_hide_the_label,
    templates.rubric_prompts_fit_grading,
    templates.prompt_variables_provided,
    graph_files.graph_headers,
    samples.names_in_graph,
    data.split_has_a_field,
    data.format_matches_file,
    references.unused_declarations,
    models.api_keys_are_set,
    data.benchmarks_not_trained_on,
    grpo.trl_version_supported,
    results.evaluated_once,
    stages.batch_fits_generations,  # after lowering
    grpo.grpo_options,  # after lowering
    rollout.vllm_fits,  # after lowering
    rollout.zero3_generate_is_slow,  # after lowering
    multirank.zero3_lora_supported,  # after lowering
    results.options_have_distractors,  # after lowering
    data.answer_pattern_covers_options,  # after lowering
    models.data_gpus_cover_teacher,  # after lowering
    samples.mask_within_path,  # after lowering
    results.overlong_can_apply,  # after lowering
    results.shards_have_items,  # after lowering
    results.resources_are_used,  # after lowering
)


def after_lowering(rule: Rule) -> bool:
    return bool(getattr(rule, "after_lowering", False))


def run_checks(program: ast.Program) -> list[Diagnostic]:
    """Every diagnostic (errors and warnings) of the rules that read the AST, in rule order."""
    checked = Checked.of(program)
    return [diag for rule in RULES if not after_lowering(rule) for diag in rule(checked)]


def run_lowered_checks(program: ast.Program, experiment: ir.Experiment) -> list[Diagnostic]:
    """The diagnostics of the rules that read resolved values, in rule order."""
    checked = Checked.of(program, experiment)
    return [diag for rule in RULES if after_lowering(rule) for diag in rule(checked)]
