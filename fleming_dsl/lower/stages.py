"""Lowering of stages: training options, data (buckets, hard-sample miner), rewards, stop
conditions, resources, and sweep expansion (see `lower.py` for how sweeps are named).

`StageLowering` is mixed into the lowering of a whole experiment; it uses that class's
`diags`, `unknown_function`, `no_positional`, `no_block` and `sub_blocks`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

from fleming_dsl import ir
from fleming_dsl.errors import did_you_mean
from fleming_dsl.lower.values import (
    MISSING,
    Options,
    at_least,
    describe,
    list_of,
    non_negative,
    one_of,
    positive,
    to_bool,
    to_float,
    to_int,
    to_megabytes,
    to_minutes,
    to_name,
    to_str,
    value_span,
)
from fleming_dsl.spec import ast

_GRPO_ONLY = ("generations", "beta", "max_completion_length", "rewards", "use_vllm", "temperature")


class StageLowering:
    # stages --------------------------------------------------------------
    def stage_data(self, value: ast.Value | None, stage: str) -> ir.StageData:
        if isinstance(value, ast.Name):
            return ir.StageData(dataset=value.name)
        if isinstance(value, ast.Index):
            buckets = []
            for key in value.keys:
                b = one_of(("easy", "moderate", "hard"))(key, "bucket", self.diags)
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

    def resources(self, block: ast.Block | None, where: str) -> ir.Resources:
        opts = Options.of_block(block, f"resources of {where}", self.diags)
        self.no_block(block, f"resources of {where}")
        fields = {
            "nodes": opts.get("nodes", to_int, check=at_least(1)),
            "gpus": opts.get("gpus", to_int, check=non_negative),
            "cpus": opts.get("cpus", to_int, check=at_least(1)),
            "mem_mb": opts.get("mem", to_megabytes, check=positive),
            "time_min": opts.get("time", to_minutes, check=positive),
            "partition": opts.get("partition", to_str),
            "account": opts.get("account", to_str),
        }
        opts.finish()
        return ir.Resources(**{k: v for k, v in fields.items() if v is not None})

    def sub_blocks(self, block: ast.Block | None, allowed: tuple[str, ...], where: str) -> dict:
        out: dict = {}
        for item in block.items if block else ():
            if not isinstance(item, ast.Entry):
                continue
            if item.name.name not in allowed or item.call is not None or item.block is None:
                self.diags.error(f"unexpected '{item.name.name}' in {where}", item.name.span,
                                 expected=(" or ".join(f"{a} {{ ... }}" for a in allowed)) + " or name = value",
                                 hint=did_you_mean(item.name.name, allowed))
                continue
            out[item.name.name] = item.block
        return out

    def stage(self, d: ast.StageDecl, init: str, overrides: dict, point: dict,
              declared: str | None = None) -> ir.Stage | None:
        method = d.method.func.name
        if method not in ("sft", "grpo"):
            self.unknown_function(d.method, "stage method", ("sft", "grpo"))
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
        subs = self.sub_blocks(block, ("resources", "lora"), f"stage {d.name.name}")
        if method == "sft":
            for key in _GRPO_ONLY:
                if opts.raw(key) is not None:
                    self.diags.error(f"'{key}' applies only to grpo stages", opts.key_span(key))
        t = {
            "lr": opts.get("lr", to_float, check=positive),
            "epochs": opts.get("epochs", to_float, check=positive),
            "max_steps": opts.get("max_steps", to_int, check=at_least(1)),
            "batch_size": opts.get("batch", to_int, check=at_least(1)),
            "grad_accum": opts.get("grad_accum", to_int, check=at_least(1)),
            "max_length": opts.get("max_length", to_int, check=at_least(1)),
            "max_completion_length": opts.get("max_completion_length", to_int, check=at_least(1)),
            "warmup_steps": opts.get("warmup_steps", to_int, check=non_negative),
            "generations": opts.get("generations", to_int, check=at_least(2)),
            "beta": opts.get("beta", to_float, check=non_negative),
            "temperature": opts.get("temperature", to_float, check=positive),
            "deepspeed": opts.get("deepspeed", one_of(("none", "zero2", "zero3", "zero3_offload"))),
            "bf16": opts.get("bf16", to_bool),
            "use_vllm": opts.get("use_vllm", to_bool),
            "logging_steps": opts.get("logging_steps", to_int, check=at_least(1)),
            "save_steps": opts.get("save_steps", to_int, check=at_least(1)),
        }
        lora_flag = opts.get("lora", to_bool)
        if "lora" in subs or lora_flag:
            t["lora"] = self.lora(subs.get("lora"))
        training = ir.Training(**{k: v for k, v in t.items() if v is not None})
        unreadable = any(opts.raw(k) is not None and t[f] is None
                         for k, f in (("batch", "batch_size"), ("grad_accum", "grad_accum"),
                                      ("generations", "generations")))
        if method == "grpo" and not unreadable and (training.batch_size * training.grad_accum) % training.generations:
            self.diags.error(
                f"batch ({training.batch_size}) x grad_accum ({training.grad_accum}) must be divisible "
                f"by generations ({training.generations}): TRL's GRPO puts all generations of a prompt "
                "in one batch", opts.key_span("batch") or opts.key_span("generations") or d.name.span,
                hint=f"use batch = {training.generations * max(1, training.batch_size // training.generations)}")
        rewards = self.reward_terms(opts.raw("rewards"))
        if method == "grpo" and not rewards and opts.raw("rewards") is None:
            self.diags.error(f"grpo stage {d.name.name} needs rewards", d.name.span,
                             hint="rewards = 1.0 * correct + 0.1 * form")
        plateau = self.plateau(opts.raw("until"))
        opts.finish()
        return ir.Stage(name=d.name.name, span=d.span, method=method, init=init, data=data,
                        training=training, rewards=rewards, plateau=plateau,
                        resources=self.resources(subs.get("resources"), f"stage {d.name.name}"),
                        sweep=point)

    def lora(self, block: ast.Block | None) -> ir.Lora:
        opts = Options.of_block(block, "lora", self.diags)
        fields = {"r": opts.get("r", to_int, check=at_least(1)),
                  "alpha": opts.get("alpha", to_int, check=at_least(1)),
                  "dropout": opts.get("dropout", to_float, check=non_negative),
                  "target_modules": opts.get("target_modules", list_of(to_str))}
        opts.finish()
        return ir.Lora(**{k: v for k, v in fields.items() if v is not None})

    def reward_terms(self, value: ast.Value | None) -> tuple[ir.RewardTerm, ...]:
        if value is None:
            return ()
        if isinstance(value, ast.Name):
            return (ir.RewardTerm(reward=value.name, weight=1.0),)
        if isinstance(value, ast.Sum):
            return tuple(ir.RewardTerm(reward=t.reward.name, weight=t.weight) for t in value.terms)
        self.diags.error(f"'rewards' must be a reward or a weighted sum such as 1.0 * correct + 0.1 * form, "
                         f"got {describe(value)}", value_span(value))
        return ()

    def plateau(self, value: ast.Value | None) -> ir.Plateau | None:
        if value is None:
            return None
        if not isinstance(value, ast.Call) or value.func.name != "plateau":
            self.diags.error("'until' must be plateau(metric, patience = N)", value_span(value))
            return None
        fields: dict = {}
        if value.args:
            metric = to_name(value.args[0], "metric", self.diags)
            if metric is not MISSING:
                fields["metric"] = metric
        self.no_positional(value, 1)
        kw = Options.of_call(value, "plateau()", self.diags)
        fields["metric"] = kw.get("metric", to_name, default=fields.get("metric"))
        fields["patience"] = kw.get("patience", to_int, check=at_least(1))
        fields["min_delta"] = kw.get("min_delta", to_float, check=non_negative)
        kw.finish()
        return ir.Plateau(**{k: v for k, v in fields.items() if v is not None})

    # sweeps --------------------------------------------------------------
    def sweep_points(self, d: ast.StageDecl) -> list[tuple[str, dict]]:
        """[(name suffix, {option: (key Name, value)})] for the stage's own sweeps (one point if none)."""
        axes = []
        for item in d.block.items if d.block else ():
            if not isinstance(item, ast.SweepItem):
                continue
            if any(k.name == item.key.name for k, _ in (axis[0] for axis in axes)):
                self.diags.error(f"'{item.key.name}' is swept twice in stage {d.name.name}", item.key.span,
                                 hint="list all its values in one sweep")
                continue
            if not isinstance(item.values, ast.ListV) or not item.values.items:
                self.diags.error("a sweep needs a non-empty list of values: sweep lr in [1e-5, 5e-6]",
                                 value_span(item.values))
                continue
            bad = [v for v in item.values.items if not isinstance(v, (ast.Num, ast.Str, ast.Bool, ast.Name))]
            for v in bad:
                self.diags.error("sweep values must be numbers, strings or names", value_span(v))
            texts = [_point_token(v) for v in item.values.items]
            dup = next((v for v, t in zip(item.values.items, texts) if texts.count(t) > 1), None)
            if dup is not None:
                self.diags.error(f"sweep '{item.key.name}' lists a value twice", value_span(dup))
            if not bad and dup is None:
                axes.append([(item.key, v) for v in item.values.items])
        points = []
        for combo in itertools.product(*axes):
            suffix = "".join(f"_{k.name}_{_point_token(v)}" for k, v in combo)
            points.append((suffix, {k.name: (k, v) for k, v in combo}))
        return points or [("", {})]

    def stages(self, decls: list[ast.StageDecl]) -> tuple[list[ir.Stage], dict[str, list[str]]]:
        """Expand and lower every stage; also returns each declared stage's IR stage names."""
        by_name = {d.name.name: d for d in decls}
        # stage -> [(suffix, own overrides, init suffix, sweep point)]: a stage started from a
        # swept stage gets one variant per parent variant (recording the parent's point but
        # keeping its own options), times its own sweep points
        variants: dict[str, list[tuple[str, dict, str, dict]]] = {}

        def expand(name: str) -> list[tuple[str, dict, str, dict]]:
            if name not in variants:
                init = _init_name(by_name[name])
                parents = expand(init) if init in by_name else [("", {}, "", {})]
                variants[name] = [
                    (ps + s, own, ps, {**point, **{k: _plain(v) for k, (_, v) in own.items()}})
                    for ps, _, _, point in parents for s, own in self.sweep_points(by_name[name])]
            return variants[name]

        out, names = [], {}
        for d in decls:
            names[d.name.name] = []
            for suffix, overrides, init_suffix, point in expand(d.name.name):
                stage = self.stage(replace(d, name=ast.Name(d.name.name + suffix, d.name.span)),
                                   _init_name(d) + init_suffix, overrides, point, d.name.name)
                if stage is not None:
                    out.append(stage)
                    names[d.name.name].append(stage.name)
        return out, names


def _init_name(d: ast.StageDecl) -> str:
    first = d.method.args[0] if d.method.args else None
    return first.name if isinstance(first, ast.Name) else ""


def _point_token(value: ast.Value) -> str:
    """A sweep value as part of an identifier: 1e-06 -> 1em06, 0.5 -> 0p5, "a b" -> a_b."""
    if isinstance(value, ast.Num):
        text = repr(value.value)  # shortest round-trip form: distinct values, distinct names
        return text.replace(".", "p").replace("-", "m").replace("+", "")
    if isinstance(value, ast.Bool):
        return "true" if value.value else "false"
    raw = value.value if isinstance(value, ast.Str) else getattr(value, "name", "x")
    return re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_") or "x"


def _plain(value: ast.Value):
    if isinstance(value, ast.Name):
        return value.name
    if isinstance(value, ast.Bool):
        return str(value.value).lower()
    return value.value
