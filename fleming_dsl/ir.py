"""The intermediate representation: a resolved, checked experiment.

The IR is what the front end (parser -> AST -> checks -> lowering) produces and what the planner
(`plan.py`, IR -> jobs) consumes. Every node is frozen and JSON-serialisable; `fleming schema`
prints `Experiment.model_json_schema()`.

Rules of the IR:
- names are resolved: a reference is the declared name of a node of the right kind;
- values are normalised: sizes in bytes, durations in minutes, paths relative to the project
  root (the directory `fleming compile` ran in), with forward slashes;
- every declaration remembers the span of the spec text it came from (`span`), so `explain`
  and `diff` can point back to file:line; spans are excluded from the IR hash.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Span(Node):
    """Where a declaration or value came from (1-based line and column)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int


class Decl(Node):
    name: str
    span: Span | None = Field(default=None, exclude=False)


@dataclass(frozen=True)
class Option:
    """What makes an IR field a spec option (the rest of the row is the field itself: its type,
    its default, its range as pydantic constraints and its meaning as the description).

    This is the one declaration of a stage option (`Training`), a resources option
    (`Resources`), a lora option (`Lora`), an evaluate or distill option (`Evaluate`, `Distill`,
    with `Sharding`'s), a synthesize option (`Synthesize`), a cluster option (`Cluster`), a
    plateau() option (`Plateau`), a tiny() option (`TinyArch`) and a dataset option (`Dataset`):
    lowering (`lower/schema.py`), the language reference and the language server
    (`lower/options.py`), `fleming explain` (`lower/names.py`) and the `trl { }` block's managed
    fields all read it; the job configs nest `Training`.
    """

    word: str = ""  # as written in the spec, where it is not the field's name
    methods: tuple[str, ...] = ("sft", "grpo")  # a stage option: the stage methods that take it
    unit: str = ""
    # the values it takes, where the annotation does not say: "trl" (what the installed TRL
    # accepts for the GRPOConfig field of the same name), "lr_schedulers" (transformers'), "url",
    # "size" (512MB, 80GB: the field holds MB), "duration" (30m, 48h: the field holds minutes),
    # "seconds" (a duration, 30s or 15m, the field holds seconds),
    # "name" (a declaration's name), "sampled_metrics" (["pass@8", "maj@8"]: SAMPLED_METRIC)
    values: str = ""
    # how a user writes it, for the reference, where the converter's words say too little
    # ("name (a prompt)"); "" = read off the converter
    written: str = ""
    # a nested model whose options are written in this block itself (an evaluation's `sharding`:
    # `shards`, `items_per_shard`); its own lowering reads them (`lower/shards.py`)
    inline: bool = False
    # an inline model's options whose meaning differs in this block: (word, meaning) pairs
    meanings: tuple[tuple[str, str], ...] = ()
    # where it takes effect: "trl.<field>" (a TRL SFTConfig/GRPOConfig field, which a `trl { }`
    # block then may not set), "vllm-serve --<flag>", "deepspeed <key>"; () = the job's own code
    lands: tuple[str, ...] = ()


def option(default: Any, meaning: str, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, **row: Any) -> Any:
    """An option's field: `lr: float = option(1e-5, "peak learning rate", gt=0, ...)`."""
    info = Field(default, description=meaning, gt=gt, ge=ge, lt=lt, le=le)
    info.metadata.append(Option(**row))
    return info


def option_of(info: Any) -> Option | None:
    """The `Option` row of a pydantic field, or None when the field is no spec option."""
    return next((m for m in info.metadata if isinstance(m, Option)), None)


_TRL = "trl."


# ---------------------------------------------------------------- models


class Backend(Node):
    """How a model generates text when it is used as a teacher, grader or judge."""

    kind: Literal["vllm", "transformers", "openai", "template"]
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    tensor_parallel: int = 1  # vllm only
    base_url: str | None = None  # openai only
    api_key_env: str | None = None  # openai only: name of the env var holding the key
    timeout_s: float = 120.0
    retries: int = 5
    concurrency: int = 8
    # template() only: a fallible stand-in teacher. Per item (seeded), the share of first answers
    # that name a wrong option, and the share of answers that come back malformed.
    error_rate: float = 0.0
    malformed_rate: float = 0.0


