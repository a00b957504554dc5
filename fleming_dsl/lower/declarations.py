"""Checked AST (`ast.Program`) -> `ir.Experiment`: the lowering of every declaration.

Lowering reads every option with its type and range (see `values.Options`), resolves paths
relative to the spec file into project-relative posix paths (`context.LowerContext`), takes
defaults from the IR models, lowers stages through `stages.StageLowering` after `sweeps` has
expanded them, and collects every problem, raised together as one SpecError.
"""

from __future__ import annotations

import functools
import os
import re
from importlib import metadata
from pathlib import Path

from fleming_dsl import ir
from fleming_dsl.errors import SpecError, by_place, suggestion
from fleming_dsl.lower import schema, shards
from fleming_dsl.lower.context import LowerContext
from fleming_dsl.lower.stages import StageLowering
from fleming_dsl.lower.sweeps import expand_stages
from fleming_dsl.lower.values import (
    MISSING,
    Options,
    a_rate,
    at_least,
    describe,
    in_range,
    list_of,
    non_negative,
    one_of,
    positive,
    scalar,
    to_bool,
    to_float,
    to_int,
    to_name,
    to_seconds,
    to_str,
    unit_interval,
    value_span,
)
from fleming_dsl.spec import ast
from fleming_dsl.spec.boundary import workdir_problem

_DATASET_FORMATS = ir.DatasetFormat.__args__  # type: ignore[attr-defined]
_MODEL_SOURCES = ("hf", "local", "tiny", "template", "openai")
_GRAPH_FORMATS = {"primekg": ("kg.csv",), "hetionet": ("nodes.tsv", "edges.sif"), "triples": ("triples.tsv",)}
_BACKENDS = ("vllm", "transformers", "openai", "template")
# positional arguments of the built-in rewards, by parameter name (see fleming_dsl/rewards.py)
_BUILTIN_REWARDS = {"choice_match": ("tag", "accept", "partial"), "regex": ("pattern",), "length_penalty": ("max_tokens",),
                    "overlong": ("max_tokens", "buffer"), "rubric": ("grader", "prompt")}
# options whose value is one word from a fixed set (checked here, so a typo is a located error)
_REWARD_CHOICES = {("choice_match", "accept"): ("letter", "text")}
# options that name another declaration (checked by check/references.py)
_REWARD_NAMES = {("rubric", "grader"), ("rubric", "prompt")}
_REWARD_PLUGIN_GROUP = "fleming_dsl.rewards"
# TRL report_to integrations that work without a network: each writes under the run's workdir
TRACKERS = ("tensorboard", "trackio", "mlflow", "wandb")


