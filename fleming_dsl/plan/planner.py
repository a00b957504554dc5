"""The planner: a checked experiment (IR) -> the jobs of its workflow, one per Snakemake rule.

`plan(exp, out_dir)` is pure: it reads no files and returns a `Plan` whose jobs carry their
`jobconfig` config plus what Snakemake needs around it (inputs, outputs, log, resources, group,
the spec line it came from). Paths are project-relative, as in the IR.

A job's config holds only what that job does and the paths it reads and writes, never a hash of
anything upstream, so editing one declaration changes only the configs of the jobs built from it;
Snakemake's mtime trigger then re-runs what lies downstream.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from fleming_dsl import ir
from fleming_dsl.errors import PlanError
from fleming_dsl.plan import jobconfig as jc

TRAINING_KINDS = ("sft", "grpo")
# Jobs short enough to share one cluster submission (Snakemake `group:`) when the cluster asks.
_GROUPABLE_KINDS = ("build_model", "graph_load", "sample")
_PREP_GROUP = "prep"
# A data job served by a vLLM teacher whose spec step has no `resources { ... }` block: per GPU,
# CPU threads for tokenisation and host memory to stage the weights (a 120B bf16 model is
# ~240 GB over 8 GPUs); a day of wall time for tens of thousands of long generations.
# A written block replaces these defaults whole, as a stage's block does.
_VLLM_CPUS_PER_GPU = 4
_VLLM_MEM_MB_PER_GPU = 32 * 1024
_VLLM_TIME_MIN = 24 * 60


@dataclass(frozen=True)
class Output:
    path: str
    directory: bool = False
    temp: bool = False  # a shard's part: removed once its gather has merged it


@dataclass(frozen=True)
class Job:
    """One Snakemake rule: its config and everything the rule declares around it."""

    config: jc.JobBase
    outputs: tuple[Output, ...]  # the main output first, then the rest (meta last)
    log: str
    threads: int
    resources: ir.Resources
    source: str  # "specs/tiny.flm:23"
    group: str | None = None
    deepspeed_stage: str | None = None  # "zero2" | "zero3" | "zero3_offload" when emitted

    @property
    def name(self) -> str:
        return self.config.job

    @property
    def inputs(self) -> tuple[str, ...]:
        """The data inputs, in a stable order (the config JSON is added by emit): the config's
        own list, so the rule and the job's record name the same files."""
        return self.config.inputs

    @property
    def kind(self) -> str:
        return self.config.kind  # type: ignore[attr-defined]

    @property
    def main_output(self) -> Output:
        return self.outputs[0]

    @property
    def data_config(self) -> jc.JobBase:
        """The config that decides what this job writes (a gather's: the unsharded job's); its
        hash is what Snakemake re-runs the job by, so re-cutting a step re-runs nothing."""
        return jc.data_config(self.config)

    @property
    def is_shard(self) -> bool:
        return getattr(self.config, "shard", None) is not None


@dataclass(frozen=True)
class Plan:
    experiment: str
    spec: str  # project-relative spec path
    out_dir: str  # where the workflow lives, project-relative (or absolute outside the project)
    jobs: tuple[Job, ...]
    cluster: ir.Cluster = field(default_factory=ir.Cluster)
    workdir: str = "."  # where jobs write, project-relative (the IR's workdir)

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def config_path(self, job: Job) -> str:
        return posixpath.join(self.out_dir, "jobs", f"{job.name}.json")


def deepspeed_path(out_dir: str, job: str) -> str:
    return posixpath.join(out_dir, "deepspeed", f"{job}.json")


def accelerate_path(out_dir: str, job: str) -> str:
    return posixpath.join(out_dir, "accelerate", f"{job}.yaml")


def job_name(kind: str, decl_name: str) -> str:
    return f"{kind}_{decl_name}"


def meta_path(main_output: str) -> str:
    return f"{main_output}.meta.json"


