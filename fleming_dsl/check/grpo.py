"""GRPO option rules: the installed TRL against the versions the options are validated for, and
combinations that make no sense. Pure and light (no trl import).

- `trl_version_supported`: a warning when the installed TRL is outside `lower/trl_versions.py`'s
  table, against whose rows lowering validated the enumerated options.
- `TRAINING_RULES`: small named rules over a lowered `ir.Training`, each yielding `Problem`s (the
  spec word to point at, the message, a hint). `grpo_options`, one rule of `check.RULES` run after
  lowering, applies them to every GRPO stage (every sweep point, with its own values) and points
  at the option's line. `Training.model_fields_set` says which options the spec wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fleming_dsl import ir
from fleming_dsl.check.common import Checked, option_key
from fleming_dsl.errors import Diagnostic
from fleming_dsl.lower.trl_versions import installed_trl, supported, supported_text
from fleming_dsl.spec import ast


def trl_version_supported(c: Checked) -> Iterator[Diagnostic]:
    """A warning, at the first GRPO stage, when the installed TRL is outside the table: its
    options were validated against the newest row, which that TRL may not accept (TRL absent,
    e.g. a laptop that only compiles, is not warned about: the cluster's TRL is what runs)."""
    version = installed_trl()
    if version is None or supported(version):
        return
    first = next((d for d in c.program.decls if isinstance(d, ast.StageDecl)
                  and d.method.func.name == "grpo"), None)
    if first is not None:
        yield Diagnostic(f"the installed TRL {version} is outside the versions the GRPO options are "
                         f"validated against (trl{supported_text()}); stage {first.name.name} may "
                         "fail or behave differently when it runs", first.method.func.span,
                         severity="warning", hint=f'pip install "trl{supported_text()}"')


# ---------------------------------------------------------------- combination rules


@dataclass(frozen=True)
class Problem:
    word: str  # the spec option to point at
    message: str
    hint: str | None = None


Rule = Callable[[ir.Training], Iterator[Problem]]

# Losses that sum per-token terms: with one importance ratio per sequence they weight each sequence
# by its length instead of optimising GSPO's per-sequence objective (TRL warns and carries on).
_TOKEN_SUM_LOSSES = ("bnpo", "dr_grpo", "dapo", "cispo")
_VLLM_OPTIONS = ("vllm_mode", "vllm_gpu_memory_utilization", "vllm_max_model_length",
                 "vllm_tensor_parallel_size", "vllm_data_parallel_size", "vllm_enable_sleep_mode",
                 "vllm_server_base_url", "vllm_server_timeout")
_COLOCATE_ONLY = ("vllm_enable_sleep_mode",)
_SERVER_ONLY = ("vllm_server_base_url", "vllm_data_parallel_size", "vllm_server_timeout")
# what a stage's own server takes: an external one (vllm_server_base_url) was launched without them
_OWN_SERVER_ONLY = ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "vllm_data_parallel_size")


def _written(t: ir.Training, name: str) -> bool:
    return name in t.model_fields_set


def sequence_level_needs_sequence_loss(t: ir.Training) -> Iterator[Problem]:
    if t.importance_sampling_level == "sequence" and t.loss_type in _TOKEN_SUM_LOSSES:
        word = "loss_type" if _written(t, "loss_type") else "importance_sampling_level"
        yield Problem(word, f"importance_sampling_level = sequence needs a sequence-level loss; "
                      f"loss_type = {t.loss_type} sums per-token terms, so each sequence would be "
                      "weighted by its length (not GSPO)",
                      'for GSPO write loss_type = "grpo" (or luspo)')
    if t.importance_sampling_level == "sequence" and t.loss_type == "vespo":
        yield Problem("importance_sampling_level", "loss_type = vespo computes sequence-level "
                      "weights itself and needs importance_sampling_level = token",
                      "remove importance_sampling_level")


