"""Where a configuration field is named differently from the spec word that sets it: one table.

Lowering reads options by their spec word and writes IR fields; the planner copies IR fields into
the job configs under the same names; `fleming explain` maps a job config's fields back to the
spec words with `SPEC_WORDS`, so a reviewer finds the line that set each value.
"""

from __future__ import annotations

from fleming_dsl.lower.schema import RESOURCE_OPTIONS, TRAINING_OPTIONS

SPEC_WORDS: dict[str, str] = {
    # stage options (from their rows in ir.Training) and stage parts
    **{o.field: o.word for o in TRAINING_OPTIONS if o.field},
    "plateau": "until", "miner": "mine_hard", "deepspeed_config": "deepspeed",
    # resources (from their rows), a backend's timeout
    **{o.field: o.word for o in RESOURCE_OPTIONS if o.field}, "timeout_s": "timeout",
    # sample: the metapath and the walk
    "hops_min": "hops", "hops_max": "hops", "relations": "path", "node_types": "path",
    "start_type": "path", "alpha": "weight", "near_distractors": "distractors",
    # evaluate
    "benchmarks": "on", "backend": "engine", "tensor_parallel": "gpus",
}