class _Planner:
    """Resolves names to paths for one experiment; `plan()` is the entry point."""

    def __init__(self, exp: ir.Experiment, out_dir: str) -> None:
        self.exp = exp
        self.out_dir = out_dir.rstrip("/") or "."
        self.decls = exp.declarations()
        self.work = exp.workdir.rstrip("/") or "."
        # Configs are frozen, so one instance per name serves every job that reads it: a sweep
        # point's jobs would otherwise validate the same sources and rewards again each time.
        self._sources: dict[str, jc.DataSource] = {}
        self._rewards: dict[tuple[str, float], tuple[jc.RewardTermCfg, tuple[str, ...]]] = {}
        self._benchmarks: dict[str, jc.Benchmark] = {}

    # ------------------------------------------------------------ paths and references

    def under(self, *parts: str) -> str:
        return posixpath.join(self.work, *parts)

    def data_path(self, name: str) -> str:
        return self.under("data", f"{name}.jsonl")

    def source_of(self, decl: ir.Decl | None) -> str:
        if decl is None or decl.span is None:
            return self.exp.spec
        return f"{decl.span.file}:{decl.span.line}"

    def decl(self, name: str, *kinds: str) -> ir.Decl:
        found = self.decls.get(name)
        if found is None:
            raise PlanError(f"{self.exp.spec}: '{name}' is not declared")
        kind = getattr(found, "kind", "")
        if kinds and kind not in kinds:
            raise PlanError(f"{self.exp.spec}: '{name}' is a {kind}, "
                            f"expected one of: {', '.join(kinds)}")
        return found

    def model_ref(self, name: str) -> tuple[str, tuple[str, ...]]:
        """(what a job loads: hub id or directory, the workflow inputs that implies)."""
        decl = self.decl(name, "model", "stage")
        if isinstance(decl, ir.Stage):
            path = self.under("stages", decl.name)
            return path, (path,)
        assert isinstance(decl, ir.Model)
        if decl.source == "tiny":
            path = self.under("models", decl.name)
            return path, (path,)
        if decl.source == "local":
            return decl.ref, (decl.ref,)
        return decl.ref, ()

    def generator(self, name: str) -> tuple[jc.Generator, tuple[str, ...]]:
        decl = self.decl(name, "model", "stage")
        backend = getattr(decl, "backend", None) or ir.Backend(kind="transformers")
        if backend.kind == "template":
            return jc.Generator(model="", backend=backend), ()
        model, inputs = self.model_ref(name)
        return jc.Generator(model=model, backend=backend), inputs

    def data_source(self, name: str) -> jc.DataSource:
        found = self._sources.get(name)
        if found is None:
            found = self._sources[name] = self._data_source(name)
        return found

    def _data_source(self, name: str) -> jc.DataSource:
        decl = self.decl(name, "dataset", "synthesize", "distill", "filter")
        if isinstance(decl, ir.Dataset):
            return jc.DataSource(path=decl.path, format=decl.format, name=name, split=decl.split,
                                 limit=decl.limit)
        return jc.DataSource(path=self.data_path(name), format="items", name=name)

    def upstream_teacher(self, name: str) -> str | None:
        """The teacher of the nearest distill/synthesize upstream of a data declaration."""
        seen: set[str] = set()  # a filter chain is walked in a loop: it may be long, or a loop
        decl = self.decls.get(name)
        while isinstance(decl, ir.Filter) and decl.name not in seen:
            seen.add(decl.name)
            decl = self.decls.get(decl.source)
        return decl.teacher if isinstance(decl, (ir.Distill, ir.Synthesize)) else None

    def base(self, kind: str, decl_name: str, main: str) -> dict:
        return {"job": job_name(kind, decl_name), "experiment": self.exp.name,
                "seed": self.exp.seed, "meta": meta_path(main)}

    def log(self, name: str) -> str:
        return self.under("logs", f"{name}.log")

    def data_resources(self, generators: list[jc.Generator],
                       declared: ir.Resources | None = None) -> ir.Resources:
        """The step's own resources block when written; otherwise CPU, or for a vLLM teacher its
        tensor-parallel GPUs, host memory to load the weights, CPU threads for tokenisation,
        and hours rather than minutes."""
        if declared is not None:
            return declared
        gpus = max((g.backend.tensor_parallel for g in generators if g.backend.kind == "vllm"),
                   default=0)
        if gpus == 0:
            return ir.Resources()
        return ir.Resources(gpus=gpus, cpus=_VLLM_CPUS_PER_GPU * gpus,
                            mem_mb=_VLLM_MEM_MB_PER_GPU * gpus, time_min=_VLLM_TIME_MIN)

    def partition(self, gpus: int, requested: str | None = None) -> str | None:
        if requested:
            return requested
        if gpus > 0 and self.exp.cluster.gpu_partition:
            return self.exp.cluster.gpu_partition
        return self.exp.cluster.partition

    def with_cluster(self, res: ir.Resources) -> ir.Resources:
        return res.model_copy(update={
            "partition": self.partition(res.gpus, res.partition),
            "account": res.account or self.exp.cluster.account,
        })

    def job(self, decl: ir.Decl | None, config: jc.JobBase, inputs: tuple[str, ...],
            extra_outputs: tuple[Output, ...] = (), directory: bool = False,
            resources: ir.Resources | None = None, deepspeed: str | None = None) -> Job:
        res = self.with_cluster(resources or ir.Resources())
        kind = config.kind  # type: ignore[attr-defined]
        grouped = (self.exp.cluster.group_cpu_jobs and kind in _GROUPABLE_KINDS and res.gpus == 0)
        outputs = (Output(config.output, directory), *extra_outputs,  # type: ignore[attr-defined]
                   Output(config.meta))
        config = config.model_copy(update={"inputs": _unique(inputs)})
        return Job(config=config, outputs=outputs, log=self.log(config.job),
                   threads=res.cpus, resources=res, source=self.source_of(decl),
                   group=_PREP_GROUP if grouped else None, deepspeed_stage=deepspeed)

    # ------------------------------------------------------------ one function per declaration

    def build_model(self, model: ir.Model) -> Job:
        out = self.under("models", model.name)
        # sorted: the order declarations appear in must not change the tokenizer (diff ignores it)
        corpus = tuple(sorted(set(
            [p for g in self.exp.graphs for p in g.paths]
            + [d.path for d in self.exp.datasets] + [p.path for p in self.exp.prompts])))
        cfg = jc.BuildModelJob(**self.base("build_model", model.name, out),
                               arch=model.tiny or ir.TinyArch(), corpus=corpus, output=out)
        return self.job(model, cfg, corpus, directory=True)

    def graph_load(self, graph: ir.Graph) -> Job:
        out = self.under("graph", f"{graph.name}.npz")
        cfg = jc.GraphLoadJob(**self.base("graph_load", graph.name, out), format=graph.format,
                              paths=graph.paths, output=out)
        return self.job(graph, cfg, graph.paths)

    def sample(self, sample: ir.Sample) -> Job:
        out = self.data_path(sample.name)
        graph_decl = self.decl(sample.graph, "graph")
        graph = self.under("graph", f"{graph_decl.name}.npz")
        cfg = jc.SampleJob(
            **self.base("sample", sample.name, out), graph=graph, start_type=sample.start_type,
            relations=tuple(s.relation for s in sample.steps),
            node_types=tuple(s.node_type for s in sample.steps),
            hops_min=sample.hops_min, hops_max=sample.hops_max, weight=sample.weight,
            alpha=sample.alpha, mask=sample.mask, distractors=sample.distractors,
            near_distractors=sample.near_distractors, clues=sample.clues, count=sample.count,
            output=out, readings=graph_decl.readings)  # type: ignore[attr-defined]
        if sample.seed is not None:
            cfg = cfg.model_copy(update={"seed": sample.seed})
        return self.job(sample, cfg, (graph,), resources=self.data_resources([], sample.resources))

    def synthesize(self, syn: ir.Synthesize) -> Job:
        out = self.data_path(syn.name)
        samples = self.data_path(self.decl(syn.source, "sample").name)
        prompt = self.decl(syn.prompt, "prompt").path  # type: ignore[attr-defined]
        teacher, teacher_inputs = self.generator(syn.teacher)
        cfg = jc.SynthesizeJob(**self.base("synthesize", syn.name, out), samples=samples,
                               prompt=prompt, teacher=teacher, cache_dir=self.cache_dir(),
                               output=out, variants=syn.variants, options=syn.options)
        return self.job(syn, cfg, (samples, prompt, *teacher_inputs),
                        resources=self.data_resources([teacher], syn.resources))

    def distill(self, dis: ir.Distill) -> Job:
        out = self.data_path(dis.name)
        sources = tuple(self.data_source(name) for name in dis.sources)
        prompt = self.decl(dis.prompt, "prompt").path  # type: ignore[attr-defined]
        teacher, teacher_inputs = self.generator(dis.teacher)
        rewrite = self.decl(dis.rewrite, "prompt").path if dis.rewrite else None  # type: ignore[attr-defined]
        judge, judge_inputs = self.generator(dis.judge) if dis.judge else (None, ())
        cfg = jc.DistillJob(**self.base("distill", dis.name, out), sources=sources, prompt=prompt,
                            teacher=teacher, protocol=dis.protocol, refine=dis.refine,
                            max_rounds=dis.max_rounds, keep=dis.keep, evidence=dis.evidence,
                            rewrite=rewrite, judge=judge, cache_dir=self.cache_dir(), output=out)
        generators = [teacher] + ([judge] if judge else [])
        return self.job(dis, cfg, (*(s.path for s in sources), prompt, *((rewrite,) if rewrite else ()),
                                   *teacher_inputs, *judge_inputs),
                        resources=self.data_resources(generators, dis.resources))

    def filter(self, flt: ir.Filter) -> Job:
        out = self.data_path(flt.name)
        review = self.under("data", f"{flt.name}.review.jsonl")
        source = self.data_source(flt.source)
        steps, inputs, generators = [], [source.path], []
        for step in flt.steps:
            cfg_step, step_inputs, step_gens = self.filter_step(flt, step)
            steps.append(cfg_step)
            inputs.extend(step_inputs)
            generators.extend(step_gens)
        cfg = jc.FilterJob(**self.base("filter", flt.name, out), source=source, steps=tuple(steps),
                           cache_dir=self.cache_dir(), output=out, review=review)
        return self.job(flt, cfg, tuple(inputs), extra_outputs=(Output(review),),
                        resources=self.data_resources(generators, flt.resources))

    def filter_step(self, flt: ir.Filter, step: ir.FilterStep):
        if isinstance(step, ir.FormatCheck):
            return jc.FormatStep(), (), ()
        if isinstance(step, ir.Dedupe):
            return jc.DedupeStep(method=step.method, threshold=step.threshold), (), ()
        if isinstance(step, ir.Decontaminate):
            against = tuple(self.data_source(name) for name in step.against)
            return (jc.DecontaminateStep(against=against, ngram=step.ngram),
                    tuple(a.path for a in against), ())
        if isinstance(step, ir.VerifyLabel):
            judge_name = step.model or self.upstream_teacher(flt.source)
            # unreachable from a spec: the check rule stages.verify_label_has_judge rejects a
            # verify_label with neither model = ... nor a teacher upstream, at its place
            assert judge_name is not None, f"verify_label in filter '{flt.name}' has no judge"
            judge, inputs = self.generator(judge_name)
            return (jc.VerifyLabelStep(judge=judge, votes=step.votes, agree=step.agree,
                                       on_fail=step.on_fail), inputs, (judge,))
        assert isinstance(step, ir.Difficulty)
        model, inputs = self.generator(step.model)
        cfg = jc.DifficultyStep(method=step.method, model=model, samples=step.samples,
                                easy=step.easy, moderate=step.moderate)
        if step.method == "grader":
            # the rubric is read by the job, so it is an input: editing it re-grades. Specs must
            # name one (the front end requires it); a hand-built IR keeps the config's default.
            if step.prompt is not None:
                rubric = self.decl(step.prompt, "prompt")
                assert isinstance(rubric, ir.Prompt)
                cfg = cfg.model_copy(update={"prompt": rubric.path})
            inputs = (*inputs, cfg.prompt)
        return cfg, inputs, (model,)

    def cache_dir(self) -> str:
        return self.under("cache", "teacher")

    # ------------------------------------------------------------ scatter / gather

    def scatter(self, job: Job, count: int, gather_inputs: tuple[str, ...] = ()) -> list[Job]:
        """`job` cut into `count` shard jobs (each with the step's inputs and resources, its
        part file temporary) and the gather that writes `job`'s outputs from their parts."""
        if count <= 1:
            return [job]
        shard_cfgs, gather_cfg = cut(job.config, count, self.under("shards", job.name))
        shards = [replace(job, config=cfg, log=self.log(cfg.job),
                          outputs=(Output(cfg.output, temp=True), Output(cfg.meta, temp=True)))
                  for cfg in shard_cfgs]
        res = self.with_cluster(ir.Resources())  # merging is light: one CPU, default memory
        parts = gather_cfg.parts
        inputs = (*(p.output for p in parts), *(p.meta for p in parts), *gather_inputs)
        gather_cfg = gather_cfg.model_copy(update={"inputs": _unique(inputs)})
        gather = Job(config=gather_cfg, outputs=job.outputs,
                     log=job.log, threads=res.cpus, resources=res, source=job.source)
        return [*shards, gather]

    def scattered_filter(self, flt: ir.Filter) -> list[Job]:
        job = self.filter(flt)
        cfg = job.config
        assert isinstance(cfg, jc.FilterJob)
        # the gather re-runs the cheap global steps itself: it reads what they read
        against = [a.path for step in cfg.steps if isinstance(step, jc.DecontaminateStep)
                   for a in step.against]
        return self.scatter(job, flt.shards, (cfg.source.path, *against))

    def stage(self, stage: ir.Stage) -> Job:
        out = self.under("stages", stage.name)
        model, model_inputs = self.model_ref(stage.init)
        miner = stage.data.miner
        if miner is not None:
            source = self.data_source(miner.pool)
            data = source.path
            miner = miner.model_copy(update={"pool": data})
        elif stage.data.dataset is not None:
            source = self.data_source(stage.data.dataset)
            data = source.path
        else:
            raise PlanError(f"{self.source_of(stage)}: stage '{stage.name}' has no data")
        t = stage.training
        res = stage.resources
        distributed = res.gpus > 0  # accelerate's YAML: CPU ranks are started by torchrun
        name = job_name(stage.method, stage.name)
        ds_path = deepspeed_path(self.out_dir, name)
        acc_path = accelerate_path(self.out_dir, name)
        common = dict(
            **self.base(stage.method, stage.name, out), model=model, data=data,
            data_source=source if source.format != "items" else None, buckets=stage.data.buckets,
            training=t,
            deepspeed_config=ds_path if t.deepspeed != "none" else None,
            accelerate_config=acc_path if distributed else None, output=out,
            track=self.exp.track, tracking_dir=self.under("tracking", stage.name) if self.exp.track else None)
        extra: tuple[Output, ...] = ()
        if stage.method == "sft":
            cfg: jc.JobBase = jc.SftJob(**common, plateau=stage.plateau)
        else:
            metrics = self.under("stages", f"{stage.name}.metrics.jsonl")
            terms = [self.reward_term(term) for term in stage.rewards]
            rewards = tuple(cfg for cfg, _ in terms)
            model_inputs = _unique((*model_inputs, *(path for _, paths in terms for path in paths)))
            cfg = jc.GrpoJob(**common, rewards=rewards,
                             plateau=stage.plateau, miner=miner, metrics=metrics)
            extra = (Output(metrics),)
        return self.job(stage, cfg, (*model_inputs, data), extra_outputs=extra, directory=True,
                        resources=res,
                        deepspeed=t.deepspeed if t.deepspeed != "none" else None)

    def reward_term(self, term: ir.RewardTerm) -> tuple[jc.RewardTermCfg, tuple[str, ...]]:
        """A term's config and the files it reads: a rubric() reward's grader model and rubric
        prompt are inputs of the stage (editing the rubric re-runs it)."""
        key = (term.reward, term.weight)
        if key not in self._rewards:
            self._rewards[key] = self._reward_term(term)
        return self._rewards[key]

    def _reward_term(self, term: ir.RewardTerm) -> tuple[jc.RewardTermCfg, tuple[str, ...]]:
        reward = self.decl(term.reward, "reward")
        assert isinstance(reward, ir.Reward)
        if reward.function != "rubric":
            return jc.RewardTermCfg(name=reward.name, function=reward.function, weight=term.weight,
                                    options=reward.options), ()
        grader, inputs = self.generator(str(reward.options["grader"]))
        prompt = reward.options.get("prompt")
        path = self.decl(str(prompt), "prompt").path if prompt else None
        return jc.RewardTermCfg(name=reward.name, function=reward.function, weight=term.weight,
                                grader=grader, prompt=path, cache_dir=self.cache_dir()), \
            (*inputs, *((path,) if path else ()))

    def benchmark(self, name: str) -> jc.Benchmark:
        found = self._benchmarks.get(name)
        if found is None:
            source = self.data_source(name)
            found = self._benchmarks[name] = jc.Benchmark(
                name=name, path=source.path, format=source.format, split=source.split,
                limit=source.limit)
        return found

    def evaluate(self, ev: ir.Evaluate, target: str, name: str, out: str) -> Job:
        model, inputs = self.model_ref(target)
        decl = self.decl(target, "model", "stage")
        teacher = None
        if isinstance(decl, ir.Model) and decl.backend is not None:
            # a teacher is evaluated through its own backend, under the evaluation's sampling
            backend = decl.backend.model_copy(update={"temperature": ev.temperature,
                                                      "max_tokens": ev.max_tokens})
            teacher = jc.Generator(model=model, backend=backend)
        benchmarks = [self.benchmark(bench) for bench in ev.benchmarks]
        base = self.base("eval", target, out) | {"job": name}
        grading: dict = {}
        if ev.grader is not None:
            grader, grader_inputs = self.generator(ev.grader)
            inputs = (*inputs, *grader_inputs)
            grading = {"grader": grader, "cache_dir": self.cache_dir(),
                       "rubric_prompt": self.decl(ev.rubric_prompt, "prompt").path if ev.rubric_prompt else None}
            if grading["rubric_prompt"]:
                inputs = (*inputs, grading["rubric_prompt"])
        cfg = jc.EvalJob(**base, target=target, model=model, benchmarks=tuple(benchmarks),
                         samples=ev.samples, temperature=ev.temperature, max_tokens=ev.max_tokens,
                         limit=ev.limit, accept=ev.accept, output=out, backend=ev.engine,
                         tensor_parallel=max(ev.resources.gpus, 1), metrics=ev.metrics, **grading)
        resources = ev.resources
        if teacher is not None:
            cfg = cfg.model_copy(update={"teacher": teacher, "cache_dir": self.cache_dir()})
            resources = ev.resources if ev.resources != ir.Resources() else self.data_resources([teacher])
        return self.job(ev, cfg, (*inputs, *(b.path for b in benchmarks)), resources=resources,
                        extra_outputs=(Output(jc.predictions_path(out)),))

    def evaluations(self) -> list[Job]:
        """One eval job per target; a target evaluated by two declarations gets both names."""
        counts: dict[str, int] = {}
        for ev in self.exp.evaluations:
            for target in ev.targets:
                counts[target] = counts.get(target, 0) + 1
        jobs = []
        for ev in self.exp.evaluations:
            for target in ev.targets:
                stem = target if counts[target] == 1 else f"{ev.name}_{target}"
                jobs += self.scatter(self.evaluate(ev, target, job_name("eval", stem),
                                                   self.under("eval", f"{stem}.json")),
                                     ev.sharding.shards)
        return jobs

    def report(self, jobs: list[Job]) -> Job:
        out = self.under("report")
        # A gather writes what its unsharded job would; shards' parts are temporary. So the
        # report reads the same files however the steps are cut.
        configs = [j.data_config for j in jobs if not j.is_shard]
        metas = tuple(c.meta for c in configs)
        metrics = tuple(c.metrics for c in configs if isinstance(c, jc.GrpoJob))
        evals = tuple(c.output for c in configs if isinstance(c, jc.EvalJob))
        predictions = tuple(jc.predictions_path(path) for path in evals)
        cfg = jc.ReportJob(job="report", experiment=self.exp.name, seed=self.exp.seed,
                           meta=meta_path(out), metas=metas, metrics=metrics, evals=evals,
                           predictions=predictions, output=out)
        return self.job(None, cfg, (*metas, *metrics, *evals, *predictions),
                        directory=True)  # the whole spec

    def plan(self) -> Plan:
        exp = self.exp
        jobs = [self.build_model(m) for m in exp.models if m.source == "tiny"]
        jobs += [self.graph_load(g) for g in exp.graphs]
        jobs += [self.sample(s) for s in exp.samples]
        for syn in exp.synthesize:
            jobs += self.scatter(self.synthesize(syn), syn.sharding.shards)
        for dis in exp.distill:
            jobs += self.scatter(self.distill(dis), dis.sharding.shards)
        for flt in exp.filters:
            jobs += self.scattered_filter(flt)
        jobs += [self.stage(s) for s in exp.stages]
        jobs += self.evaluations()
        jobs.append(self.report(jobs))
        _check_unique(jobs)
        return Plan(experiment=exp.name, spec=exp.spec, out_dir=self.out_dir, jobs=tuple(jobs),
                    cluster=exp.cluster, workdir=self.work)