# the Hub's repository ids: [org/]name, each of letters, digits, - _ . (at most 96 characters)
_HUB_ID = re.compile(r"(?=.{1,96}$)[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def _shown(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Lowering:
    def __init__(self, ctx: LowerContext):
        self.ctx = ctx
        self.p = ctx.p
        self.diags = ctx.diags
        self.stage_lowering = StageLowering(ctx)
        self.pending_auto: list[shards.PendingAuto] = []  # `shards = auto`, resolved at the end
        self.shard_spans: dict[tuple[str, int], ir.Span | None] = {}  # (filter, step) -> span

    def sharding(self, opts: Options, where: str, decl: str, step: int | None = None) -> ir.Sharding:
        sharding, auto_span = shards.read(opts, self.diags, where)
        if auto_span is not None:
            self.pending_auto.append(shards.PendingAuto(decl, step, sharding.items_per_shard or 1,
                                                        auto_span))
        if step is not None:
            self.shard_spans[(decl, step)] = opts.key_span("shards")
        return sharding

    # models --------------------------------------------------------------
    def backend(self, call: ast.Call, model_opts: Options) -> ir.Backend | None:
        kind = call.func.name
        if kind not in _BACKENDS:
            self.ctx.unknown_function(call, "backend", _BACKENDS)
            return None
        self.ctx.no_positional(call)
        kw = Options.of_call(call, f"{kind}()", self.diags)
        fields: dict = {"kind": kind}
        if kind == "vllm":
            tp = kw.get("tp", to_int, check=at_least(1))
            tp = kw.get("tensor_parallel", to_int, default=tp, check=at_least(1))
            if tp is not None:
                fields["tensor_parallel"] = tp
        if kind == "openai":
            fields["base_url"] = kw.get("base_url", to_str)
            fields["api_key_env"] = kw.get("api_key_env", to_str)
            kw.get("model", to_str)  # read by model(): it names the served model
        if kind == "template":
            for rate in ("error_rate", "malformed_rate"):
                fields[rate] = kw.get(rate, to_float, check=a_rate)
        kw.finish()
        for key, field, convert, check in (
                ("temperature", "temperature", to_float, non_negative),
                ("top_p", "top_p", to_float, unit_interval),
                ("max_tokens", "max_tokens", to_int, at_least(1)),
                ("timeout", "timeout_s", to_seconds, positive),
                ("retries", "retries", to_int, non_negative),
                ("concurrency", "concurrency", to_int, at_least(1))):
            value = model_opts.get(key, convert, check=check)
            if value is not None:
                fields[field] = value
        return ir.Backend(**{k: v for k, v in fields.items() if v is not None})

    def model(self, d: ast.ModelDecl) -> ir.Model | None:
        src = d.source
        opts = Options.of_block(d.block, f"model {d.name.name}", self.diags)
        self.ctx.no_block(d.block, f"model {d.name.name}")
        kind = src.func.name
        if kind not in _MODEL_SOURCES:
            self.ctx.unknown_function(src, "model source", _MODEL_SOURCES)
            return None
        backend_call = opts.raw("backend")
        if backend_call is not None and not isinstance(backend_call, ast.Call):
            self.diags.error("'backend' must be a call such as vllm(tp = 8) or transformers()",
                             value_span(backend_call))
            backend_call = None
        tiny = None
        if kind == "hf":
            source, ref = "hf", self.ctx.str_arg(src, "a hub id")
            if ref and not _HUB_ID.fullmatch(ref):
                self.diags.error(f"'{_shown(ref)}' is not a Hugging Face hub id", value_span(src.args[0]),
                                 hint='a hub id is "name" or "org/name" of letters, digits, "-", "_" '
                                      'and ".", e.g. hf("Qwen/Qwen2.5-7B-Instruct")')
            self.ctx.no_positional(src, 1)
            Options.of_call(src, "hf()", self.diags).finish()
        elif kind == "local":
            source, ref = "local", self.ctx.path_arg(src, 0, "a model folder")
            self.ctx.no_positional(src, 1)
            Options.of_call(src, "local()", self.diags).finish()
        elif kind == "tiny":
            source, ref = "tiny", ""
            self.ctx.no_positional(src)
            kw = Options.of_call(src, "tiny()", self.diags)
            arch = schema.read(schema.TINY_OPTIONS, kw)
            kw.finish()
            tiny = ir.TinyArch(**arch)
        else:  # template() and openai(...) are sources that are also their own backend
            if backend_call is not None:
                self.diags.error(f"a {kind}() model already is its backend", value_span(backend_call))
            backend_call = src
            source = "local" if kind == "template" else "hf"
            ref = ""
        backend = self.backend(backend_call, opts) if backend_call is not None else None
        if backend_call is not None and backend_call.func.name == "openai":
            served = next((kw.value for kw in backend_call.kwargs if kw.key.name == "model"), None)
            if isinstance(served, ast.Str):
                ref = served.value
            elif kind == "openai":
                self.diags.error("openai() needs model = \"<served model name>\"", src.span)
        if backend_call is None:
            for key in ("temperature", "top_p", "max_tokens", "timeout", "retries", "concurrency"):
                if opts.raw(key) is not None:
                    self.diags.error(f"'{key}' needs a generation backend", opts.key_span(key),
                                     hint="add backend = vllm(...) or transformers() to this block")
        opts.finish()
        return ir.Model(name=d.name.name, span=d.span, source=source, ref=ref, tiny=tiny, backend=backend)

    # data ----------------------------------------------------------------
    def graph(self, d: ast.GraphDecl) -> ir.Graph | None:
        fmt = d.source.func.name
        if fmt not in _GRAPH_FORMATS:
            self.ctx.unknown_function(d.source, "graph format", tuple(_GRAPH_FORMATS))
            return None
        files = _GRAPH_FORMATS[fmt]
        paths = tuple(self.ctx.path_arg(d.source, i, f) for i, f in enumerate(files))
        self.ctx.no_positional(d.source, len(files))
        Options.of_call(d.source, f"{fmt}()", self.diags).finish()
        Options.of_block(d.block, f"graph {d.name.name}", self.diags).finish()
        reads = self.ctx.sub_blocks(d.block, ("reads",), f"graph {d.name.name}").get("reads")
        return ir.Graph(name=d.name.name, span=d.span, format=fmt, paths=paths,
                        readings=self.readings(reads))

    def readings(self, block: ast.Block | None) -> tuple[tuple[str, str, str], ...]:
        """`reads { has_symptom = ["has symptom", "is a symptom of"] }`: per relation, its words
        from the head and from the tail."""
        out: dict[str, tuple[str, str, str]] = {}
        for item in block.items if block else ():
            if isinstance(item, ast.SweepItem):
                self.diags.error("sweeps are allowed only in stage blocks", item.span)
                continue
            if not isinstance(item, ast.Option):
                self.diags.error(f"unexpected '{item.name.name}' in reads", item.name.span,
                                 hint='write RELATION = ["reads from the head", "reads from the tail"]')
                continue
            words = item.value.items if isinstance(item.value, ast.ListV) else ()
            if len(words) != 2 or not all(isinstance(w, ast.Str) and w.value.strip() for w in words):
                self.diags.error(f"'{item.key.name}' must be two phrases, how the relation reads from "
                                 f"its head and from its tail, got {describe(item.value)}",
                                 value_span(item.value),
                                 hint=f'{item.key.name} = ["has symptom", "is a symptom of"]')
                continue
            if item.key.name in out:
                self.diags.error(f"'{item.key.name}' is given twice in reads", item.key.span)
            out[item.key.name] = (item.key.name, words[0].value.strip(), words[1].value.strip())
        return tuple(sorted(out.values()))

    def sample(self, d: ast.SampleDecl) -> ir.Sample | None:
        opts = Options.of_block(d.block, f"sample {d.name.name}", self.diags)
        resources = self.step_resources(d.block, f"sample {d.name.name}")
        fields: dict = {}
        path = opts.raw("path")
        if path is None:
            self.diags.error(f"sample {d.name.name} needs a metapath",
                             d.name.span, hint="path = disease -[disease_phenotype_positive]-> phenotype")
            steps, start = (), None
        elif not isinstance(path, ast.Metapath):
            self.diags.error("'path' must be a metapath such as disease -[relation]-> phenotype",
                             value_span(path))
            steps, start = (), None
        else:
            start = path.nodes[0].type
            steps = tuple(ir.MetapathStep(relation=e.relation, node_type=n.type)
                          for e, n in zip(path.edges, path.nodes[1:]))
        hops = opts.raw("hops")
        lo = hi = max(len(steps), 1)
        if isinstance(hops, ast.Range):
            lo, hi = hops.lo, hops.hi
            if not isinstance(lo, int) or not isinstance(hi, int):  # digits past what an int reads
                self.diags.error(f"'hops' must be a range of whole numbers, got {lo}..{hi}", hops.span)
                lo = hi = max(len(steps), 1)
            elif lo < 1:
                self.diags.error(f"'hops' must start at 1 or more, got {lo}", hops.span)
            elif lo > hi:
                self.diags.error(f"'hops' range is empty: {lo} > {hi}", hops.span,
                                 hint=f"write {hi}..{lo}")
        elif hops is not None:
            value = to_int(hops, "hops", self.diags)
            if value is not MISSING:
                lo = hi = value
                if value < 1:
                    self.diags.error(f"'hops' must be >= 1, got {value}", value_span(hops))
        weight = opts.raw("weight")
        if weight is not None:
            wname = one_of(("uniform", "inverse_degree"))(
                weight.func if isinstance(weight, ast.Call) else weight, "weight", self.diags)
            if wname is not MISSING:
                fields["weight"] = wname
                if isinstance(weight, ast.Call):
                    kw = Options.of_call(weight, f"{wname}()", self.diags)
                    if wname == "inverse_degree":
                        fields["alpha"] = kw.get("alpha", to_float, check=non_negative)
                    kw.finish()
        mask = opts.raw("mask")
        if isinstance(mask, ast.Num):
            fields["mask"] = opts.get("mask", to_int, check=non_negative)
        elif mask is not None:
            fields["mask"] = opts.get("mask", one_of(("anchor", "target")))
        distractors = opts.raw("distractors")
        if isinstance(distractors, ast.Call) and distractors.func.name == "same_type":
            kw = Options.of_call(distractors, "same_type()", self.diags)
            # an item's options are lettered A..Z: at most 25 distractors beside the answer
            fields["distractors"] = kw.get("k", to_int, check=in_range(1, 25))
            fields["near_distractors"] = kw.get("near", to_bool)
            kw.finish()
        elif isinstance(distractors, ast.Call):
            self.ctx.unknown_function(distractors, "distractor policy", ("same_type",))
        elif distractors is not None:
            fields["distractors"] = opts.get("distractors", to_int, check=at_least(1))
        fields["clues"] = opts.get("clues", to_int, check=at_least(1))
        count = opts.get("count", to_int, check=positive)
        if count is None and opts.raw("count") is None:
            self.diags.error(f"sample {d.name.name} needs count = <how many paths>", d.name.span)
        fields["seed"] = opts.get("seed", to_int)
        opts.finish()
        return ir.Sample(name=d.name.name, span=d.span, graph=d.graph.name, start_type=start,
                         steps=steps, hops_min=lo, hops_max=hi, count=count or 1, resources=resources,
                         **{k: v for k, v in fields.items() if v is not None})

    def dataset(self, d: ast.DatasetDecl) -> ir.Dataset | None:
        fmt = d.source.func.name
        if fmt not in _DATASET_FORMATS:
            self.ctx.unknown_function(d.source, "dataset format", _DATASET_FORMATS)
            return None
        path = self.ctx.path_arg(d.source, 0, "a JSONL file")
        self.ctx.no_positional(d.source, 1)
        pairs = [(k.key, k.value) for k in d.source.kwargs]
        pairs += [(o.key, o.value) for o in (d.block.options() if d.block else ())]
        opts = Options(pairs, f"dataset {d.name.name}", self.diags)
        self.ctx.no_block(d.block, f"dataset {d.name.name}")
        fields = schema.read(schema.DATASET_OPTIONS, opts)
        opts.finish()
        return ir.Dataset(name=d.name.name, span=d.span, format=fmt, path=path, **fields)

    def prompt(self, d: ast.PromptDecl) -> ir.Prompt | None:
        if d.source.func.name != "template":
            self.ctx.unknown_function(d.source, "prompt source", ("template",))
            return None
        path = self.ctx.path_arg(d.source, 0, "a jinja2 template file")
        self.ctx.no_positional(d.source, 1)
        Options.of_call(d.source, "template()", self.diags).finish()
        return ir.Prompt(name=d.name.name, span=d.span, path=path)

    def synthesize(self, d: ast.SynthesizeDecl) -> ir.Synthesize:
        where = f"synthesize {d.name.name}"
        opts = Options.of_block(d.block, where, self.diags)
        resources = self.step_resources(d.block, where)
        fields = schema.read(schema.SYNTHESIZE_OPTIONS, opts)
        fields["sharding"] = self.sharding(opts, where, d.name.name)
        opts.finish()
        return ir.Synthesize(name=d.name.name, span=d.span, source=d.source.name,
                             teacher=d.teacher.name, prompt=d.prompt.name, resources=resources, **fields)

    def distill(self, d: ast.DistillDecl) -> ir.Distill:
        opts = Options.of_block(d.block, f"distill {d.name.name}", self.diags)
        resources = self.step_resources(d.block, f"distill {d.name.name}")
        fields = schema.read(schema.DISTILL_OPTIONS, opts)
        fields["sharding"] = self.sharding(opts, f"distill {d.name.name}", d.name.name)
        if fields.get("protocol") != "search":  # each of these acts only on a search
            for key in ("evidence", "rewrite", "judge"):
                if opts.raw(key) is not None:
                    self.diags.error(f"'{key}' acts only under protocol = search", opts.key_span(key),
                                     hint="add protocol = search to this block, or remove "
                                          f"'{key}'")
        opts.finish()
        return ir.Distill(name=d.name.name, span=d.span, sources=tuple(s.name for s in d.sources),
                          teacher=d.teacher.name, prompt=d.prompt.name, resources=resources, **fields)

    # filters -------------------------------------------------------------
    def step_resources(self, block: ast.Block | None, where: str) -> ir.Resources | None:
        """A data step's `resources { ... }` block (None when not written: the planner decides)."""
        for item in block.items if block else ():
            if isinstance(item, ast.SweepItem):
                self.diags.error("sweeps are allowed only in stage blocks", item.span)
        subs = self.ctx.sub_blocks(block, ("resources",), where)
        return self.ctx.resources(subs["resources"], where) if "resources" in subs else None

    def filter(self, d: ast.FilterDecl) -> ir.Filter:
        steps, resources = [], None
        for item in d.block.items:
            if isinstance(item, ast.Entry) and item.name.name == "resources":
                if item.block is None or item.call is not None:
                    self.diags.error("resources is a block: resources { gpus = 8  time = 24h }",
                                     item.name.span)
                else:
                    resources = self.ctx.resources(item.block, f"filter {d.name.name}")
                continue
            if not isinstance(item, ast.Entry):
                what = item.key.name
                self.diags.error(f"a filter block lists steps, not options ('{what} = ...')",
                                 item.key.span, expected="one of " + ", ".join(ir.FILTER_STEPS))
                continue
            if item.name.name not in ir.FILTER_STEPS:
                self.diags.error(f"unknown filter step '{item.name.name}'", item.name.span,
                                 expected="one of " + ", ".join(ir.FILTER_STEPS),
                                 **suggestion(item.name.name, ir.FILTER_STEPS, item.name.span))
                continue
            self.current_step = (d.name.name, len(steps))
            step = getattr(self, "step_" + item.name.name)(item)
            if step is not None:
                steps.append(step)
        return ir.Filter(name=d.name.name, span=d.span, source=d.source.name, steps=tuple(steps),
                         resources=resources)

    def step_sharding(self, kw: Options, step: str) -> ir.Sharding:
        name, index = self.current_step
        return self.sharding(kw, f"{step}()", name, index)

    def _step_opts(self, item: ast.Entry, positional: int = 0) -> Options:
        call = item.call
        if call is not None:
            self.ctx.no_positional(call, positional)
        if item.block is not None and item.name.name != "difficulty":
            self.diags.error(f"{item.name.name} takes no block", item.block.span)
        return Options.of_call(call, f"{item.name.name}()", self.diags)

    def step_format(self, item: ast.Entry):
        self._step_opts(item).finish()
        return ir.FormatCheck()

    def step_verify_label(self, item: ast.Entry):
        kw = self._step_opts(item)
        fields = {"model": kw.get("model", to_name), "votes": kw.get("votes", to_int, check=at_least(1)),
                  "agree": kw.get("agree", to_int, check=at_least(1)),
                  "on_fail": kw.get("on_fail", one_of(("drop", "review"))),
                  "sharding": self.step_sharding(kw, "verify_label")}
        kw.finish()
        step = ir.VerifyLabel(**{k: v for k, v in fields.items() if v is not None})
        if step.agree > step.votes:
            self.diags.error(f"'agree' ({step.agree}) cannot exceed 'votes' ({step.votes})",
                             kw.key_span("agree") or item.span)
        return step

    def _positional_choice(self, item: ast.Entry, key: str, choices) -> str | None:
        if item.call is None or not item.call.args:
            return None
        value = one_of(choices)(item.call.args[0], key, self.diags)
        return None if value is MISSING else value

    def step_dedupe(self, item: ast.Entry):
        kw = self._step_opts(item, positional=1)
        method = self._positional_choice(item, "method", ("exact", "minhash"))
        method = kw.get("method", one_of(("exact", "minhash")), default=method)
        threshold = kw.get("threshold", to_float, check=unit_interval)
        kw.finish()
        return ir.Dedupe(**{k: v for k, v in {"method": method, "threshold": threshold}.items() if v is not None})

    def step_decontaminate(self, item: ast.Entry):
        kw = self._step_opts(item)
        against = kw.get("against", list_of(to_name))
        if isinstance(kw.raw("against"), ast.Name):
            against = (kw.raw("against").name,)
        ngram = kw.get("ngram", to_int, check=at_least(1))
        kw.finish()
        if against is None:
            self.diags.error("decontaminate needs against = [<evaluation datasets>]", item.span)
            against = ()
        return ir.Decontaminate(against=against, **({"ngram": ngram} if ngram else {}))

    def step_difficulty(self, item: ast.Entry):
        kw = self._step_opts(item, positional=1)
        method = self._positional_choice(item, "method", ("pass_rate", "grader"))
        method = kw.get("method", one_of(("pass_rate", "grader")), default=method)
        model = kw.get("model", to_name)
        samples = kw.get("samples", to_int, check=at_least(1))
        prompt = kw.get("prompt", to_name)
        sharding = self.step_sharding(kw, "difficulty")
        kw.finish()
        if model is None:
            self.diags.error("difficulty needs model = <the model that grades or is sampled>", item.span)
        if method == "grader" and prompt is None and kw.raw("prompt") is None:
            # required rather than defaulted: the rubric is a rule input, so editing it re-grades
            self.diags.error("difficulty(grader) needs prompt = <the rubric prompt>", item.span,
                             hint='declare prompt rubric = template("prompts/grader.j2") and write '
                                  "difficulty(grader, model = ..., prompt = rubric)")
        elif method != "grader" and kw.raw("prompt") is not None:
            self.diags.error("'prompt' applies only to difficulty(grader): pass_rate samples the "
                             "student prompt", kw.key_span("prompt") or item.span)
            prompt = None
        buckets = Options.of_block(item.block, "difficulty buckets", self.diags)
        easy = buckets.get("easy", _threshold)
        moderate = buckets.get("moderate", _threshold)
        buckets.finish()
        step = ir.Difficulty(model=model or "", **{k: v for k, v in {
            "method": method, "samples": samples, "easy": easy, "moderate": moderate,
            "prompt": prompt, "sharding": sharding}.items() if v is not None})
        for key, value in (("easy", step.easy), ("moderate", step.moderate)):
            if not 0 < value <= 1:
                self.diags.error(f"'{key}' threshold must be in (0, 1], got {value}",
                                 buckets.key_span(key) or item.span)
        if 0 < step.moderate <= 1 and 0 < step.easy <= 1 and not step.easy > step.moderate:
            self.diags.error(f"bucket thresholds must be ordered easy > moderate, got easy = {step.easy}, "
                             f"moderate = {step.moderate}", buckets.key_span("easy") or item.span)
        return step

    # rewards -------------------------------------------------------------
    def reward(self, d: ast.RewardDecl) -> ir.Reward | None:
        fn = d.function
        # entry points are slow to scan (every installed distribution): only for a name that is
        # not built in, once per process
        known = _BUILTIN_REWARDS if fn.func.name in _BUILTIN_REWARDS else \
            set(_BUILTIN_REWARDS) | reward_plugins()
        if fn.func.name not in known:
            self.ctx.unknown_function(fn, "reward function", sorted(known))
            return None
        params = _BUILTIN_REWARDS.get(fn.func.name)
        options: dict = {}
        for i, arg in enumerate(fn.args):
            if params is None or i >= len(params):
                self.diags.error(f"{fn.func.name}() takes {len(params or ())} positional arguments",
                                 value_span(arg), hint="write options as name = value")
                continue
            value = self._reward_convert(fn.func.name, params[i])(arg, params[i], self.diags)
            if value is not MISSING:
                options[params[i]] = value
        kw = Options.of_call(fn, f"{fn.func.name}()", self.diags)
        for key, value in kw.pairs:
            if params is not None and key.name not in params:
                continue  # finish() reports it with the valid names
            got = kw.get(key.name, self._reward_convert(fn.func.name, key.name))
            if got is not None:
                options[key.name] = got
        for p in params or ():
            kw.raw(p)
        kw.finish()
        if fn.func.name == "regex" and isinstance(options.get("pattern"), str):
            try:
                re.compile(options["pattern"])
            except re.error as err:
                self.diags.error(f"invalid regular expression: {err}", value_span(fn.args[0]) if fn.args else fn.span)
        partial = options.get("partial")
        if fn.func.name == "choice_match" and partial is not None and not (
                isinstance(partial, (int, float)) and not isinstance(partial, bool) and 0 <= partial < 1):
            self.diags.error(f"'partial' must be a number in [0, 1), got {_shown(str(partial))}",
                             value_span(fn.args[2]) if len(fn.args) > 2 else next(
                                 value_span(kw.value) for kw in fn.kwargs if kw.key.name == "partial"),
                             hint="the right option earns 1.0; partial is what naming another option earns")
        if fn.func.name == "overlong":
            self.overlong_options(fn, options)
        if fn.func.name == "rubric":
            self.rubric_options(fn, options)
        return ir.Reward(name=d.name.name, span=d.span, function=fn.func.name, options=options)

    @staticmethod
    def _reward_convert(function: str, param: str):
        if (function, param) in _REWARD_NAMES:
            return to_name
        choices = _REWARD_CHOICES.get((function, param))
        return one_of(choices) if choices else scalar

    def rubric_options(self, fn: ast.Call, options: dict) -> None:
        """rubric(grader = MODEL, prompt = PROMPT): the grader must generate text and read the
        response. The template teacher cannot: it answers from an item's provenance (it grades
        difficulty from the item alone) and never reads a completion, so it is rejected here."""
        grader = options.get("grader")
        written = bool(fn.args) or any(kw.key.name == "grader" for kw in fn.kwargs)
        if grader is None and not written:
            self.diags.error("rubric() needs 'grader', the model that grades each completion", fn.span,
                             hint="rubric(grader = judge), where judge is a model with a backend")
        if grader is None:  # missing, or not a name (reported where it was read)
            return
        model = self.ctx.decls.get(grader)  # indexed: a scan per reward is quadratic
        span = value_span(fn.args[0]) if fn.args else next(
            (value_span(kw.value) for kw in fn.kwargs if kw.key.name == "grader"), fn.span)
        if not isinstance(model, ast.ModelDecl):
            return  # check/references.py reports a name of the wrong kind
        backend = model.backend()
        if model.source.func.name == "template" or (isinstance(backend, ast.Call)
                                                     and backend.func.name == "template"):
            self.diags.error(f"the template teacher '{grader}' cannot grade against a rubric: it answers "
                             "from an item's provenance and never reads the completion", span,
                             hint=f'grade with a model that generates, e.g. model {grader} = '
                                  'local("models/judge") { backend = transformers() }')
        elif not _grader_backend(model):
            self.diags.error(f"the grader '{grader}' has no generation backend", span,
                             hint=f"give model {grader} a block such as {{ backend = vllm(tp = 8) }}")

    def overlong_options(self, fn: ast.Call, options: dict) -> None:
        """DAPO's soft overlong penalty: 0 up to max_tokens - buffer, then down to -1 at max_tokens."""
        for key in ("max_tokens", "buffer"):
            value = options.get(key)
            if value is None:
                self.diags.error(f"overlong() needs '{key}'", fn.span,
                                 hint="overlong(max_tokens = 1024, buffer = 256)")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.diags.error(f"overlong(): '{key}' must be a whole number >= 1, got {value!r}", fn.span)
                options.pop(key)
        if isinstance(options.get("max_tokens"), int) and isinstance(options.get("buffer"), int) \
                and options["buffer"] > options["max_tokens"]:
            self.diags.error(f"overlong(): 'buffer' ({options['buffer']}) must be <= max_tokens "
                             f"({options['max_tokens']}): the penalty ramps over the last buffer tokens", fn.span)

    def rubric_grading(self, d: ast.EvaluateDecl, fields: dict, opts: Options) -> None:
        """A rubric benchmark (healthbench) needs a grader with a backend; a grader needs one."""
        decls = self.ctx.decls
        rubric = [b.name for b in d.benchmarks
                  if isinstance(decls.get(b.name), ast.DatasetDecl) and decls[b.name].source.func.name == "healthbench"]
        grader = fields.get("grader")
        if rubric and grader is None:
            self.diags.error(f"benchmark '{rubric[0]}' is graded against rubrics and needs a grader",
                             d.span, hint="add { grader = judge }, a model with a backend")
        if grader is not None and not rubric:
            self.diags.error("'grader' grades rubric benchmarks (healthbench); none is evaluated here",
                             opts.key_span("grader"), hint="remove it, or evaluate on a healthbench() dataset")
        if fields.get("rubric_prompt") is not None and grader is None:
            self.diags.error("'rubric_prompt' has no effect without a grader", opts.key_span("rubric_prompt"))
        model = decls.get(grader) if grader else None
        if isinstance(model, ast.ModelDecl) and not _grader_backend(model):
            self.diags.error(f"the grader '{grader}' has no generation backend", opts.key_span("grader"),
                             hint=f"give model {grader} a block such as {{ backend = vllm(tp = 8) }}")

    def sampled_metrics(self, fields: dict, opts: Options) -> None:
        """pass@k and maj@k read k samples of each question: the evaluation must draw them."""
        samples = fields.get("samples") or ir.Evaluate.model_fields["samples"].default
        for metric in fields.get("metrics") or ():
            k = int(ir.SAMPLED_METRIC.match(metric).group(2))
            if k > samples:
                self.diags.error(f"'{metric}' needs {k} samples of each question; the evaluation draws "
                                 f"{samples}", opts.key_span("metrics"), hint=f"add samples = {k}")
                return

    def engine_applies(self, targets: tuple[str, ...], opts: Options) -> None:
        """A model with its own backend is evaluated through it: a written engine would not apply."""
        for target in targets:
            decl = self.ctx.decls.get(target)
            if isinstance(decl, ast.ModelDecl) and decl.has_backend():
                self.diags.error(f"'engine' does not apply to model {target}, which is evaluated through "
                                 "its own backend", opts.key_span("engine"),
                                 hint=f"evaluate {target} in an evaluate block of its own, without engine")
                return

    def evaluate(self, d: ast.EvaluateDecl, targets: tuple[str, ...]) -> ir.Evaluate:
        opts = Options.of_block(d.block, "an evaluation", self.diags)
        subs = self.ctx.sub_blocks(d.block, ("resources",), "an evaluation")
        fields = schema.read(schema.EVALUATE_OPTIONS, opts)
        fields["sharding"] = self.sharding(opts, "an evaluation", d.name.name)
        self.rubric_grading(d, fields, opts)
        self.sampled_metrics(fields, opts)
        if fields.get("engine") is not None:
            self.engine_applies(targets, opts)
        resources = self.ctx.resources(subs.get("resources"), "an evaluation")
        if fields.get("engine") == "vllm" and resources.gpus == 0:
            self.diags.error("engine = vllm needs GPUs; the evaluation declares none", opts.key_span("engine"),
                             hint="add resources { gpus = 1 }, or use engine = transformers")
        opts.finish()
        return ir.Evaluate(name=d.name.name, span=d.span, targets=targets,
                           benchmarks=tuple(b.name for b in d.benchmarks), resources=resources,
                           **fields)

    def cluster(self) -> ir.Cluster:
        opts = Options(((o.key, o.value) for o in _last_wins(self.p.cluster)), "the cluster block", self.diags)
        fields = schema.read(schema.CLUSTER_OPTIONS, opts)
        if "signal_lead_s" in fields:  # sbatch --signal takes whole seconds
            fields["signal_lead_s"] = max(1, round(fields["signal_lead_s"]))
        opts.finish()
        return ir.Cluster(**fields)

    # the whole experiment ------------------------------------------------
    def experiment(self) -> ir.Experiment:
        header = Options(((o.key, o.value) for o in _last_wins(self.p.header)), "the experiment", self.diags)
        seed = header.get("seed", to_int, default=0)
        workdir_value = header.raw("workdir")
        name = self.p.name.value
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            self.diags.error(f"experiment name '{name}' must be letters, digits, '.', '_' or '-'",
                             self.p.name.span, hint="it names the folder generated/<experiment>/")
        workdir = f"runs/{name}"
        if workdir_value is not None:
            text = to_str(workdir_value, "workdir", self.diags)
            if text is not MISSING:
                full = Path(os.path.normpath(os.path.join(self.p.dirs[workdir_value.span.file], text)))
                problem = workdir_problem(text, full, self.ctx.root)
                if problem:
                    self.diags.error(problem[0], workdir_value.span, hint=problem[1])
                else:
                    workdir = self.ctx.path(text, workdir_value.span)
        track = header.get("track", list_of(one_of(TRACKERS)), default=())
        container, container_at = header.get("container", to_str), header.raw("container")
        header.finish()
        groups: dict[str, list] = {k: [] for k in ("model", "graph", "sample", "dataset", "prompt",
                                                  "synthesize", "distill", "filter", "reward")}
        stage_decls, eval_decls = [], []
        for d in self.p.decls:
            if d.kind == "stage":
                stage_decls.append(d)
            elif d.kind == "evaluate":
                eval_decls.append(d)
            else:
                node = getattr(self, d.kind)(d)
                if node is not None:
                    groups[d.kind].append(node)
        stages, stage_names = expand_stages(stage_decls, self.stage_lowering.stage, self.diags)
        evaluations = [self.evaluate(d, tuple(n for t in d.targets for n in stage_names.get(t.name, [t.name])))
                       for d in eval_decls]
        cluster = self.cluster()
        if container is not None:
            if cluster.container is not None:
                self.diags.error("container is set both in the experiment header and in the cluster block",
                                 container_at.span,
                                 hint="keep one: every job runs in the same image")
            else:
                cluster = cluster.model_copy(update={"container": container})
        exp = ir.Experiment(
            name=name, seed=seed, workdir=workdir, spec=self.ctx.path(os.path.basename(self.p.spec), ir.Span(
                file=self.p.spec, line=1, col=1, end_line=1, end_col=1)),
            models=tuple(groups["model"]), graphs=tuple(groups["graph"]), samples=tuple(groups["sample"]),
            datasets=tuple(groups["dataset"]), prompts=tuple(groups["prompt"]),
            synthesize=tuple(groups["synthesize"]), distill=tuple(groups["distill"]),
            filters=tuple(groups["filter"]), rewards=tuple(groups["reward"]), stages=tuple(stages),
            evaluations=tuple(evaluations), cluster=cluster, track=tuple(dict.fromkeys(track)))
        exp = shards.resolve(exp, self.pending_auto, self.diags)
        for flt in exp.filters:
            shards.check_filter_agrees(
                flt, {i: self.shard_spans.get((flt.name, i)) for i in range(len(flt.steps))},
                self.diags)
        return exp




def _grader_backend(model: ast.ModelDecl) -> bool:
    """A grader generates text: an openai() model, or a model with a backend block (not template())."""
    if model.source.func.name == "openai":
        return True
    backend = model.backend()
    return backend is not None and not (isinstance(backend, ast.Call) and backend.func.name == "template")


def _last_wins(options: tuple[ast.Option, ...]) -> list[ast.Option]:
    """Header/cluster options merged from a base and its extension: the later one wins."""
    latest = {o.key.name: o for o in options}
    return list(latest.values())


def _threshold(value, key, diags):
    """`pass >= 0.75` or a bare number."""
    if isinstance(value, ast.Compare) and value.subject.name == "pass" and value.op in (">=", ">"):
        return value.number
    if isinstance(value, ast.Num):
        return float(value.value)
    diags.error(f"'{key}' must be a threshold such as pass >= 0.75", value_span(value))
    return MISSING


@functools.lru_cache(maxsize=1)  # scanning every installed distribution takes ~50 ms
def reward_plugins() -> frozenset[str]:
    return frozenset(ep.name for ep in metadata.entry_points(group=_REWARD_PLUGIN_GROUP))


def lower(program: ast.Program, project_root: Path) -> ir.Experiment:
    """The IR of a checked program; SpecError with every problem found otherwise."""
    ctx = LowerContext(program, project_root)
    exp = _Lowering(ctx).experiment()
    if ctx.diags:
        raise SpecError(by_place(ctx.diags), program.sources)
    return exp
