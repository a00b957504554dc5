"""GRPO stage options: TRL's values reach the job config, and `fleming check` rejects what TRL
does not accept or what makes no sense together (check/grpo.py), each with a located message."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl import ir
from fleming_dsl.lower import trl_versions
from fleming_dsl.compiler import load_experiment
from fleming_dsl.errors import SpecError
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import plan

RL = "{ rewards = correct  generations = 2  batch = 4 }"


def with_rl(options: str) -> str:
    return MINIMAL.replace(RL, "{ rewards = correct  generations = 2  batch = 4  " + options + " }", 1)


def first_error(tmp_path: Path, text: str) -> tuple[str, str | None]:
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    diag = info.value.diagnostics[0]
    return str(info.value).splitlines()[0], diag.hint


def grpo_job(tmp_path: Path, options: str) -> jc.GrpoJob:
    exp = load_experiment(write_project(tmp_path, with_rl(options)), project_root=tmp_path)
    return next(j.config for j in plan(exp, "gen").jobs if isinstance(j.config, jc.GrpoJob))


def test_defaults_are_trls_and_recorded_resolved(tmp_path: Path) -> None:
    job = grpo_job(tmp_path, "")
    assert (job.training.loss_type, job.training.scale_rewards, job.training.epsilon, job.training.epsilon_high) == ("dapo", "group", 0.2, 0.2)
    assert (job.training.importance_sampling_level, job.training.num_iterations, job.training.top_entropy_quantile) == ("token", 1, 1.0)
    assert (job.training.top_p, job.training.top_k, job.training.repetition_penalty, job.training.mask_truncated_completions) == (1.0, 0, 1.0, False)
    assert (job.training.dynamic_sampling, job.training.max_redraws) == (False, 4)


def test_every_default_matches_trls_grpo_config() -> None:
    trl = pytest.importorskip("trl")
    fields = trl.GRPOConfig.__dataclass_fields__
    resolved = ir.Training().for_rollouts()  # what a job config records where the spec is silent
    for name in ("loss_type", "scale_rewards", "epsilon", "importance_sampling_level", "top_entropy_quantile",
                 "mask_truncated_completions", "num_iterations", "top_p", "top_k", "repetition_penalty",
                 "vllm_mode", "vllm_gpu_memory_utilization", "vllm_max_model_length",
                 "vllm_tensor_parallel_size", "vllm_enable_sleep_mode", "vllm_server_base_url",
                 "vllm_server_timeout"):
        assert getattr(resolved, name) == fields[name].default, name


def test_table_matches_installed_trl() -> None:
    """The table's enumerations are what the installed TRL documents for each option."""
    trl = pytest.importorskip("trl")
    import inspect

    source = inspect.getsource(trl.trainer.grpo_config)
    for value in trl_versions.accepted("loss_type", trl.__version__):
        assert f"'{value}'" in source or f'"{value}"' in source, value


def test_options_reach_the_job_config(tmp_path: Path) -> None:
    job = grpo_job(tmp_path, 'loss_type = "grpo"  scale_rewards = none  epsilon = 0.2  epsilon_high = 0.28 '
                             "importance_sampling_level = sequence  top_entropy_quantile = 0.2 "
                             "mask_truncated_completions = true  num_iterations = 2  top_p = 0.9  top_k = 50 "
                             "repetition_penalty = 1.1  dynamic_sampling = true  max_redraws = 2")
    assert (job.training.loss_type, job.training.scale_rewards, job.training.epsilon_high, job.training.importance_sampling_level) == (
        "grpo", "none", 0.28, "sequence")
    assert (job.training.top_entropy_quantile, job.training.mask_truncated_completions, job.training.num_iterations) == (0.2, True, 2)
    assert (job.training.top_p, job.training.top_k, job.training.repetition_penalty, job.training.dynamic_sampling, job.training.max_redraws) == (
        0.9, 50, 1.1, True, 2)


def test_grpo_config_kwargs_pass_them_to_trl(tmp_path: Path) -> None:
    from fleming_dsl.runtime.train.grpo_trainer import grpo_config_kwargs

    job = grpo_job(tmp_path, "loss_type = dr_grpo  scale_rewards = batch  top_k = 5  epsilon_high = 0.3 "
                             "use_vllm = true  vllm_mode = colocate  vllm_gpu_memory_utilization = 0.5")
    kw = grpo_config_kwargs(job.model_copy(update={"training": job.training.model_copy(update={"max_steps": 1})}), cuda=True, bf16_ok=False, vllm_installed=True)
    assert (kw["loss_type"], kw["scale_rewards"], kw["top_k"], kw["epsilon_high"]) == ("dr_grpo", "batch", 5, 0.3)
    assert (kw["use_vllm"], kw["vllm_mode"], kw["vllm_gpu_memory_utilization"]) == (True, "colocate", 0.5)
    trl = pytest.importorskip("trl")
    args = trl.GRPOConfig(**{**kw, "use_cpu": True, "use_vllm": False})  # TRL accepts every key
    assert args.loss_type == "dr_grpo" and args.top_k == 5


