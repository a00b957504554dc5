"""Lowering of one stage: training options, data (buckets, hard-sample miner), rewards, stop
conditions and resources. Sweeps are expanded before this, in `sweeps.py`."""

from __future__ import annotations

import math

from typing import Any

from fleming_dsl import ir
from fleming_dsl.errors import did_you_mean
from fleming_dsl.lower.context import LowerContext
from fleming_dsl.lower import schema
from fleming_dsl.lower.schema import MANAGED_TRL_FIELDS, TRAINING_OPTIONS
from fleming_dsl.lower.trl_fields import GRPO_CONFIG_FIELDS, SFT_CONFIG_FIELDS
from fleming_dsl.lower.values import (
    MISSING,
    Options,
    at_least,
    describe,
    one_of,
    to_bool,
    to_int,
    to_name,
    value_span,
)
from fleming_dsl.spec import ast


GRPO_ONLY = (*(o.word for o in TRAINING_OPTIONS if o.methods == ("grpo",)), "rewards")
_SFT_ONLY = tuple(o.word for o in TRAINING_OPTIONS if o.methods == ("sft",))
_SFT_ONLY_WORDS = dict.fromkeys(_SFT_ONLY)
TRL_FIELDS = {"sft": SFT_CONFIG_FIELDS, "grpo": GRPO_CONFIG_FIELDS}
_GRPO_ONLY_WORDS = dict.fromkeys(GRPO_ONLY)
_TRAINING_WORDS = dict.fromkeys(o.word for o in TRAINING_OPTIONS)