class TinyArch(Node):
    """A small Qwen2-style causal LM built from scratch by a workflow step (the embedded default);
    each field is an option of `tiny(...)`."""

    hidden: int = option(128, "hidden size", ge=1)
    layers: int = option(2, "transformer layers", ge=1)
    heads: int = option(4, "attention heads", ge=1)
    kv_heads: int = option(2, "key/value heads", ge=1)
    vocab: int = option(800, "tokenizer vocabulary size", ge=1)
    max_position: int = option(512, "longest sequence", ge=1, unit="tokens")


class Model(Decl):
    kind: Literal["model"] = "model"
    source: Literal["hf", "local", "tiny"]
    ref: str  # hub id (hf), project-relative path (local), "" (tiny)
    tiny: TinyArch | None = None
    backend: Backend | None = None


# ---------------------------------------------------------------- data


GraphFormat = Literal["primekg", "hetionet", "triples"]
# the difficulty buckets of a graded dataset, easiest first (the one list: checks, lowering, jobs, reports)
Bucket = Literal["easy", "moderate", "hard"]
BUCKETS: tuple[str, ...] = get_args(Bucket)
EASY, MODERATE, HARD = BUCKETS  # by name, where a rule picks one


class Graph(Decl):
    kind: Literal["graph"] = "graph"
    format: GraphFormat
    paths: tuple[str, ...]  # primekg: (kg.csv,), hetionet: (nodes.tsv, edges.sif), triples: (x.tsv,)
    # (relation, how it reads from its head, how it reads from its tail), from `reads { }`:
    # the words a teacher is given for a relation, in either direction, sorted by relation
    readings: tuple[tuple[str, str, str], ...] = ()


class MetapathStep(Node):
    """One hop: follow an edge of `relation` (None = any) to a node of `node_type`."""

    relation: str | None
    node_type: str | None


class Sample(Decl):
    kind: Literal["sample"] = "sample"
    graph: str
    start_type: str | None
    steps: tuple[MetapathStep, ...]  # the metapath pattern, repeated/truncated to the hop range
    hops_min: int
    hops_max: int
    weight: Literal["uniform", "inverse_degree"] = "inverse_degree"
    alpha: float = 0.75
    mask: Literal["anchor", "target"] | int = "target"
    distractors: int = 3
    near_distractors: bool = True
    clues: int | None = None  # None: the path's own edges to the masked entity
    count: int
    seed: int | None = None  # defaults to the experiment seed
    resources: Resources | None = None  # None: the planner's defaults for a data job


DatasetFormat = Literal[
    "medqa", "medmcqa", "pubmedqa", "mmlu", "mmlu_pro", "medxpertqa", "medbullets", "careqa",
    "jmed", "mcq", "medagentsbench", "healthbench", "chat",
]


class Dataset(Decl):
    kind: Literal["dataset"] = "dataset"
    format: DatasetFormat
    path: str
    split: str | None = option(None, "subset to keep (e.g. the MMLU-Pro category)")
    limit: int | None = option(None, "keep only the first N items", ge=1)


class Prompt(Decl):
    kind: Literal["prompt"] = "prompt"
    path: str


class Sharding(Node):
    """How a data step is cut into jobs (`shards = N`, or `shards = auto` with `items_per_shard`).

    `shards` is resolved: `auto` becomes ceil(upper bound of the step's items / items_per_shard)
    at lowering, from the declared counts upstream (sample `count`, dataset `limit`). Each item
    goes to the shard a stable hash of its id picks; a gather job merges the shards in input
    order, so the data does not depend on the cut (see docs/sharding.md).
    """

    shards: int = option(1, "jobs the step is cut into, by a stable hash of item ids, merged by a gather "
                         "job (docs/sharding.md)", ge=1, written="whole number or auto")
    # set when the spec wrote shards = auto
    items_per_shard: int | None = option(None, "with shards = auto: items per job, over the items the "
                                         "spec bounds upstream", ge=1)


class Synthesize(Decl):
    kind: Literal["synthesize"] = "synthesize"
    source: str  # a Sample
    teacher: str  # a Model with a backend
    prompt: str  # a Prompt
    variants: int = option(1, "items per sampled path, each with its own distractor draw and the answer at "
                           "another letter (deterministic per seed)", ge=1)
    # an item's options are lettered A..Z
    options: int | None = option(None, "options per item (the answer and options - 1 distractors; all the "
                                 "sampled distractors when not given)", ge=2, le=26)
    resources: Resources | None = None  # None: the planner's defaults (GPUs for a vLLM teacher)
    # a synthesize step's items are its sampled paths
    sharding: Sharding = option(Sharding(), "how the step is cut into jobs", inline=True, meanings=(
        ("shards", "jobs the step is cut into, by a stable hash of path ids, merged by a gather job "
         "(docs/sharding.md)"), ("items_per_shard", "with shards = auto: sampled paths per job")))


