"""The values completion offers for an option, read off the written type in the option table."""

from __future__ import annotations

import pytest

from fleming_dsl.lower import options as table
from fleming_dsl.lsp.complete import enumeration


@pytest.mark.parametrize(("block", "option", "offered"), [
    ("stage", "deepspeed", [("none", False), ("zero2", False), ("zero3", False), ("zero3_offload", False)]),
    ("stage", "bf16", [("true", False), ("false", False)]),
    ("stage", "until", [("plateau", True)]),
    ("stage", "lr", []),
    ("sample", "weight", [("uniform", False), ("inverse_degree", False)]),
    ("sample", "distractors", [("same_type", True)]),
    ("model", "backend", [("vllm", True), ("transformers", True), ("openai", True), ("template", True)]),
    ("distill", "refine", [("backtrack", False), ("explore", False), ("self_correct", False)]),
    ("distill", "shards", [("auto", False)]),
    ("dedupe()", "method", [("exact", False), ("minhash", False)]),
    ("experiment", "workdir", []),
    ("resources", "time", []),
])
def test_enumeration_of_an_options_type(block: str, option: str, offered: list[tuple[str, bool]]):
    assert list(enumeration(table.block(block).option(option).type)) == offered
