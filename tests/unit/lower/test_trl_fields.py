"""Training options users expect (issue 26 item 6): the learning-rate schedule, warm-up as a
ratio, weight decay, gradient clipping, gradient checkpointing, packing and a `trl { }` block for
any other TRL field reach TRL's config; a name TRL does not know is a check error, judged against
a committed table this test keeps equal to the installed TRL."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest
from flm_fixtures import FILES

from fleming_dsl.compiler import check_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.lower import trl_fields
from fleming_dsl.lower.schema import MANAGED_TRL_FIELDS

SPEC = '''experiment "t" { seed = 1 }
model base = tiny(hidden = 32)
dataset train = mcq("train.jsonl")
stage tune = sft(base, train) {
  epochs = 1
  lr_scheduler_type = "cosine_with_min_lr"
  warmup_ratio = 0.1
  weight_decay = 0.01
  max_grad_norm = 0.5
  gradient_checkpointing = true
  packing = true
  trl { optim = "adamw_torch"  adam_beta2 = 0.95  neftune_noise_alpha = 5 }
}
'''


def _table(names) -> list[str]:
    return sorted(names)


def test_the_committed_tables_are_the_installed_trl_and_transformers() -> None:
    from transformers.trainer_utils import SchedulerType
    from trl import GRPOConfig, SFTConfig

    sft = {f.name for f in dataclasses.fields(SFTConfig)}
    grpo = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert _table(trl_fields.SFT_CONFIG_FIELDS) == _table(sft), f"SFT_CONFIG_FIELDS = {sorted(sft)}"
    assert _table(trl_fields.GRPO_CONFIG_FIELDS) == _table(grpo), f"GRPO_CONFIG_FIELDS = {sorted(grpo)}"
    assert trl_fields.LR_SCHEDULERS == tuple(s.value for s in SchedulerType)
    assert MANAGED_TRL_FIELDS <= sft | grpo, sorted(MANAGED_TRL_FIELDS - sft - grpo)


def _project(tmp_path: Path, spec: str) -> Path:
    (tmp_path / "train.jsonl").write_text(FILES["train.jsonl"])
    path = tmp_path / "spec.flm"
    path.write_text(spec)
    return path


def test_the_options_reach_trls_sft_config(tmp_path: Path) -> None:
    from trl import SFTConfig

    from fleming_dsl.plan.planner import plan
    from fleming_dsl.runtime.jobs.sft import sft_config_kwargs

    with contextlib.chdir(tmp_path):
        exp, _ = check_experiment(_project(tmp_path, SPEC), project_root=tmp_path)
        (job,) = [j for j in plan(exp, "generated/t").jobs if j.config.kind == "sft"]
    kwargs = sft_config_kwargs(job.config, cuda=False, bf16_ok=False)
    set_here = set(kwargs) - {"optim", "adam_beta2", "neftune_noise_alpha"}
    assert set_here <= MANAGED_TRL_FIELDS | {"dataset_num_proc"}, sorted(set_here - MANAGED_TRL_FIELDS)
    config = SFTConfig(**{**kwargs, "output_dir": str(tmp_path / "out")})
    assert (config.lr_scheduler_type.value, config.warmup_steps, config.weight_decay,
            config.max_grad_norm, config.activation_checkpointing, config.packing) == (
        "cosine_with_min_lr", 0.1, 0.01, 0.5, True, True)
    assert (config.optim.value, config.adam_beta2, config.neftune_noise_alpha) == (
        "adamw_torch", 0.95, 5)


def test_unknown_managed_and_clashing_options_are_check_errors(tmp_path: Path) -> None:
    spec = SPEC.replace('"cosine_with_min_lr"', '"cosin"').replace(
        "  max_grad_norm = 0.5\n", "  max_grad_norm = 0.5\n  warmup_steps = 3\n").replace(
        'optim = "adamw_torch"', 'optimm = "x"  learning_rate = 1')
    with pytest.raises(SpecError) as info:
        check_experiment(_project(tmp_path, spec), project_root=tmp_path)
    assert [d.first_line() for d in info.value.diagnostics] == [
        "spec.flm:6:23: error: 'lr_scheduler_type' must be one of linear, cosine, "
        "cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt, "
        "reduce_lr_on_plateau, cosine_with_min_lr, cosine_warmup_with_min_lr, "
        "warmup_stable_decay, greedy; got 'cosin'",
        "spec.flm:7:3: error: set 'warmup_steps' or 'warmup_ratio', not both",
        "spec.flm:13:9: error: TRL's SFTConfig has no field 'optimm'",
        "spec.flm:13:23: error: 'learning_rate' is set by fleming (a stage option or the job), "
        "not in a trl block"]


def test_packing_applies_only_to_sft(tmp_path: Path) -> None:
    spec = SPEC.replace("sft(base, train)", "grpo(base, train)").replace(
        "  packing = true\n", "  packing = true\n  rewards = r\n").replace(
        "dataset train", 'reward r = choice_match(tag = "answer")\ndataset train')
    spec = spec.replace("  trl { optim", "  generations = 2\n  batch = 2\n  trl { optim")
    with pytest.raises(SpecError) as info:
        check_experiment(_project(tmp_path, spec), project_root=tmp_path)
    assert "spec.flm:12:3: error: 'packing' applies only to sft stages" in [
        d.first_line() for d in info.value.diagnostics]