class Distill(Decl):
    """A `distill` declaration: each field with an `option` is an option of its block."""

    kind: Literal["distill"] = "distill"
    sources: tuple[str, ...]  # Synthesize / Dataset / Filter names
    teacher: str
    prompt: str
    # rationale: the label is in the prompt (a concise rationale, revised when it misses);
    # search: the label is hidden, a verifier checks each round's answer (HuatuoGPT-o1's search)
    protocol: Literal["rationale", "search"] = option(
        "rationale", "rationale: the prompt gives the label and asks why; search: the label is hidden, a "
        "verifier checks each answer and a failed chain continues with a strategy (docs/language.md, "
        "Distillation protocols)")
    refine: tuple[Literal["backtrack", "explore", "self_correct"], ...] = option(
        (), "strategies a wrong chain continues with: cycled in this order (rationale), drawn per item "
        "and round from the seed (search)")
    max_rounds: int = option(1, "attempts per question, the first included", ge=1)
    keep: Literal["correct", "all"] = option(
        "correct", "correct: only chains that reach the label are written; all: an unsolved item keeps "
        "its last readable chain")
    evidence: bool = option(False, "search: give the sampled path's facts that do not name the answer to "
                            "the teacher")
    rewrite: str | None = option(  # a Prompt
        None, "search: the prompt that turns a search solved after round 1 into one natural chain "
        "keeping its reflections (without it, the attempts are joined as they are)", values="name",
        written="name of a prompt")
    judge: str | None = option(  # a Model
        None, "search: verifies an answer that names no option exactly against the reference (else such "
        "an answer fails)", values="name", written="name of a model")
    resources: Resources | None = None  # None: the planner's defaults (GPUs for a vLLM teacher)
    sharding: Sharding = option(Sharding(), "how the step is cut into jobs", inline=True)


# ---------------------------------------------------------------- filters


class FormatCheck(Node):
    step: Literal["format"] = "format"


class VerifyLabel(Node):
    step: Literal["verify_label"] = "verify_label"
    model: str | None = None  # defaults to the distill teacher
    votes: int = 5
    agree: int = 1  # keep when at least `agree` of `votes` answers match the label
    on_fail: Literal["drop", "review"] = "review"
    sharding: Sharding = Sharding()  # the model-backed steps of one filter share their shards


class Dedupe(Node):
    step: Literal["dedupe"] = "dedupe"
    method: Literal["exact", "minhash"] = "minhash"
    threshold: float = 0.8


class Decontaminate(Node):
    step: Literal["decontaminate"] = "decontaminate"
    against: tuple[str, ...]  # Dataset names
    ngram: int = 13


class Difficulty(Node):
    step: Literal["difficulty"] = "difficulty"
    method: Literal["pass_rate", "grader"] = "pass_rate"
    model: str  # pass_rate: the model sampled k times; grader: the LLM grader
    samples: int = 8
    easy: float = 0.75  # pass >= easy -> easy
    moderate: float = 0.25  # pass >= moderate -> moderate; below -> hard
    prompt: str | None = None  # grader only: a Prompt name, the rubric the grader is asked with
    sharding: Sharding = Sharding()  # the model-backed steps of one filter share their shards


_STEP_MODELS = (FormatCheck, VerifyLabel, Dedupe, Decontaminate, Difficulty)
# the filter steps in the order a filter job runs them (the one list: lowering, completion, reports)
FILTER_STEPS: tuple[str, ...] = tuple(m.model_fields["step"].default for m in _STEP_MODELS)
FORMAT, VERIFY_LABEL, DEDUPE, DECONTAMINATE, DIFFICULTY = FILTER_STEPS  # by name, to pick one
# the steps that remove items (a filter job counts what each removed); difficulty only annotates
REMOVING_STEPS = tuple(s for s in FILTER_STEPS if s != DIFFICULTY)
FilterStep = Annotated[
    Union[_STEP_MODELS], Field(discriminator="step")
]