BAD = [
    ("loss_unknown", "loss_type = ppo",
     "'loss_type' must be one of grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo; got 'ppo'", None),
    ("scale_bool", "scale_rewards = true",
     "'scale_rewards' must be one of group, batch, none, got true/false", None),
    ("gspo_with_dapo", "importance_sampling_level = sequence  loss_type = dapo",
     "importance_sampling_level = sequence needs a sequence-level loss; loss_type = dapo sums per-token "
     "terms, so each sequence would be weighted by its length (not GSPO)",
     'for GSPO write loss_type = "grpo" (or luspo)'),
    ("gspo_default_loss", "importance_sampling_level = sequence",
     "importance_sampling_level = sequence needs a sequence-level loss; loss_type = dapo sums per-token "
     "terms, so each sequence would be weighted by its length (not GSPO)",
     'for GSPO write loss_type = "grpo" (or luspo)'),
    ("vespo_sequence", "loss_type = vespo  importance_sampling_level = sequence",
     "loss_type = vespo computes sequence-level weights itself and needs importance_sampling_level = token",
     "remove importance_sampling_level"),
    ("luspo_token", "loss_type = luspo",
     "loss_type = luspo is a sequence-level loss and needs importance_sampling_level = sequence",
     'add importance_sampling_level = "sequence"'),
    ("clip_unordered", "epsilon = 0.3  epsilon_high = 0.2",
     "epsilon_high (0.2) must be >= epsilon (0.3): it widens the upper clip bound (DAPO's clip-higher)",
     "use epsilon_high >= 0.3, e.g. 0.28 as in DAPO"),
    ("iterations_unclipped", "num_iterations = 4  epsilon = 1.5",
     "num_iterations = 4 reuses each rollout batch, which needs the importance ratio clipped, but "
     "epsilon = 1.5 leaves no lower clip bound (1 - epsilon <= 0)", "use epsilon < 1 (TRL's default is 0.2)"),
    ("vllm_option_without_vllm", "vllm_gpu_memory_utilization = 0.5",
     "'vllm_gpu_memory_utilization' has no effect without use_vllm = true", "add use_vllm = true, or remove it"),
    ("colocate_option_on_server", "use_vllm = true  vllm_mode = server  vllm_enable_sleep_mode = true",
     "'vllm_enable_sleep_mode' applies to vllm_mode = colocate", "remove 'vllm_enable_sleep_mode'"),
    ("own_server_option_on_external_server",
     'use_vllm = true  vllm_mode = server  vllm_server_base_url = "http://h:8000"  vllm_tensor_parallel_size = 2',
     "'vllm_tensor_parallel_size' configures the server the stage starts; the external server at "
     "vllm_server_base_url was launched with its own",
     "remove 'vllm_tensor_parallel_size', or remove vllm_server_base_url to start one"),
    ("server_option_on_colocate", "use_vllm = true  vllm_data_parallel_size = 2",
     "'vllm_data_parallel_size' needs vllm_mode = server", 'add vllm_mode = "server"'),
    ("server_url_on_colocate", 'use_vllm = true  vllm_server_base_url = "http://h:8000"',
     "'vllm_server_base_url' needs vllm_mode = server", 'add vllm_mode = "server"'),
    ("server_url_not_url", 'use_vllm = true  vllm_mode = server  vllm_server_base_url = "h:8000"',
     "'vllm_server_base_url' must be an http:// or https:// URL, got 'h:8000'", None),
    ("redraws_without_dynamic", "max_redraws = 3",
     "'max_redraws' has no effect without dynamic_sampling = true", "add dynamic_sampling = true, or remove it"),
    ("top_p_range", "top_p = 0", "'top_p' must be in (0, 1], got 0.0", None),
    ("entropy_range", "top_entropy_quantile = 1.5", "'top_entropy_quantile' must be in (0, 1], got 1.5", None),
    ("iterations_zero", "num_iterations = 0", "'num_iterations' must be >= 1, got 0", None),
]


@pytest.mark.parametrize(("case", "options", "message", "hint"), BAD, ids=[b[0] for b in BAD])
def test_bad_grpo_options(tmp_path: Path, case: str, options: str, message: str, hint: str | None) -> None:
    line, got_hint = first_error(tmp_path, with_rl(options))
    assert line.split(": error: ", 1)[1] == message
    assert line.startswith("spec.flm:14:")  # located on the stage's line
    assert got_hint == hint


