"""Where a GRPO stage's rollouts run, and whether they fit: the arithmetic of docs/scale.md.

Pure functions over resolved values (an `ir.Training` and its `ir.Resources`), for the rule
`vllm_fits` (run after lowering, so swept and defaulted values are the ones judged). The split of
a server-mode allocation is `vocabulary.server_split`, from which the emitter plans the launch.

- Colocate (TRL's `vllm_mode = "colocate"`): every trainer process hosts vLLM; a tensor-parallel
  group of `vllm_tensor_parallel_size` GPUs shares one engine. Each GPU holds the policy's bf16
  weights / tensor parallel, plus KV cache, inside `vllm_gpu_memory_utilization` of its memory;
  the rest is training's (ZeRO-3 shards, activations).
- Server (`vllm_mode = "server"`, no `vllm_server_base_url`): the stage starts `trl vllm-serve`
  on tensor x data parallel GPUs of its own allocation and trains on the others. On one node the
  GPUs are split; on several, the server takes the first whole nodes.
KV headroom is one group (`generations` sequences of prompt + completion tokens): the least that
lets vLLM decode a prompt's whole group at once; less and it preempts inside a group.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from fleming_dsl import ir
from fleming_dsl.spec.text import as_float
from fleming_dsl.check.common import Checked, option_key
from fleming_dsl.check.multirank import ZERO3
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import server_split, starts_server

BYTES_PER_PARAM_BF16 = 2
# KV cache per token per billion parameters, bf16: Qwen2.5-7B (28 layers x 4 KV heads x 128) and
# Qwen3-32B (64 x 8 x 128) both store 2 x layers x kv_heads x head_dim x 2 bytes ~ 8.2 KB per token
# per billion parameters; grouped-query models of other families are within 2x of it.
KV_BYTES_PER_TOKEN_PER_BILLION = 8_192
# Above this size generate() under ZeRO-3 (every layer gathered for every decoded token) takes
# hours per step at the recipe's completion lengths (docs/scale.md): warn, pointing at vLLM.
ZERO3_GENERATE_MAX_BILLIONS = 3.0
PROMPT_TOKENS = 1_024  # prompt allowance when vllm_max_model_length does not bound the sequence
GB = 1024 ** 3


@dataclass(frozen=True)
class Need:
    """What one vLLM GPU holds, in GB, against what it is given."""

    weights: float
    kv: float
    budget: float

    @property
    def fits(self) -> bool:
        return self.weights + self.kv <= self.budget


def vllm_need(t: ir.Training, res: ir.Resources, billions: float) -> Need:
    tp = t.vllm_tensor_parallel_size
    tokens = t.vllm_max_model_length or PROMPT_TOKENS + t.max_completion_length
    # as floats: generations and lengths are the user's numbers (2**64 + 1 overflows an int product)
    kv_group = as_float(t.generations) * as_float(tokens) * KV_BYTES_PER_TOKEN_PER_BILLION * billions / GB
    share = ir.vllm_memory_share(t.vllm_mode, t.vllm_gpu_memory_utilization)
    return Need(weights=billions * BYTES_PER_PARAM_BF16 / tp, kv=kv_group / tp,
                budget=share * res.gpu_mem_mb / 1024)


def _gb(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def smallest_fitting_tp(t: ir.Training, res: ir.Resources, billions: float) -> int | None:
    """The least tensor parallel size (a divisor of the node's GPUs) at which vLLM fits."""
    for tp in (d for d in range(1, res.gpus + 1) if res.gpus % d == 0):
        if vllm_need(t.model_copy(update={"vllm_tensor_parallel_size": tp}), res, billions).fits:
            return tp
    return None


def problems(t: ir.Training, res: ir.Resources, billions: float | None) -> Iterator[tuple[str, str, str]]:
    """(option to point at, message, hint) for each way the stage's rollouts cannot be laid out."""
    if not t.use_vllm or (t.vllm_mode == "server" and not starts_server(t)):
        return
    tp = t.vllm_tensor_parallel_size
    if t.vllm_mode == "server":
        split = server_split(t, res)
        if isinstance(split, str):
            yield ("vllm_tensor_parallel_size", split,
                   "add nodes (the server takes whole nodes on several), or lower "
                   "vllm_tensor_parallel_size / vllm_data_parallel_size")
            return
    elif res.gpus and (tp > res.gpus or res.gpus % tp):
        yield ("vllm_tensor_parallel_size",
               f"vllm_tensor_parallel_size = {tp} must divide the GPUs of a node (gpus = {res.gpus}): "
               "colocated vLLM groups the trainer processes of one node",
               f"use a divisor of {res.gpus}")
        return
    if billions is None or res.gpus == 0:
        return  # no size in the model's name, or no GPU: nothing to weigh
    need = vllm_need(t, res, billions)
    if need.fits:
        return
    share = ir.vllm_memory_share(t.vllm_mode, t.vllm_gpu_memory_utilization)
    where = "colocated vLLM" if t.vllm_mode == "colocate" else "the vLLM server"
    message = (f"{where} does not fit: each GPU holds {_gb(need.weights)} GB of the {billions:g}B policy "
               f"(bf16 / vllm_tensor_parallel_size = {tp}) plus {_gb(need.kv)} GB of KV cache for a group "
               f"of {t.generations} sequences, more than vllm_gpu_memory_utilization = {share:g} of each "
               f"{_gb(res.gpu_mem_mb / 1024)} GB GPU ({_gb(need.budget)} GB)")
    fitting = smallest_fitting_tp(t, res, billions)
    if t.vllm_mode == "colocate":
        hint = (f"set vllm_tensor_parallel_size = {fitting} (or raise vllm_gpu_memory_utilization), or "
                if fitting else "raise vllm_gpu_memory_utilization, or ")
        hint += 'set vllm_mode = "server" to give vLLM GPUs of its own'
    else:
        hint = (f"set vllm_tensor_parallel_size = {fitting}" if fitting
                else "raise vllm_tensor_parallel_size across more GPUs") + " or raise vllm_gpu_memory_utilization"
    word = "vllm_tensor_parallel_size" if fitting else "vllm_gpu_memory_utilization"
    yield word, message, hint


def vllm_fits(c: Checked) -> Iterator[Diagnostic]:
    """Every vLLM GRPO stage (every sweep point) lays out on the GPUs its resources declare."""
    assert c.experiment is not None
    memo: dict = {}
    reported: set[tuple] = set()
    for stage in c.experiment.stages:
        if stage.method != "grpo" or not stage.training.use_vllm:
            continue
        decl = c.decl_at(stage.span)
        name = decl.name.name if decl is not None else stage.name
        billions = billions_of_parameters(c.declarations, stage.init, memo)
        block = decl.block if isinstance(decl, ast.StageDecl) else None
        for word, message, hint in problems(stage.training, stage.resources, billions):
            if (stage.span, message) in reported:
                continue
            reported.add((stage.span, message))
            key = option_key(block, word) or option_key(block, "use_vllm")
            yield Diagnostic(f"stage {name}: {message}", key.span if key else stage.span, hint=hint)


vllm_fits.after_lowering = True  # type: ignore[attr-defined]


def zero3_generate_is_slow(c: Checked) -> Iterator[Diagnostic]:
    """A warning for a GRPO stage that rolls a large policy out with transformers under ZeRO-3."""
    assert c.experiment is not None
    memo: dict = {}
    reported: set = set()
    for stage in c.experiment.stages:
        t = stage.training
        if (stage.method != "grpo" or t.use_vllm or t.deepspeed not in ZERO3
                or stage.resources.gpus == 0 or stage.span in reported):
            continue
        reported.add(stage.span)
        decl = c.decl_at(stage.span)
        name = decl.name.name if decl is not None else stage.name
        billions = billions_of_parameters(c.declarations, stage.init, memo)
        if billions is None or billions <= ZERO3_GENERATE_MAX_BILLIONS:
            continue
        block = decl.block if isinstance(decl, ast.StageDecl) else None
        key = option_key(block, "use_vllm") or option_key(block, "deepspeed")
        yield Diagnostic(f"stage {name}: rolls out the {billions:g}B policy with transformers' generate under "
                         f"{t.deepspeed}, which gathers every layer's weights for every decoded token",
                         key.span if key else stage.span, severity="warning",
                         hint="set use_vllm = true (colocated with vllm_tensor_parallel_size, or "
                              'vllm_mode = "server"); docs/scale.md has the arithmetic')


zero3_generate_is_slow.after_lowering = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the policy's size

_PARAMS_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)[Bb](?![A-Za-z0-9])")


def billions_of_parameters(decls: Mapping[str, ir.Decl], name: str,
                           memo: dict[str, float | None] | None = None) -> float | None:
    """The parameter count (in billions) in a model's hub name, following stages to their init.

    The init chain is walked in a loop (it may be 100,000 stages long); `memo`, shared by the
    calls of one rule, gives every stage on a walked chain its answer, so the calls stay linear."""
    memo = {} if memo is None else memo
    chain: list[str] = []
    found: float | None = None
    while name not in memo:
        decl = decls.get(name)
        if decl is None or name in chain:
            break
        chain.append(name)
        if isinstance(decl, ir.Stage):
            name = decl.init
            continue
        if isinstance(decl, ir.Model) and decl.source == "hf":
            params = _PARAMS_IN_NAME.findall(decl.ref.split("/")[-1])
            found = float(params[-1]) if params else None
        break
    else:
        found = memo[name]
    for link in chain:
        memo[link] = found
    return found
