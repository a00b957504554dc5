"""Which values the enumerated GRPOConfig options take, per range of TRL versions.

Lowering validates `loss_type`, `scale_rewards`, `importance_sampling_level` and `vllm_mode`
against the row of the installed TRL (read from package metadata: no trl import, so `fleming
check` stays fast), the newest row when TRL is not installed here (a laptop that only compiles);
the check rule `grpo.trl_version_supported` warns when the installed TRL is outside every row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class TrlRange:
    """The values a range of TRL versions accepts (checked against their `grpo_config.py`)."""

    low: tuple[int, ...]  # inclusive
    high: tuple[int, ...]  # exclusive
    accepts: dict[str, tuple[str, ...]]


# Verified by reading trl/trainer/grpo_config.py and grpo_trainer.py of TRL 1.0.0 and 1.16.0:
# both list the same loss types, reward scalings, importance-sampling levels and vLLM modes.
TRL_ACCEPTS: tuple[TrlRange, ...] = (
    TrlRange((1, 0), (2, 0), {
        "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
        "scale_rewards": ("group", "batch", "none"),
        "importance_sampling_level": ("token", "sequence"),
        "vllm_mode": ("colocate", "server"),
    }),
)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def installed_trl() -> str | None:
    """The installed TRL version from package metadata (no import), or None."""
    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


def accepted(option: str, version: str | None = None) -> tuple[str, ...]:
    """The values `option` takes under TRL `version` (the installed one by default)."""
    return trl_range(version).accepts[option]


def trl_range(version: str | None = None) -> TrlRange:
    """The table row for `version`; the newest row when TRL is absent or outside every row."""
    text = version if version is not None else installed_trl()
    if text is not None:
        v = _version_tuple(text)
        for row in TRL_ACCEPTS:
            if row.low <= v < row.high:
                return row
    return TRL_ACCEPTS[-1]


def supported(version: str) -> bool:
    """Whether a row of the table covers TRL `version`."""
    v = _version_tuple(version)
    return any(row.low <= v < row.high for row in TRL_ACCEPTS)


def _dotted(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def supported_text() -> str:
    """The table's versions as pip writes them: ">=1.0,<2.0" (rows joined by " or ")."""
    return " or ".join(f">={_dotted(r.low)},<{_dotted(r.high)}" for r in TRL_ACCEPTS)
