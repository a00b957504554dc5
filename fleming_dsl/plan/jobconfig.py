"""The job configs: the contract between the compiler and the job runtime.

The planner (`plan.py`) turns the IR into one `JobConfig` per Snakemake rule; the emitter writes
each as `generated/<exp>/jobs/<job>.json`; the rule runs `fleming job <kind> --config <file>`;
`fleming_dsl.runtime.jobs.<kind>` reads it back with `load_job_config`. Paths are relative to the project
root, which is Snakemake's working directory when jobs run.

Every job writes its declared outputs atomically and, at `meta`, a JSON record of what it did
(config hash, input hashes, counts, metrics, timings, library versions): see `jobs/common.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from fleming_dsl.ir import Backend, Miner, Plateau, TinyArch, Training, other_method_options
from fleming_dsl.vocabulary import MAX_COUNT


# The signal SLURM sends a job before its time limit (`sbatch --signal=URG@<lead>`, written by the
# emitter) and that a scheduler's preemption or `scancel --signal=URG` sends: the job checkpoints,
# requeues itself and exits (runtime/preemption.py). SIGURG, not the customary USR1, because SLURM
# delivers it to every process of the job step, and Snakemake's own processes there (and bash)
# die of USR1 but ignore URG by default, so only the job that handles it notices.
PREEMPT_SIGNAL = "URG"


class Cfg(BaseModel):
    # allow_inf_nan=False: `lr = NaN` in a hand-edited config is an error, not a silent NaN run
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class JobBase(Cfg):
    job: str  # the rule name, unique in the workflow
    experiment: str
    seed: int
    meta: str  # path of the metadata JSON this job writes beside its outputs
    # The files and folders this job reads, as the planner found them: the one list. The
    # workflow declares them as the rule's inputs (Snakemake re-runs on a newer one) and the job
    # records their content hashes in its meta (`fleming status` compares them).
    inputs: tuple[str, ...] = ()


def config_text(cfg: Cfg) -> str:
    """The canonical JSON text of a config, as `generated/<exp>/jobs/<job>.json` holds it; its
    sha256 is the config hash the workflow and the metadata records compare."""
    return json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


class Shard(Cfg):
    """Which slice of its input a shard job takes: the items whose id hashes to `index` of
    `count` (`runtime/data/shards.py`); `of` names the gather job that merges the slices."""

    index: int  # 0-based
    count: int
    of: str


class Shardable(JobBase):
    """A job kind that may run as one of several shards (`shards = N` in the spec).

    `shard` is left out of the JSON when unset, so an unsharded job's config (and its hash)
    is the same as before sharding existed, and the same as the `task` its gather carries.
    """

    shard: Shard | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_shard(self, handler):
        data = handler(self)
        if data.get("shard", 0) is None:
            del data["shard"]
        return data

    @property
    def logical_job(self) -> str:
        """The job this one is (part of): what item ids and sources are named after."""
        return self.shard.of if self.shard is not None else self.job


class DataSource(Cfg):
    """A file of items and the published format it is in."""

    path: str
    format: str  # an ir.DatasetFormat, or "items" for the project's own item JSONL
    name: str = ""
    split: str | None = None  # keep rows whose split field (check.data.SPLIT_FIELDS) is this
    limit: int | None = None  # then keep the first `limit` rows


class Generator(Cfg):
    """A model that generates text: where its weights are and how it is run."""

    model: str  # hub id, or a project-relative path to a saved model directory; "" for template
    backend: Backend


# ---------------------------------------------------------------- data jobs


class BuildModelJob(JobBase):
    kind: Literal["build_model"] = "build_model"
    arch: TinyArch
    corpus: tuple[str, ...]  # text sources (any project files) the tokenizer is trained on
    output: str  # model directory (save_pretrained layout)


class GraphLoadJob(JobBase):
    kind: Literal["graph_load"] = "graph_load"
    format: Literal["primekg", "hetionet", "triples"]
    paths: tuple[str, ...]
    output: str  # the compact CSR graph store (.npz)


class SampleJob(JobBase):
    kind: Literal["sample"] = "sample"
    graph: str  # the .npz store
    start_type: str | None
    relations: tuple[str | None, ...]  # metapath relation per hop (None = any), cycled to hops_max
    node_types: tuple[str | None, ...]  # metapath node type per hop (None = any)
    hops_min: int
    hops_max: int
    weight: Literal["uniform", "inverse_degree"]
    alpha: float
    mask: Literal["anchor", "target"] | int
    distractors: int
    near_distractors: bool
    clues: int | None = Field(default=None, ge=1)  # None: the path's own edges to the masked entity
    count: int = Field(ge=1, le=MAX_COUNT)
    output: str  # JSONL of sampled paths with masked answer and distractors
    # the graph's `reads { }`: (relation, from its head, from its tail), written into each row
    readings: tuple[tuple[str, str, str], ...] = ()


class SynthesizeJob(Shardable):
    kind: Literal["synthesize"] = "synthesize"
    samples: str  # JSONL from a sample job
    prompt: str  # jinja2 template path
    teacher: Generator
    cache_dir: str  # teacher-call cache, shared by every job of the experiment
    output: str  # item JSONL (id, question, options, answer, source, provenance)
    variants: int = 1  # items per path: each its own distractor draw and option order
    options: int | None = None  # options per item; None: the answer and all the row's distractors


class DistillJob(Shardable):
    kind: Literal["distill"] = "distill"
    sources: tuple[DataSource, ...]
    prompt: str
    teacher: Generator
    protocol: Literal["rationale", "search"] = "rationale"
    refine: tuple[str, ...]
    max_rounds: int
    keep: Literal["correct", "all"]
    evidence: bool = False
    rewrite: str | None = None  # jinja2 template path
    judge: Generator | None = None
    cache_dir: str
    output: str  # item JSONL with `messages` (chat) holding <think>..</think><answer>X</answer>


class FormatStep(Cfg):
    step: Literal["format"] = "format"


class VerifyLabelStep(Cfg):
    step: Literal["verify_label"] = "verify_label"
    judge: Generator
    votes: int
    agree: int
    on_fail: Literal["drop", "review"]


class DedupeStep(Cfg):
    step: Literal["dedupe"] = "dedupe"
    method: Literal["exact", "minhash"]
    threshold: float


class DecontaminateStep(Cfg):
    step: Literal["decontaminate"] = "decontaminate"
    against: tuple[DataSource, ...]
    ngram: int


class DifficultyStep(Cfg):
    step: Literal["difficulty"] = "difficulty"
    method: Literal["pass_rate", "grader"]
    model: Generator
    samples: int
    easy: float
    moderate: float
    # Added by the data engineer (optional): the grader's rubric prompt (method = grader).
    prompt: str = "prompts/grader.j2"


FilterStepCfg = Annotated[
    Union[FormatStep, VerifyLabelStep, DedupeStep, DecontaminateStep, DifficultyStep],
    Field(discriminator="step"),
]


class FilterJob(Shardable):
    kind: Literal["filter"] = "filter"
    source: DataSource
    steps: tuple[FilterStepCfg, ...]
    cache_dir: str
    output: str  # kept items, each with a `difficulty` field when annotated
    review: str  # items sent to review (label verification failures); "" in a shard job


# ---------------------------------------------------------------- training jobs


class TrainCommon(JobBase):
    model: str  # hub id or project-relative model directory to start from
    data: str  # item JSONL
    # when the stage trains on a declared dataset itself: its format, split and limit
    data_source: DataSource | None = None
    buckets: tuple[str, ...] = ()  # keep only items whose `difficulty` is one of these (empty = all)
    # the stage's options as lowering resolved them (the IR's model, not a restatement); the
    # JSON holds those of this job's method (see `_method_options`)
    training: Training
    deepspeed_config: str | None  # path of the emitted DeepSpeed JSON
    accelerate_config: str | None  # path of the emitted accelerate YAML
    output: str  # model directory; checkpoints under <output>.ckpt/ while training
    # experiment-level `track`: TRL report_to integrations, written offline under tracking_dir
    track: tuple[Literal["tensorboard", "trackio", "mlflow", "wandb"], ...] = ()
    tracking_dir: str | None = None

    @model_serializer(mode="wrap")
    def _method_options(self, handler):
        """Leave the other method's options out of the JSON (a grpo option's default is no
        part of an sft job, nor of its config hash); reading the file back fills them in."""
        data = handler(self)
        if isinstance(data.get("training"), dict):
            other = other_method_options(self.kind)  # type: ignore[attr-defined]
            data["training"] = {k: v for k, v in data["training"].items() if k not in other}
        return data


class SftJob(TrainCommon):
    kind: Literal["sft"] = "sft"
    plateau: Plateau | None = None  # metric "loss": stop when it stops falling


class RewardTermCfg(Cfg):
    name: str
    function: str  # registered reward function
    weight: float
    options: dict[str, str | int | float | bool] = {}
    # rubric(): the grader teacher, its rubric prompt (template path; built-in when None) and
    # the experiment's teacher cache. Left out of the JSON when unset, so other terms' configs
    # (and their hashes) are what they were before rubric rewards existed.
    grader: Generator | None = None
    prompt: str | None = None
    cache_dir: str | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_grading(self, handler):
        data = handler(self)
        for key in ("grader", "prompt", "cache_dir"):
            if data.get(key, 0) is None:
                del data[key]
        return data


# The environment variable a stage's launch script sets to the address of the vLLM server it
# started (vllm_mode = server); the grpo job hands it to GRPOConfig.vllm_server_base_url.
VLLM_SERVER_ENV = "FLEMING_VLLM_SERVER_BASE_URL"


class GrpoJob(TrainCommon):
    kind: Literal["grpo"] = "grpo"
    rewards: tuple[RewardTermCfg, ...]
    plateau: Plateau | None
    miner: Miner | None  # miner.pool is resolved to the `data` path; stage-2 mining when set
    metrics: str  # JSONL of per-step rewards (total, per reward, per bucket)

    @model_validator(mode="before")
    @classmethod
    def _resolve_defaults(cls, data: Any) -> Any:
        """Record the values TRL and vLLM will use (`Training.for_rollouts`)."""
        if isinstance(data, dict) and "training" in data:
            t = data["training"]
            t = t if isinstance(t, Training) else Training.model_validate(t)
            data = {**data, "training": t.for_rollouts()}
        return data


# ---------------------------------------------------------------- evaluation and report


class Benchmark(Cfg):
    name: str
    path: str
    format: str
    split: str | None = None  # as DataSource
    limit: int | None = None


def predictions_path(output: str) -> str:
    """An eval job's per-item predictions, one row per (item, sample), beside its results: an
    output the planner declares, so the report that reads it re-runs when it changes."""
    return f"{output}.predictions.jsonl"


class EvalJob(Shardable):
    kind: Literal["eval"] = "eval"
    target: str  # the stage or model name being evaluated
    model: str  # model directory or hub id
    benchmarks: tuple[Benchmark, ...]
    samples: int
    temperature: float
    max_tokens: int
    limit: int | None
    output: str  # results JSON: per benchmark accuracy, CI, format rate, n
    # Added by the eval engineer (optional, defaults keep older configs valid):
    # auto: vllm where it is installed and a GPU is present, transformers otherwise (at run time)
    backend: Literal["auto", "transformers", "vllm"] = "transformers"
    tensor_parallel: int = 1  # vllm only: the evaluation's GPUs (fitted to the model's heads at run time)
    batch_size: int = 32  # prompts per transformers generate call
    # a model with its own generation backend (an OpenAI-compatible endpoint, a vLLM or
    # transformers teacher) is evaluated through that backend, cached like any teacher call
    teacher: Generator | None = None
    cache_dir: str | None = None
    accept: Literal["letter", "text"] = "letter"  # text: an option's exact text also counts
    # rubric benchmarks (healthbench): responses graded criterion by criterion by this model,
    # its verdicts cached in `cache_dir` (the experiment's teacher cache)
    grader: Generator | None = None
    rubric_prompt: str | None = None  # template path; the built-in rubric prompt when None
    metrics: tuple[str, ...] = ()  # pass@k / maj@k beside accuracy (ir.SAMPLED_METRIC)


class ReportJob(JobBase):
    kind: Literal["report"] = "report"
    metas: tuple[str, ...]  # every job's meta JSON (counts, filter removals, timings)
    metrics: tuple[str, ...]  # GRPO per-step metrics JSONL files
    evals: tuple[str, ...]  # eval results JSON files
    predictions: tuple[str, ...] = ()  # their per-item predictions (paired tests, answers shown)
    output: str  # report directory: index.html + report.md + PNG plots


# ---------------------------------------------------------------- scatter / gather


ShardedTask = Annotated[Union[SynthesizeJob, DistillJob, FilterJob, EvalJob],
                        Field(discriminator="kind")]


class ShardPart(Cfg):
    job: str  # the shard job's name (its meta must say so)
    output: str  # its part file (JSONL of {"pos", "out"} records in input order)
    meta: str  # its metadata record: counts, the part's sha256


class GatherJob(JobBase):
    """Merges the parts of a sharded job into the outputs the unsharded job would write.

    `task` is that unsharded job's config, exactly: its outputs, its meta, and the hash the
    workflow re-runs it by (so changing only the shard count changes no data and re-runs
    nothing downstream). The gather checks that every part is complete before it writes.
    """

    kind: Literal["gather"] = "gather"
    task: ShardedTask
    parts: tuple[ShardPart, ...]
    output: str  # = task.output


JobConfig = Annotated[
    Union[
        BuildModelJob, GraphLoadJob, SampleJob, SynthesizeJob, DistillJob, FilterJob, SftJob,
        GrpoJob, EvalJob, ReportJob, GatherJob,
    ],
    Field(discriminator="kind"),
]

JOB_KINDS = (
    "build_model", "graph_load", "sample", "synthesize", "distill", "filter", "sft", "grpo",
    "eval", "report", "gather",
)


def data_config(cfg: JobBase) -> JobBase:
    """The config that decides a job's outputs: a gather's task, any other job itself."""
    return cfg.task if isinstance(cfg, GatherJob) else cfg


class _Wrapper(Cfg):
    config: JobConfig


def load_job_config(path: str | Path) -> JobBase:
    """Read and validate a job config; ValueError (JSON) or pydantic.ValidationError on a bad file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))  # JSONDecodeError: line/col of the file
    return _Wrapper.model_validate({"config": data}).config
