"""The multi-rank checks, on resolved values: located errors, word for word, and what they let
through."""

from __future__ import annotations

from pathlib import Path

import pytest
from flm_fixtures import MINIMAL, write_project

from fleming_dsl.check import multirank, rollout
from fleming_dsl.check.common import Checked
from fleming_dsl.compiler import load_experiment
from fleming_dsl.lower.declarations import lower
from fleming_dsl.errors import SpecError
from fleming_dsl.spec.loader import load_program

RL = "stage rl = grpo(sft1, clean[easy]) { rewards = correct  generations = 2  batch = 4 }"


def spec(rl_options: str, extra: str = "") -> str:
    assert RL in MINIMAL
    text = MINIMAL.replace(RL, f"stage rl = grpo(sft1, clean[easy]) {{ rewards = correct  {rl_options} }}")
    return text + extra


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    return [d.first_line() for d in info.value.diagnostics]


def checked(tmp_path: Path, text: str) -> Checked:
    """The program and its IR, as a rule run after lowering reads them."""
    program = load_program(write_project(tmp_path, text), tmp_path)
    return Checked.of(program, lower(program, tmp_path))


def test_generations_must_split_over_all_ranks(tmp_path: Path) -> None:
    text = spec("generations = 16  batch = 4  resources { nodes = 1  gpus = 2 }")
    with pytest.raises(SpecError) as info:
        load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    [diag] = info.value.diagnostics
    assert diag.first_line() == (
        "spec.flm:14:57: error: stage rl: batch x grad_accum x ranks = 4 x 1 x 2 = 8 is not a "
        "multiple of generations (16)")
    assert diag.hint == ("TRL's GRPO splits each generation batch over all ranks in whole groups "
                         "of generations; use batch = 8")


def test_defaults_are_the_irs_own(tmp_path: Path) -> None:
    # batch and grad_accum unwritten: the rule judges ir.Training's defaults (8 and 1), not a
    # copy of them, and points at the option that was written
    text = spec("generations = 16").replace("generations = 2  batch = 4", "")
    assert errors(tmp_path, text) == [
        "spec.flm:14:57: error: stage rl: batch x grad_accum x ranks = 8 x 1 x 1 = 8 is not a "
        "multiple of generations (16)"]


def test_ranks_can_make_a_small_batch_valid(tmp_path: Path) -> None:
    # 4 per device is not a multiple of 8, but 4 x 2 nodes x 1 CPU rank is: TRL accepts it
    text = spec("generations = 8  batch = 4  resources { nodes = 2 }")
    load_experiment(write_project(tmp_path, text), project_root=tmp_path)


def test_zero3_lora_with_old_libraries_is_an_error(tmp_path: Path) -> None:
    text = spec("generations = 2  batch = 4  deepspeed = zero3  lora { r = 8 }")
    program = checked(tmp_path, text)
    old = {"peft": "0.9.0", "accelerate": "1.15.0", "transformers": "4.39.3"}
    [diag] = list(multirank.zero3_lora_supported(program, versions=old.get))
    assert diag.first_line() == (
        "spec.flm:14:85: error: stage rl: LoRA under DeepSpeed zero3 needs newer libraries than are "
        "installed (peft 0.9.0 < 0.10.0, transformers 4.39.3 < 4.40.0)")
    assert diag.hint == "upgrade them, or use deepspeed = zero2 (adapters are small; ZeRO-2 suffices)"
    # recent versions, or a package that is not installed here: nothing to say
    new = {"peft": "0.21.2", "accelerate": "1.15.0", "transformers": "5.24.0"}
    assert list(multirank.zero3_lora_supported(program, versions=new.get)) == []
    assert list(multirank.zero3_lora_supported(program, versions=lambda _: None)) == []
    zero2 = spec("generations = 2  batch = 4  deepspeed = zero2  lora { r = 8 }")
    assert list(multirank.zero3_lora_supported(checked(tmp_path, zero2), old.get)) == []


@pytest.mark.parametrize("name, billions", [
    ("Qwen/Qwen3-32B", 32.0), ("Qwen/Qwen2.5-7B-Instruct", 7.0), ("Qwen/Qwen2.5-1.5B", 1.5),
    ("org/model-without-size", None)])
def test_parameter_count_from_the_hub_name(tmp_path: Path, name: str, billions: float | None) -> None:
    text = MINIMAL.replace('model base = tiny(hidden = 32)', f'model base = hf("{name}")')
    exp = load_experiment(write_project(tmp_path, text), project_root=tmp_path)
    assert rollout.billions_of_parameters(exp.declarations(), "rl") == billions  # rl -> sft1 -> base


def test_shipped_specs_pass_the_multirank_checks() -> None:
    from paths import REPO

    for path in sorted((REPO / "specs").glob("*.flm")):
        program = load_program(path, REPO)
        found = [d.first_line() for d in multirank.zero3_lora_supported(Checked.of(program, lower(program, REPO)))]
        assert found == [], (path.name, found)