class Filter(Decl):
    kind: Literal["filter"] = "filter"
    source: str
    steps: tuple[FilterStep, ...]
    resources: Resources | None = None  # None: the planner's defaults (GPUs for a vLLM model)

    @property
    def shards(self) -> int:
        """The shard count of the filter's model-backed steps (lowering makes them agree)."""
        return max((s.sharding.shards for s in self.steps
                    if isinstance(s, (VerifyLabel, Difficulty))), default=1)


# ---------------------------------------------------------------- rewards


class Reward(Decl):
    kind: Literal["reward"] = "reward"
    function: str  # a registered reward: choice_match, regex, length_penalty, or a plugin name
    options: dict[str, str | int | float | bool] = {}


class RewardTerm(Node):
    reward: str  # a Reward name
    weight: float


# ---------------------------------------------------------------- stages


class Resources(Node):
    """A `resources { }` block: each field is its option (`option`), read by lowering and the
    reference alike."""

    nodes: int = option(1, "nodes per job (multi-node training runs one launcher per node)", ge=1)
    gpus: int = option(0, "GPUs per node (sbatch --gres=gpu:N)", ge=0)
    cpus: int = option(1, "CPU cores per task (sbatch --cpus-per-task)", ge=1)
    mem_mb: int = option(4096, "memory per node; the unit is required", gt=0, word="mem", unit="MB",
                         values="size")
    # memory of one GPU: the 80 GB A100/H100 class the paper-scale specs target
    gpu_mem_mb: int = option(81_920, "memory of one GPU (what `fleming check` fits vLLM and ZeRO-3 into)",
                             gt=0, word="gpu_mem", unit="MB", values="size")
    time_min: int = option(60, "wall-time limit; the unit is required", gt=0, word="time",
                           unit="minutes", values="duration")
    partition: str | None = option(None, "SLURM partition (overrides the cluster block)")
    account: str | None = option(None, "SLURM account (overrides the cluster block)")


class Lora(Node):
    """A stage's `lora { }` block (each field its option)."""

    r: int = option(16, "adapter rank", ge=1)
    alpha: int = option(32, "adapter scaling", ge=1)
    dropout: float = option(0.05, "adapter dropout", ge=0)
    target_modules: tuple[str, ...] = option(("q_proj", "k_proj", "v_proj", "o_proj"),
                                             "modules that get adapters")


class Plateau(Node):
    """A stage's `until = plateau(...)`: each field is one of its options."""

    metric: str = option("reward", "the logged metric watched", values="name",
                         written="name (also the first positional argument)")
    patience: int = option(10, "steps without improvement before stopping", ge=1, unit="steps")
    min_delta: float = option(0.0, "smallest change that counts as improvement", ge=0)


class Miner(Node):
    """Adaptive hard-sample mining (stage 2): re-estimate pass rates every `refresh` steps."""

    pool: str  # a Filter / Dataset name
    pass_below: float = 0.5
    refresh: int = 100
    samples: int = 4  # rollouts per item when estimating the pass rate
    estimate: int | None = None  # items re-estimated per refresh (unseen, then failed); None: one round's prompts
    solved_ratio: float = 1.0  # right:wrong = solved_ratio:failed_ratio (paper: 1:2)
    failed_ratio: float = 2.0


class StageData(Node):
    dataset: str | None = None  # a Filter / Dataset / Distill name
    buckets: tuple[Bucket, ...] = ()
    miner: Miner | None = None