def cut(cfg: jc.JobBase, count: int, folder: str) -> tuple[list[jc.JobBase], jc.GatherJob]:
    """The configs of `count` shards of the job `cfg` (parts under `folder`) and of its gather.

    A shard is `cfg` with `shard` set, its own name, and a part file for output; the gather
    carries `cfg` unchanged as its task, so it writes what `cfg` would."""
    name = cfg.job
    shards, parts = [], []
    for index in range(count):
        job = f"{name}_shard{index + 1}of{count}"
        # the part is named after its job: the workflow's rule for it keys jobs by that stem
        part = posixpath.join(folder, f"{job}.jsonl")
        update = {"job": job, "output": part,
                  "meta": meta_path(part), "shard": jc.Shard(index=index, count=count, of=name)}
        if isinstance(cfg, jc.FilterJob):
            update["review"] = ""  # the gather sorts items into kept and review
        shard = cfg.model_copy(update=update)
        shards.append(shard)
        parts.append(jc.ShardPart(job=shard.job, output=part, meta=shard.meta))
    gather = jc.GatherJob(job=name, experiment=cfg.experiment, seed=cfg.seed, meta=cfg.meta,
                          task=cfg, parts=tuple(parts), output=cfg.output)  # type: ignore[arg-type,attr-defined]
    return shards, gather


def _unique(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for p in paths if p))


def _check_unique(jobs: list[Job]) -> None:
    seen: dict[str, str] = {}
    for job in jobs:
        for path in [o.path for o in job.outputs]:
            if path in seen:
                raise PlanError(f"{job.source}: job '{job.name}' writes {path}, "
                                f"which job '{seen[path]}' writes too")
            seen[path] = job.name


def plan(exp: ir.Experiment, out_dir: str) -> Plan:
    """The jobs of `exp`'s workflow, to be emitted under `out_dir` (project-relative)."""
    return _Planner(exp, out_dir).plan()