def test_generations_one_is_rejected_with_dynamic_sampling(tmp_path: Path) -> None:
    text = MINIMAL.replace(RL, "{ rewards = correct  generations = 1  batch = 4  dynamic_sampling = true }")
    line, _ = first_error(tmp_path, text)
    assert line.endswith("error: 'generations' must be >= 2, got 1")


def test_grpo_options_are_grpo_only(tmp_path: Path) -> None:
    line, _ = first_error(tmp_path, MINIMAL.replace("{ lr = 1e-4 }", "{ lr = 1e-4  loss_type = dapo }"))
    assert line.endswith("error: 'loss_type' applies only to grpo stages")


def test_table_picks_the_row_of_a_version() -> None:
    assert trl_versions.trl_range("1.16.0").low == (1, 0)
    assert trl_versions.trl_range("1.0.0rc1").low == (1, 0)
    assert trl_versions.trl_range("9.0").low == trl_versions.TRL_ACCEPTS[-1].low  # unknown: the newest row


OVERLONG = [
    ("overlong(max_tokens = 16)", "overlong() needs 'buffer'", "overlong(max_tokens = 1024, buffer = 256)"),
    ("overlong(max_tokens = 8, buffer = 16)",
     "overlong(): 'buffer' (16) must be <= max_tokens (8): the penalty ramps over the last buffer tokens", None),
    ("overlong(max_tokens = 8, buffer = 0.5)", "overlong(): 'buffer' must be a whole number >= 1, got 0.5", None),
    ("overlong(max_tokens = 8, buffer = 2, buffr = 2)", "unknown option 'buffr' for overlong()", "did you mean 'buffer'?"),
]


@pytest.mark.parametrize(("call", "message", "hint"), OVERLONG)
def test_bad_overlong_reward(tmp_path: Path, call: str, message: str, hint: str | None) -> None:
    text = MINIMAL.replace('reward correct = choice_match(tag = "answer")',
                           f'reward correct = choice_match(tag = "answer")\nreward long = {call}', 1)
    text = text.replace("rewards = correct ", "rewards = correct + 0.5 * long ", 1)
    line, got_hint = first_error(tmp_path, text)
    assert line.split(": error: ", 1)[1] == message
    assert got_hint == hint


def test_overlong_reward_reaches_the_job(tmp_path: Path) -> None:
    text = MINIMAL.replace('reward correct = choice_match(tag = "answer")',
                           'reward correct = choice_match(tag = "answer")\nreward long = overlong(16, 4)', 1)
    text = text.replace("rewards = correct ", "rewards = correct + 0.5 * long  mask_truncated_completions = true ", 1)
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    job = next(j.config for j in plan(exp, "gen").jobs if isinstance(j.config, jc.GrpoJob))
    term = next(t for t in job.rewards if t.name == "long")
    assert (term.function, dict(term.options), term.weight) == ("overlong", {"max_tokens": 16, "buffer": 4}, 0.5)
    assert job.training.mask_truncated_completions is True


# ---------------------------------------------------------------- experiment-level tracking


def test_track_reaches_every_training_job(tmp_path: Path) -> None:
    text = MINIMAL.replace('experiment "t" { seed = 1 }', 'experiment "t" { seed = 1  track = [tensorboard, mlflow] }')
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert exp.track == ("tensorboard", "mlflow")
    jobs = [j.config for j in plan(exp, "gen").jobs if isinstance(j.config, (jc.SftJob, jc.GrpoJob))]
    assert {(j.job, j.track, j.tracking_dir) for j in jobs} == {
        ("sft_sft1", ("tensorboard", "mlflow"), "runs/t/tracking/sft1"),
        ("grpo_rl", ("tensorboard", "mlflow"), "runs/t/tracking/rl")}


def test_no_track_means_no_tracking_dir(tmp_path: Path) -> None:
    assert grpo_job(tmp_path, "").tracking_dir is None and grpo_job(tmp_path, "").track == ()


def test_unknown_tracker(tmp_path: Path) -> None:
    text = MINIMAL.replace('experiment "t" { seed = 1 }', 'experiment "t" { seed = 1  track = [tensorbord] }')
    line, hint = first_error(tmp_path, text)
    assert line == ("spec.flm:1:37: error: 'track' must be one of tensorboard, trackio, mlflow, wandb; "
                    "got 'tensorbord'")
    assert hint == "did you mean 'tensorboard'?"


def test_rules_judge_every_sweep_point(tmp_path: Path) -> None:
    line, hint = first_error(tmp_path, with_rl("num_iterations = 2  sweep epsilon in [0.2, 1.5]"))
    assert line.split(": error: ", 1)[1] == (
        "num_iterations = 2 reuses each rollout batch, which needs the importance ratio clipped, but "
        "epsilon = 1.5 leaves no lower clip bound (1 - epsilon <= 0)")
    assert hint == "use epsilon < 1 (TRL's default is 0.2)"