class StageLowering:
    """Lowers one stage declaration (one sweep point of it) to an `ir.Stage`."""

    def __init__(self, ctx: LowerContext):
        self.ctx = ctx
        self.diags = ctx.diags

    def stage_data(self, value: ast.Value | None, stage: str) -> ir.StageData:
        if isinstance(value, ast.Name):
            return ir.StageData(dataset=value.name)
        if isinstance(value, ast.Index):
            buckets = []
            for key in value.keys:
                b = one_of(ir.BUCKETS)(key, "bucket", self.diags)
                if b is not MISSING:
                    buckets.append(b)
            return ir.StageData(dataset=value.base.name, buckets=tuple(buckets))
        if isinstance(value, ast.Call) and value.func.name == "mine_hard":
            return ir.StageData(miner=self.miner(value))
        span = value_span(value) if value is not None else None
        self.diags.error(f"stage {stage} needs its data: a dataset, dataset[easy, moderate] or "
                         "mine_hard(pool, pass < 0.5)", span)
        return ir.StageData()

    def miner(self, call: ast.Call) -> ir.Miner:
        fields: dict = {}
        if not call.args or not isinstance(call.args[0], ast.Name):
            self.diags.error("mine_hard() needs the pool to mine first: mine_hard(clean, pass < 0.5)", call.span)
        else:
            fields["pool"] = call.args[0].name
        for arg in call.args[1:]:
            if isinstance(arg, ast.Compare) and arg.subject.name == "pass" and arg.op in ("<", "<="):
                fields["pass_below"] = arg.number
                if not 0 < arg.number <= 1:
                    self.diags.error(f"'pass' threshold must be in (0, 1], got {arg.number}", arg.span)
            else:
                self.diags.error("mine_hard() takes the pool and a condition such as pass < 0.5",
                                 value_span(arg))
        kw = Options.of_call(call, "mine_hard()", self.diags)
        fields["refresh"] = kw.get("refresh", to_int, check=at_least(1))
        fields["samples"] = kw.get("samples", to_int, check=at_least(1))
        fields["estimate"] = kw.get("estimate", to_int, check=at_least(1))
        ratio = kw.raw("ratio")
        if isinstance(ratio, ast.Ratio):
            if ratio.left <= 0 or ratio.right <= 0:
                self.diags.error("'ratio' parts must be > 0", ratio.span)
            fields["solved_ratio"], fields["failed_ratio"] = ratio.left, ratio.right
        elif ratio is not None:
            self.diags.error(f"'ratio' must be solved:failed such as 1:2, got {describe(ratio)}",
                             value_span(ratio))
        kw.finish()
        return ir.Miner(**{"pool": "", **{k: v for k, v in fields.items() if v is not None}})

    def stage(self, d: ast.StageDecl, init: str, overrides: dict, point: dict,
              declared: str | None = None) -> ir.Stage | None:
        method = d.method.func.name
        if method not in ("sft", "grpo"):
            self.ctx.unknown_function(d.method, "stage method", ("sft", "grpo"))
            return None
        if len(d.method.args) != 2:
            self.diags.error(f"{method}() takes the init model and the data: {method}(base, clean)",
                             d.method.span)
        data = self.stage_data(d.method.args[1] if len(d.method.args) > 1 else None, d.name.name)
        if method == "sft" and data.miner is not None:
            self.diags.error("mine_hard() mines data for grpo stages; an sft stage trains on a dataset",
                             value_span(d.method.args[1]))
        Options.of_call(d.method, f"{method}()", self.diags).finish()
        block = d.block
        written = block.options() if block else ()
        pairs = [(o.key, overrides[o.key.name][1] if o.key.name in overrides else o.value) for o in written]
        pairs += [(k, v) for name, (k, v) in overrides.items() if all(o.key.name != name for o in written)]
        opts = Options(pairs, f"stage {declared or d.name.name}", self.diags)
        subs = self.ctx.sub_blocks(block, ("resources", "lora", "trl"), f"stage {d.name.name}")
        if method == "sft":
            grpo_written = opts.expect(_GRPO_ONLY_WORDS)
            for key in sorted(grpo_written, key=GRPO_ONLY.index):
                self.diags.error(f"'{key}' applies only to grpo stages", opts.key_span(key))
        else:
            for key in sorted(opts.expect(_SFT_ONLY_WORDS), key=_SFT_ONLY.index):
                self.diags.error(f"'{key}' applies only to sft stages", opts.key_span(key))
        # only the options written are read (a stage writes a few of the ~40): same result, a
        # fraction of the calls when 100,000 stages are lowered
        written_training = opts.expect(_TRAINING_WORDS)
        t = {o.target: opts.get(o.word, o.convert, check=o.check) for o in TRAINING_OPTIONS
             if o.word in written_training}
        lora_flag = opts.get("lora", to_bool)
        if "lora" in subs or lora_flag:
            t["lora"] = self.lora(subs.get("lora"))
        if "trl" in subs:
            t["trl"] = self.trl_arguments(subs["trl"], method)
        if t.get("warmup_ratio") is not None and t.get("warmup_steps") is not None:
            self.diags.error("set 'warmup_steps' or 'warmup_ratio', not both",
                             opts.key_span("warmup_ratio"))
        training = ir.Training(**{k: v for k, v in t.items() if v is not None})
        rewards = self.reward_terms(opts.raw("rewards"))
        if method == "grpo" and not rewards and opts.raw("rewards") is None:
            self.diags.error(f"grpo stage {d.name.name} needs rewards", d.name.span,
                             hint="rewards = 1.0 * correct + 0.1 * form")
        plateau = self.plateau(opts.raw("until"))
        if method == "sft":  # an unknown option's "expected" list names what an sft stage takes
            written_keys = {key.name for key, _ in opts.pairs}
            opts.unlisted = _GRPO_ONLY_WORDS.keys() - written_keys
        opts.finish()
        return ir.Stage(name=d.name.name, span=d.span, method=method, init=init, data=data,
                        training=training, rewards=rewards, plateau=plateau,
                        resources=self.ctx.resources(subs.get("resources"), f"stage {d.name.name}"),
                        sweep=point)

    def trl_arguments(self, block: ast.Block, method: str) -> tuple[tuple[str, Any], ...]:
        """`trl { key = value }`: any other field of TRL's SFTConfig/GRPOConfig, by TRL's name,
        passed to the trainer config as written; a name TRL does not know, or one a stage option
        sets, is an error here."""
        known = TRL_FIELDS[method]
        config = "SFTConfig" if method == "sft" else "GRPOConfig"
        found: dict[str, Any] = {}
        for option in block.options():
            key = option.key.name
            if key not in known:
                self.diags.error(f"TRL's {config} has no field '{key}'", option.key.span,
                                 hint=did_you_mean(key, known) or
                                 "the names are those of TRL's config class (its documentation)")
                continue
            if key in MANAGED_TRL_FIELDS:
                self.diags.error(f"'{key}' is set by fleming (a stage option or the job), not in "
                                 "a trl block", option.key.span,
                                 hint="docs/language.md lists the stage options")
                continue
            value = option.value
            if isinstance(value, (ast.Num, ast.Str, ast.Bool)):
                found[key] = value.value
            else:
                self.diags.error(f"trl option '{key}' takes a number, a string, true or false, "
                                 f"got {describe(value)}", value_span(value))
        return tuple(sorted(found.items()))

    def lora(self, block: ast.Block | None) -> ir.Lora:
        opts = Options.of_block(block, "lora", self.diags)
        fields = schema.read(schema.LORA_OPTIONS, opts)
        opts.finish()
        return ir.Lora(**fields)

    def reward_terms(self, value: ast.Value | None) -> tuple[ir.RewardTerm, ...]:
        if value is None:
            return ()
        if isinstance(value, ast.Name):
            return (ir.RewardTerm(reward=value.name, weight=1.0),)
        if isinstance(value, ast.Sum):
            for t in value.terms:
                if not math.isfinite(t.weight):  # 1e999 * correct, or 400 nines
                    self.diags.error(f"the weight of '{t.reward.name}' must be a finite number",
                                     t.reward.span, hint="e.g. rewards = 1.0 * correct + 0.1 * form")
            return tuple(ir.RewardTerm(reward=t.reward.name, weight=t.weight) for t in value.terms
                         if math.isfinite(t.weight))
        self.diags.error(f"'rewards' must be a reward or a weighted sum such as 1.0 * correct + 0.1 * form, "
                         f"got {describe(value)}", value_span(value))
        return ()

    def plateau(self, value: ast.Value | None) -> ir.Plateau | None:
        if value is None:
            return None
        if not isinstance(value, ast.Call) or value.func.name != "plateau":
            self.diags.error("'until' must be plateau(metric, patience = N)", value_span(value))
            return None
        metric = to_name(value.args[0], "metric", self.diags) if value.args else MISSING
        self.ctx.no_positional(value, 1)
        kw = Options.of_call(value, "plateau()", self.diags)
        fields = schema.read(schema.PLATEAU_OPTIONS, kw)
        if "metric" not in fields and metric is not MISSING:  # plateau(reward): the metric, positional
            fields["metric"] = metric
        kw.finish()
        return ir.Plateau(**fields)