class Training(Node):
    """A stage's training options: each field declared once, with everything the compiler, the
    reference, the language server and the jobs need to know about it (see `Option`)."""

    # a job config holds this model: `lr = NaN` in a hand-edited one is an error (as in jobconfig.Cfg)
    model_config = ConfigDict(**Node.model_config, allow_inf_nan=False)

    lr: float = option(1e-5, "peak learning rate", gt=0, lands=(_TRL + "learning_rate",))
    epochs: float | None = option(None, "passes over the data (or max_steps)", gt=0,
                                  lands=(_TRL + "num_train_epochs",))
    max_steps: int | None = option(None, "optimizer steps; overrides epochs", ge=1,
                                   lands=(_TRL + "max_steps",))
    batch_size: int = option(8, "per-device batch size", ge=1, word="batch",
                             lands=(_TRL + "per_device_train_batch_size",))
    grad_accum: int = option(1, "gradient accumulation steps", ge=1,
                             lands=(_TRL + "gradient_accumulation_steps",))
    max_length: int = option(1024, "sft: sequence length in tokens", ge=1, unit="tokens",
                             lands=(_TRL + "max_length",))
    max_completion_length: int = option(256, "rollout length in tokens", ge=1, methods=("grpo",),
                                        unit="tokens", lands=(_TRL + "max_completion_length",))
    warmup_steps: int = option(0, "linear warm-up steps", ge=0, unit="steps",
                               lands=(_TRL + "warmup_steps",))
    # transformers 5 reads a float in [0, 1) given as warmup_steps as a fraction of all steps
    warmup_ratio: float | None = option(
        None, "linear warm-up as a fraction of all steps (instead of warmup_steps)", ge=0, lt=1,
        lands=(_TRL + "warmup_steps",))
    lr_scheduler_type: str | None = option(  # None: the method's own (sft cosine, grpo linear)
        None, "learning-rate schedule after warm-up (transformers' names)", values="lr_schedulers",
        lands=(_TRL + "lr_scheduler_type",))
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0, lands=(_TRL + "weight_decay",))
    max_grad_norm: float = option(1.0, "gradient clipping norm", gt=0, lands=(_TRL + "max_grad_norm",))
    # transformers 5.24 names it activation_checkpointing (gradient_checkpointing is deprecated)
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower",
        lands=(_TRL + "activation_checkpointing", _TRL + "gradient_checkpointing"))
    packing: bool = option(False, "pack several examples into each max_length sequence",
                           methods=("sft",), lands=(_TRL + "packing",))
    trl: tuple[tuple[str, Any], ...] = ()  # any other TRL config field, `trl { key = value }`
    generations: int = option(8, "rollouts per prompt (the GRPO group)", ge=2, methods=("grpo",),
                              lands=(_TRL + "num_generations",))
    beta: float = option(0.0, "KL coefficient", ge=0, methods=("grpo",), lands=(_TRL + "beta",))
    temperature: float = option(1.0, "rollout sampling temperature", gt=0, methods=("grpo",),
                                lands=(_TRL + "temperature",))
    deepspeed: Literal["none", "zero2", "zero3", "zero3_offload"] = option(
        "none", "DeepSpeed ZeRO stage", lands=("deepspeed zero_optimization", _TRL + "deepspeed"))
    bf16: bool = option(False, "train in bfloat16 (GPU)", lands=(_TRL + "bf16",))
    lora: Lora | None = None
    use_vllm: bool = option(False, "roll out with vLLM", methods=("grpo",), lands=(_TRL + "use_vllm",))
    logging_steps: int = option(1, "steps between metric rows", ge=1, unit="steps",
                                lands=(_TRL + "logging_steps",))
    save_steps: int = option(500, "steps between checkpoints", ge=1, unit="steps",
                             lands=(_TRL + "save_steps",))
    # grpo: TRL GRPOConfig options under TRL's words; the defaults are TRL 1.x's and the values
    # they take are the installed TRL's (lower/trl_versions.py)
    loss_type: str = option("dapo", "policy loss: grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo",
                            methods=("grpo",), values="trl", lands=(_TRL + "loss_type",))
    scale_rewards: str = option("group", "advantage scaling: group, batch or none (Dr. GRPO)",
                                methods=("grpo",), values="trl", lands=(_TRL + "scale_rewards",))
    epsilon: float = option(0.2, "lower clip range", gt=0, methods=("grpo",), lands=(_TRL + "epsilon",))
    epsilon_high: float | None = option(  # None: = epsilon
        None, "upper clip range (DAPO clip-higher); default = epsilon", gt=0, methods=("grpo",),
        lands=(_TRL + "epsilon_high",))
    importance_sampling_level: str = option(
        "token", "importance ratio per token or per sequence (GSPO)", methods=("grpo",),
        values="trl", lands=(_TRL + "importance_sampling_level",))
    top_entropy_quantile: float = option(
        1.0, "train only on the top quantile of tokens by entropy", gt=0, le=1, methods=("grpo",),
        lands=(_TRL + "top_entropy_quantile",))
    mask_truncated_completions: bool = option(
        False, "leave completions cut at max_completion_length out of the loss", methods=("grpo",),
        lands=(_TRL + "mask_truncated_completions",))
    num_iterations: int = option(1, "updates per rollout batch (GRPO's mu)", ge=1, methods=("grpo",),
                                 lands=(_TRL + "num_iterations",))
    top_p: float = option(1.0, "rollout nucleus sampling", gt=0, le=1, methods=("grpo",),
                          lands=(_TRL + "top_p",))
    top_k: int = option(0, "rollout top-k (0 = off)", ge=0, methods=("grpo",), lands=(_TRL + "top_k",))
    repetition_penalty: float = option(1.0, "rollout repetition penalty (1 = off)", gt=0,
                                       methods=("grpo",), lands=(_TRL + "repetition_penalty",))
    vllm_mode: str = option("colocate", "vLLM in the trainer's processes (colocate) or a separate server",
                            methods=("grpo",), values="trl", lands=(_TRL + "vllm_mode",))
    vllm_gpu_memory_utilization: float | None = option(  # None: VLLM_MEMORY_SHARE of the mode
        None, "GPU memory share for vLLM (default 0.3 colocate, 0.9 server)", gt=0, le=1,
        methods=("grpo",),
        lands=(_TRL + "vllm_gpu_memory_utilization", "vllm-serve --gpu_memory_utilization"))
    vllm_max_model_length: int | None = option(
        None, "vLLM context window (prompt + completion)", ge=1, methods=("grpo",),
        lands=(_TRL + "vllm_max_model_length", "vllm-serve --max_model_len"))
    vllm_tensor_parallel_size: int = option(
        1, "vLLM tensor parallelism (colocate: per trainer group; server: the server's)", ge=1,
        methods=("grpo",),
        lands=(_TRL + "vllm_tensor_parallel_size", "vllm-serve --tensor_parallel_size"))
    vllm_data_parallel_size: int = option(
        1, "server: vLLM replicas; the server takes tensor x data parallel GPUs", ge=1,
        methods=("grpo",), lands=("vllm-serve --data_parallel_size",))
    vllm_enable_sleep_mode: bool = option(False, "colocate: offload vLLM between rollouts",
                                          methods=("grpo",), lands=(_TRL + "vllm_enable_sleep_mode",))
    vllm_server_base_url: str | None = option(  # None: the stage starts its own server
        None, "server: an external trl vllm-serve URL (otherwise the stage starts one)",
        methods=("grpo",), values="url", lands=(_TRL + "vllm_server_base_url",))
    vllm_server_timeout: float = option(  # TRL's default
        240.0, "server: seconds to wait for its /health before the stage fails", gt=0,
        methods=("grpo",), lands=(_TRL + "vllm_server_timeout",))
    # grpo: DAPO dynamic sampling (drop groups whose rewards all agree, draw replacements): the
    # job's own (runtime/train/dynamic_sampling.py)
    dynamic_sampling: bool = option(False, "DAPO: drop groups whose rewards all agree, draw replacements",
                                    methods=("grpo",))
    max_redraws: int = option(4, "dynamic sampling: replacement draws per step at most", ge=0,
                              methods=("grpo",))


    def for_rollouts(self) -> "Training":
        """The values TRL and vLLM will use where the spec is silent: epsilon_high = None is
        epsilon; an unwritten vLLM memory share is the mode's default (VLLM_MEMORY_SHARE)."""
        return self.model_copy(update={
            "epsilon_high": self.epsilon if self.epsilon_high is None else self.epsilon_high,
            "vllm_gpu_memory_utilization": vllm_memory_share(self.vllm_mode, self.vllm_gpu_memory_utilization)})


