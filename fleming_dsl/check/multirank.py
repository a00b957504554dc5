"""LoRA under ZeRO-3: a multi-GPU training failure stopped at `fleming check`.

`zero3_lora_supported` (run after lowering, on the resolved `deepspeed` and `lora` of every
stage): LoRA adapters under ZeRO-3 need peft, accelerate and transformers at least at the
versions peft documents for it ("Use PEFT QLoRA and DeepSpeed with ZeRO3"); checked against what
is installed here (importlib.metadata: nothing heavy is imported), and only for the packages that
are installed. The batch geometry over ranks is `stages.batch_fits_generations`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import metadata

from fleming_dsl.check.common import Checked, option_key
from fleming_dsl.errors import Diagnostic
from fleming_dsl.spec import ast

ZERO3 = ("zero3", "zero3_offload")  # the DeepSpeed stages that partition the parameters
# peft docs, accelerate/deepspeed.md, "Use PEFT QLoRA and DeepSpeed with ZeRO3": the versions
# from which adapters are created and gathered correctly on parameters ZeRO-3 partitions at load.
ZERO3_LORA_MINIMUM = (("peft", "0.10.0"), ("accelerate", "0.28.0"), ("transformers", "4.40.0"))


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


def zero3_lora_supported(c: Checked,
                         versions: Callable[[str], str | None] = installed_version) -> Iterator[Diagnostic]:
    """Every stage (every sweep point) training LoRA adapters under ZeRO-3 has the libraries for it."""
    assert c.experiment is not None
    old: list[str] | None = None
    reported: set = set()
    for stage in c.experiment.stages:
        t = stage.training
        if t.deepspeed not in ZERO3 or t.lora is None or stage.span in reported:
            continue
        reported.add(stage.span)  # the points of one sweep share their declaration's line
        if old is None:
            old = too_old_for_zero3_lora(versions)
        if not old:
            return
        decl = c.decl_at(stage.span)
        key = option_key(decl.block if isinstance(decl, ast.StageDecl) else None, "deepspeed")
        name = decl.name.name if decl is not None else stage.name
        yield Diagnostic(
            f"stage {name}: LoRA under DeepSpeed {t.deepspeed} needs newer libraries "
            f"than are installed ({', '.join(old)})", key.span if key else stage.span,
            hint="upgrade them, or use deepspeed = zero2 (adapters are small; ZeRO-2 suffices)")


zero3_lora_supported.after_lowering = True  # type: ignore[attr-defined]
