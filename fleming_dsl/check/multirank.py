"""Checks that stop known multi-rank / multi-GPU training failures at `fleming check`.

Each rule reads a GRPO or SFT stage's written options (and its `resources` block) on the merged
AST and yields located diagnostics, like the rules in `rules.py`:

- `grpo_generations_fit_ranks`: TRL's GRPO splits each generation batch over *all* ranks in
  whole groups of `generations` completions, so `batch x grad_accum x ranks` (ranks = nodes x
  max(gpus, 1)) must be a multiple of `generations`; TRL raises at start-up otherwise.
- `zero3_lora_supported`: LoRA adapters under ZeRO-3 need peft, accelerate and transformers at
  least at the versions peft documents for it ("Use PEFT QLoRA and DeepSpeed with ZeRO3");
  checked against what is installed here (importlib.metadata: nothing heavy is imported), and
  only for the packages that are installed.

`billions_of_parameters` (the size in a policy's hub name) also serves `check/rollout.py`, which
fits vLLM rollouts into the declared GPUs on resolved values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import metadata

from fleming_dsl.check.predicates import batch_problem, smallest_batch
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast

ZERO3 = ("zero3", "zero3_offload")
# peft docs, accelerate/deepspeed.md, "Use PEFT QLoRA and DeepSpeed with ZeRO3": the versions
# from which adapters are created and gathered correctly on parameters ZeRO-3 partitions at load.
ZERO3_LORA_MINIMUM = (("peft", "0.10.0"), ("accelerate", "0.28.0"), ("transformers", "4.40.0"))
_PARAMS_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)[Bb](?![A-Za-z0-9])")

TRAINING_DEFAULTS = {"batch": 8, "grad_accum": 1, "generations": 8}  # ir.Training's defaults


def _option(block: ast.Block | None, key: str) -> ast.Option | None:
    if block is None:
        return None
    return next((o for o in reversed(block.options()) if o.key.name == key), None)


def _sub_block(block: ast.Block | None, name: str) -> ast.Entry | None:
    return next((i for i in (block.items if block else ())
                 if isinstance(i, ast.Entry) and i.name.name == name), None)


def _int(block: ast.Block | None, key: str, default: int) -> int | None:
    """A written integer option, the default when unwritten, None when not a plain number."""
    option = _option(block, key)
    if option is None:
        return default
    value = option.value
    return value.value if isinstance(value, ast.Num) and isinstance(value.value, int) else None


def ranks(stage: ast.StageDecl) -> int | None:
    """Training processes of a stage: nodes x max(gpus, 1) from its resources block."""
    entry = _sub_block(stage.block, "resources")
    block = entry.block if entry else None
    nodes, gpus = _int(block, "nodes", 1), _int(block, "gpus", 0)
    if nodes is None or gpus is None:
        return None
    return nodes * max(gpus, 1)


def _stages(program: ast.Program, method: str | None = None) -> Iterator[ast.StageDecl]:
    for decl in program.decls:
        if isinstance(decl, ast.StageDecl) and (method is None or decl.method.func.name == method):
            yield decl


def _deepspeed(stage: ast.StageDecl) -> tuple[str | None, ast.Option | None]:
    option = _option(stage.block, "deepspeed")
    if option is not None and isinstance(option.value, ast.Name):
        return option.value.name, option
    return None, option


# ---------------------------------------------------------------- GRPO batch geometry


def grpo_generations_fit_ranks(program: ast.Program) -> Iterator[Diagnostic]:
    for stage in _stages(program, "grpo"):
        mode = _option(stage.block, "vllm_mode")
        if mode is not None and getattr(mode.value, "value", getattr(mode.value, "name", None)) == "server":
            continue  # a server takes GPUs of the allocation: stages.batch_fits_generations judges it
        values = {k: _int(stage.block, k, v) for k, v in TRAINING_DEFAULTS.items()}
        count = ranks(stage)
        if count is None or any(v is None or v < 1 for v in values.values()):
            continue  # lowering reports unreadable values
        batch, grad_accum, generations = values["batch"], values["grad_accum"], values["generations"]
        problem = batch_problem(batch, grad_accum, generations, count)
        if problem is None:
            continue
        where = _option(stage.block, "generations") or _option(stage.block, "batch")
        yield Diagnostic(
            f"stage {stage.name.name}: {problem}", where.span if where else stage.name.span,
            hint=f"TRL's GRPO splits each generation batch over all ranks in whole groups of "
                 f"generations; use batch = {smallest_batch(batch, grad_accum, count, generations)}")


# ---------------------------------------------------------------- ZeRO-3 with LoRA


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def too_old_for_zero3_lora(versions: Callable[[str], str | None] = installed_version) -> list[str]:
    """`name installed < minimum` for each installed package below its ZeRO-3 + LoRA minimum."""
    out = []
    for package, minimum in ZERO3_LORA_MINIMUM:
        have = versions(package)
        if have is not None and _version(have) < _version(minimum):
            out.append(f"{package} {have} < {minimum}")
    return out


def zero3_lora_supported(program: ast.Program,
                         versions: Callable[[str], str | None] = installed_version) -> Iterator[Diagnostic]:
    old: list[str] | None = None
    for stage in _stages(program):
        stage_name, option = _deepspeed(stage)
        uses_lora = _sub_block(stage.block, "lora") is not None or (
            (flag := _option(stage.block, "lora")) is not None
            and isinstance(flag.value, ast.Bool) and flag.value.value)
        if stage_name not in ZERO3 or not uses_lora or option is None:
            continue
        if old is None:
            old = too_old_for_zero3_lora(versions)
        if old:
            yield Diagnostic(
                f"stage {stage.name.name}: LoRA under DeepSpeed {stage_name} needs newer libraries "
                f"than are installed ({', '.join(old)})", option.span,
                hint="upgrade them, or use deepspeed = zero2 (adapters are small; ZeRO-2 suffices)")


# ---------------------------------------------------------------- the policy's size


def billions_of_parameters(program: ast.Program, name: str,
                           memo: dict[str, float | None] | None = None) -> float | None:
    """The parameter count (in billions) in a model's hub name, following stages to their init.

    The init chain is walked in a loop (it may be 100,000 stages long); `memo`, shared by the
    calls of one rule, gives every stage on a walked chain its answer, so the calls stay linear."""
    memo = {} if memo is None else memo
    by_name = memo.setdefault("\0decls", {})  # type: ignore[arg-type]
    if not by_name:
        for d in program.decls:
            by_name.setdefault(d.name.name, d)
    chain: list[str] = []
    found: float | None = None
    while True:
        if name in memo:
            found = memo[name]
            break
        decl = by_name.get(name)
        if decl is None or name in chain:
            break
        chain.append(name)
        if isinstance(decl, ast.StageDecl):
            init = decl.method.args[0] if decl.method.args else None
            if not isinstance(init, ast.Name):
                break
            name = init.name
            continue
        if isinstance(decl, ast.ModelDecl) and decl.source.func.name == "hf" and decl.source.args:
            hub = decl.source.args[0]
            if isinstance(hub, ast.Str):
                params = _PARAMS_IN_NAME.findall(hub.value.split("/")[-1])
                found = float(params[-1]) if params else None
        break
    for link in chain:
        memo[link] = found
    return found


RULES: tuple[Callable[[ast.Program], Iterator[Diagnostic]], ...] = (
    grpo_generations_fit_ranks, zero3_lora_supported,
)