# The memory share vLLM takes when the spec gives none: TRL's colocate default (beside training)
# and `trl vllm-serve`'s (a server owns its GPUs).
VLLM_MEMORY_SHARE = {"colocate": 0.3, "server": 0.9}


def vllm_memory_share(mode: str, written: float | None) -> float:
    return written if written is not None else VLLM_MEMORY_SHARE[mode]


@functools.cache
def other_method_options(method: str) -> frozenset[str]:
    """The `Training` fields that are options of the other stage method only (a grpo stage's
    `generations` for "sft")."""
    return frozenset(name for name, info in Training.model_fields.items()
                     if (row := option_of(info)) is not None and method not in row.methods)


class Stage(Decl):
    kind: Literal["stage"] = "stage"
    method: Literal["sft", "grpo"]
    init: str  # a Model or an earlier Stage
    data: StageData
    training: Training
    rewards: tuple[RewardTerm, ...] = ()  # grpo only
    plateau: Plateau | None = None
    resources: Resources = Resources()
    sweep: dict[str, str | int | float] = {}  # the sweep point this stage was expanded from


# A metric over several samples per question, beside accuracy: pass@k, maj@k
# (runtime/reporting/sampled.py computes them; an evaluation declares them in `metrics`).
SAMPLED_METRIC = re.compile(r"^(pass|maj)@([1-9][0-9]*)$")