def luspo_needs_sequence_level(t: ir.Training) -> Iterator[Problem]:
    if t.loss_type == "luspo" and t.importance_sampling_level != "sequence":
        yield Problem("loss_type", "loss_type = luspo is a sequence-level loss and needs "
                      "importance_sampling_level = sequence", 'add importance_sampling_level = "sequence"')


def clip_range_is_ordered(t: ir.Training) -> Iterator[Problem]:
    if t.epsilon_high is not None and t.epsilon_high < t.epsilon:
        yield Problem("epsilon_high", f"epsilon_high ({t.epsilon_high}) must be >= epsilon ({t.epsilon}): "
                      "it widens the upper clip bound (DAPO's clip-higher)",
                      f"use epsilon_high >= {t.epsilon}, e.g. 0.28 as in DAPO")


def iterations_need_clipping(t: ir.Training) -> Iterator[Problem]:
    """With num_iterations > 1 each rollout batch is reused for several updates, so the policy
    drifts from the one that sampled it: the importance ratio must be clipped below (1 - epsilon > 0)."""
    if t.num_iterations > 1 and t.epsilon >= 1:
        yield Problem("epsilon", f"num_iterations = {t.num_iterations} reuses each rollout batch, which "
                      f"needs the importance ratio clipped, but epsilon = {t.epsilon} leaves no lower "
                      "clip bound (1 - epsilon <= 0)", "use epsilon < 1 (TRL's default is 0.2)")


def vllm_options_need_vllm(t: ir.Training) -> Iterator[Problem]:
    if not t.use_vllm:
        for name in _VLLM_OPTIONS:
            if _written(t, name):
                yield Problem(name, f"'{name}' has no effect without use_vllm = true",
                              "add use_vllm = true, or remove it")
                return
    if t.vllm_mode == "server":
        for name in _COLOCATE_ONLY:
            if _written(t, name):
                yield Problem(name, f"'{name}' applies to vllm_mode = colocate", f"remove '{name}'")
        if t.vllm_server_base_url is not None:
            for name in _OWN_SERVER_ONLY:
                if _written(t, name):
                    yield Problem(name, f"'{name}' configures the server the stage starts; the external "
                                  "server at vllm_server_base_url was launched with its own",
                                  f"remove '{name}', or remove vllm_server_base_url to start one")
    else:
        for name in _SERVER_ONLY:
            if _written(t, name):
                yield Problem(name, f"'{name}' needs vllm_mode = server", 'add vllm_mode = "server"')


def dynamic_sampling_options(t: ir.Training) -> Iterator[Problem]:
    if _written(t, "max_redraws") and not t.dynamic_sampling:
        yield Problem("max_redraws", "'max_redraws' has no effect without dynamic_sampling = true",
                      "add dynamic_sampling = true, or remove it")


TRAINING_RULES: tuple[Rule, ...] = (
    sequence_level_needs_sequence_loss, luspo_needs_sequence_level, clip_range_is_ordered,
    iterations_need_clipping, vllm_options_need_vllm, dynamic_sampling_options,
)


def problems(training: ir.Training) -> list[Problem]:
    """Every problem of a grpo stage's options, in rule order."""
    return [p for rule in TRAINING_RULES for p in rule(training)]


def grpo_options(c: Checked) -> Iterator[Diagnostic]:
    """The GRPO option rules on every GRPO stage (each sweep point once per distinct problem)."""
    assert c.experiment is not None
    reported: set[tuple] = set()
    for stage in c.experiment.stages:
        if stage.method != "grpo":
            continue
        decl = c.decl_at(stage.span)
        block = decl.block if isinstance(decl, ast.StageDecl) else None
        for p in problems(stage.training):
            if (stage.span, p.message) in reported:
                continue
            reported.add((stage.span, p.message))
            key = option_key(block, p.word)
            yield Diagnostic(p.message, key.span if key else stage.span, hint=p.hint)


grpo_options.after_lowering = True  # type: ignore[attr-defined]