class Evaluate(Decl):
    """An `evaluate` declaration: each field with an `option` is an option of its block."""

    kind: Literal["evaluate"] = "evaluate"
    targets: tuple[str, ...]  # Model / Stage names
    benchmarks: tuple[str, ...]  # Dataset names
    samples: int = option(1, "answers sampled per question", ge=1)
    temperature: float = option(0.0, "sampling temperature", ge=0)
    max_tokens: int = option(256, "tokens generated per answer", ge=1, unit="tokens")
    limit: int | None = option(None, "questions per benchmark (all when not given)", ge=1)
    accept: Literal["letter", "text"] = option(
        "letter", "what counts as naming the right option: its letter, or also its exact text (reported "
        "apart)")
    resources: Resources = Resources()
    # per target: each evaluated model is cut the same way
    sharding: Sharding = option(Sharding(), "how each target's evaluation is cut into jobs", inline=True)
    grader: str | None = option(None, "grades rubric benchmarks (healthbench) criterion by criterion",
                                values="name", written="name (a model with a backend)")
    rubric_prompt: str | None = option(None, "the grader's rubric prompt (built-in when not given)",
                                       values="name", written="name (a prompt)")
    engine: Literal["auto", "vllm", "transformers"] = option(
        "auto", "what generates the answers: vLLM with tensor parallel across the evaluation's GPUs, or "
        "transformers; auto picks vLLM where it is installed and a GPU is present")
    metrics: tuple[str, ...] = option(
        (), "sampled metrics reported beside accuracy: pass@k (unbiased, over the samples) and maj@k "
        "(majority vote of the first k); k <= samples", values="sampled_metrics",
        written='list of strings: "pass@K", "maj@K"')


# ---------------------------------------------------------------- experiment


class Cluster(Node):
    """The `cluster { }` block: each field with an `option` is one of its options."""

    account: str | None = option(None, "SLURM account of every job")
    partition: str | None = option(None, "SLURM partition of CPU jobs")
    gpu_partition: str | None = option(None, "SLURM partition of GPU jobs")
    qos: str | None = option(None, "SLURM quality of service")
    max_jobs: int = option(100, "jobs Snakemake keeps submitted at once", ge=1)
    # one sbatch submission for several short CPU jobs
    group_cpu_jobs: bool = option(True, "bundle short CPU jobs into one submission")
    # SLURM signals a long job this long before its time limit: it checkpoints and requeues itself
    signal_lead_s: int = option(
        900, "how long before a job's time limit SLURM signals it (sbatch --signal; at most half the "
        "limit): training checkpoints, an evaluation keeps its finished chunks, and the job requeues "
        "itself and resumes", gt=0, word="signal_lead",
        unit="seconds", values="seconds")
    # the experiment header may set it instead (lowering copies it here)
    container: str | None = option(
        None, "Apptainer/Docker image every job runs in (Snakemake's container support; also allowed in "
        "the experiment header)", written="string (image)")


class Experiment(Node):
    name: str
    seed: int = 0
    workdir: str  # project-relative
    spec: str  # project-relative path of the spec file
    models: tuple[Model, ...] = ()
    graphs: tuple[Graph, ...] = ()
    samples: tuple[Sample, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    synthesize: tuple[Synthesize, ...] = ()
    distill: tuple[Distill, ...] = ()
    filters: tuple[Filter, ...] = ()
    rewards: tuple[Reward, ...] = ()
    stages: tuple[Stage, ...] = ()
    evaluations: tuple[Evaluate, ...] = ()
    cluster: Cluster = Cluster()
    track: tuple[Literal["tensorboard", "trackio", "mlflow", "wandb"], ...] = ()  # offline trackers

    def declarations(self) -> dict[str, Decl]:
        """Every declaration by name (names are unique across kinds)."""
        out: dict[str, Decl] = {}
        for group in (self.models, self.graphs, self.samples, self.datasets, self.prompts,
                      self.synthesize, self.distill, self.filters, self.rewards, self.stages,
                      self.evaluations):
            for decl in group:
                out[decl.name] = decl
        return out
