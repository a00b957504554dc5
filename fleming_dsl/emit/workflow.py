"""The emitter: a `Plan` -> the files of `generated/<experiment>/`.

`render(plan)` is pure (relative path -> bytes); `emit(plan, dest)` writes only the files whose
bytes changed, so an unchanged recompile leaves every mtime alone and Snakemake runs nothing,
and removes files of jobs that no longer exist. Output is deterministic: sorted JSON keys, no
timestamps, no absolute paths.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from fleming_dsl import __version__
from fleming_dsl import vocabulary
from fleming_dsl.emit import table
from fleming_dsl.emit.provenance import job_libraries
from fleming_dsl.errors import FlemingError
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.jobconfig import PREEMPT_SIGNAL
from fleming_dsl.plan.planner import Job, Plan
from fleming_dsl.resources import resource_dir

if TYPE_CHECKING:
    from fleming_dsl.emit.launch import ServerPlan

# Folders this emitter owns inside the output directory: stale files there are removed.
MANAGED_DIRS = ("jobs", "deepspeed", "accelerate", "launch", "profiles", "envs")
_MANIFEST = "manifest.json"


def to_json(data: Any) -> str:
    """`json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)` plus a newline, byte for
    byte; written out because the standard encoder's indented mode is pure Python generators,
    which made JSON most of the time a 10,000-job compile takes."""
    try:
        return _indented(data, "") + "\n"
    except _NotPlain:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class _NotPlain(FlemingError):
    """A value the fast encoder leaves to the json module (non-string keys, other types)."""


_quote = json.encoder.encode_basestring  # what json.dumps uses with ensure_ascii=False
_INF = float("inf")


def _scalar(value: Any) -> str | None:
    """A JSON scalar's text as json.dumps writes it; None for a container (or another type)."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if value is None or value is True or value is False:
        return "null" if value is None else ("true" if value else "false")
    if kind is float:
        if value != value or value == _INF or value == -_INF:
            raise _NotPlain
        return float.__repr__(value)
    return None


# Exact types (`type(x) is str`), not isinstance: subclasses (an enum's str) go to the json
# module, and the common case skips a chain of isinstance calls per value.
def _indented(value: Any, indent: str) -> str:
    kind = type(value)
    if kind is dict:
        if not value:
            return "{}"
        if not all(type(key) is str for key in value):
            raise _NotPlain
        inner = indent + "  "
        parts = []
        for key in sorted(value):
            item = value[key]
            # strings first, inline: most values of a job config are
            text = _quote(item) if type(item) is str else _scalar(item)
            parts.append(_quote(key) + ": " + (text if text is not None
                                               else _indented(item, inner)))
        return "{\n" + inner + (",\n" + inner).join(parts) + "\n" + indent + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = indent + "  "
        parts = []
        for item in value:
            text = _quote(item) if type(item) is str else _scalar(item)
            parts.append(text if text is not None else _indented(item, inner))
        return "[\n" + inner + (",\n" + inner).join(parts) + "\n" + indent + "]"
    text = _scalar(value)
    if text is None:
        raise _NotPlain
    return text


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "workflow")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["py"] = _literal
    env.filters["sh"] = shlex.quote
    env.filters["comment"] = comment_text
    return env


def _literal(value: Any) -> str:
    """A Python (and YAML) literal: JSON strings and numbers are both. ASCII only, so no
    character that Python, YAML or an editor might take for a line break gets through."""
    return json.dumps(value, ensure_ascii=True)


def comment_text(value: Any) -> str:
    """Text for a `#` comment of a generated file: a newline (or any control or non-ASCII
    character) in a spec's file name would otherwise end the comment and start code."""
    return json.dumps(str(value), ensure_ascii=True)[1:-1]


def job_json(job: Job) -> str:
    return to_json(job.config.model_dump(mode="json"))


# ---------------------------------------------------------------- DeepSpeed


def deepspeed_config(stage: str, bf16: bool, cpu: bool = False) -> dict[str, Any]:
    """A DeepSpeed config for the HF Trainer integration: "auto" where the Trainer fills the value
    from its own arguments, so batch size, lr and precision are set in one place (the job).

    No "optimizer" section: the Trainer's own torch AdamW is used, so DeepSpeed builds no fused
    Adam extension. A CPU stage (`gpus = 0`, ranks over gloo) has nothing to offload to: the
    offload sections would make DeepSpeed JIT-build its CPU Adam, so they are left out."""
    zero: dict[str, Any] = {
        "stage": 2 if stage == "zero2" else 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == "zero2":
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 200_000_000,
                     "reduce_scatter": True})
    else:
        zero.update({"sub_group_size": 1_000_000_000,
                     "stage3_prefetch_bucket_size": "auto",
                     "stage3_param_persistence_threshold": "auto",
                     "stage3_max_live_parameters": 1_000_000_000,
                     "stage3_max_reuse_distance": 1_000_000_000,
                     "stage3_gather_16bit_weights_on_model_save": True})
    if stage == "zero3_offload" and not cpu:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "steps_per_print": 100,
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
        "zero_optimization": zero,
    }


# ---------------------------------------------------------------- rules


def rule_resources(job: Job) -> list[tuple[str, Any]]:
    """Rule resources as the Snakemake slurm executor plugin 2.x reads them."""
    res = job.resources
    items: list[tuple[str, Any]] = [
        ("mem_mb", res.mem_mb), ("runtime", res.time_min), ("nodes", res.nodes),
        ("cpus_per_task", res.cpus)]
    if res.gpus > 0:
        # gres is per node (what the plugin passes to --gres); gpus is for local scheduling
        # (`--resources gpus=N`) and for readers.
        items += [("gpus", res.gpus), ("gres", f"gpu:{res.gpus}")]
    # sbatch_gres feeds the cluster-generic submit command, which cannot leave a flag out.
    items.append(("sbatch_gres", f"--gres=gpu:{res.gpus}" if res.gpus > 0 else ""))
    if res.partition:
        items.append(("slurm_partition", res.partition))
    if res.account:
        items.append(("slurm_account", res.account))
    return items


def _output_key(path: str, job: Job, index: int) -> str:
    if index == 0:
        return "main"
    if path == job.config.meta:
        return "meta"
    for key in ("review", "metrics"):
        if getattr(job.config, key, None) == path:
            return key
    return f"out{index}"


def needs_launcher(job: Job) -> bool:
    """Several processes (nodes or GPUs) need the srun/accelerate wrapper; one runs directly. A
    GRPO stage that starts its own vLLM server always runs through the wrapper, which starts it."""
    return job.kind in ("sft", "grpo") and (job.resources.nodes > 1 or job.resources.gpus > 1
                                            or _starts_server(job))


def _starts_server(job: Job) -> bool:
    return isinstance(job.config, jc.GrpoJob) and vocabulary.starts_server(job.config.training)


def server_plan(job: Job) -> ServerPlan | None:
    """The vLLM server a server-mode GRPO stage starts (`trl vllm-serve` on the stage's model)."""
    from fleming_dsl.emit.launch import ServerPlan

    cfg = job.config
    if not isinstance(cfg, jc.GrpoJob) or not vocabulary.starts_server(cfg.training):
        return None
    split = vocabulary.server_split(cfg.training, job.resources)
    assert isinstance(split, vocabulary.ServerSplit), split  # `fleming check` rejected the others
    args = ("-m", "trl.cli.main", "vllm-serve", "--model", cfg.model,
            "--tensor_parallel_size", str(cfg.training.vllm_tensor_parallel_size),
            "--data_parallel_size", str(cfg.training.vllm_data_parallel_size),
            "--gpu_memory_utilization", str(cfg.training.vllm_gpu_memory_utilization))
    if cfg.training.vllm_max_model_length is not None:
        args += ("--max_model_len", str(cfg.training.vllm_max_model_length))
    return ServerPlan(python_args=args, nodes=split.server_nodes, gpus=split.server_gpus,
                      timeout_s=math.ceil(cfg.training.vllm_server_timeout))


def launch_path(plan: Plan, job: Job) -> str:
    return posixpath.join(plan.out_dir, "launch", f"{job.name}.sh")


def launch_script(plan: Plan, job: Job) -> str:
    from fleming_dsl.emit.launch import LaunchPlan, render_wrapper

    # `accelerate launch` starts several CPU processes only through mpirun; torchrun starts them
    # anywhere, and the Trainer inside still runs on accelerate (MULTI_CPU or DeepSpeed, gloo).
    cpu = job.resources.gpus == 0
    server = server_plan(job)
    return render_wrapper(LaunchPlan(
        name=f"{plan.experiment}/{job.name}",
        python_args=("-m", "fleming_dsl.cli", "job", job.kind, "--config", plan.config_path(job)),
        nodes=job.resources.nodes, server=server,
        gpus_per_node=job.resources.gpus - (server.gpus if server and not server.nodes else 0),
        launcher="torchrun" if cpu else "accelerate",
        accelerate_config=None if cpu else getattr(job.config, "accelerate_config", None)))


def named_inputs(plan: Plan, job: Job) -> dict[str, str]:
    """The inputs a rule names: the job's config, and the DeepSpeed/accelerate/launch files."""
    named = {"config": plan.config_path(job)}
    cfg = job.config
    if isinstance(cfg, (jc.SftJob, jc.GrpoJob)):
        if cfg.deepspeed_config:
            named["deepspeed"] = cfg.deepspeed_config
        if cfg.accelerate_config:
            named["accelerate"] = cfg.accelerate_config
    if needs_launcher(job):
        named["launch"] = launch_path(plan, job)
    return named


def signal_option(plan: Plan, job: Job) -> str:
    """`sbatch --signal` for a job: the checkpoint-and-requeue signal, the cluster's
    `signal_lead` before the time limit, at most half the limit (a lead as long as the limit
    would signal the job as it starts, and requeue it forever). Every job, not only trainers:
    one that cannot checkpoint still stops without half-written outputs and requeues (a teacher
    job keeps its cache), and a grouped submission's jobs must carry the same option."""
    lead = min(plan.cluster.signal_lead_s, job.resources.time_min * 60 // 2)
    return f"--signal={PREEMPT_SIGNAL}@{lead}"


def place(plan: Plan, job: Job, config_hash: str, group: str | None) -> table.Placed:
    """A job's row in jobs.json and the shape of the rule that runs it."""
    keys = [_output_key(o.path, job, i) for i, o in enumerate(job.outputs)]
    # fleming_job names the job (or its group) for the cluster-generic sbatch line; slurm_extra
    # is what the slurm plugin appends to sbatch.
    resources = [*rule_resources(job), ("slurm_extra", signal_option(plan, job)),
                 ("fleming_job", group or job.name)]
    named = named_inputs(plan, job)
    stem, shape = table.shape_of(job, keys, resources, named, grouped=group is not None,
                                 launch=needs_launcher(job))
    row = {
        "name": job.name, "kind": job.kind, "stem": stem, "source": job.source,
        "config": plan.config_path(job), "config_hash": config_hash,
        "inputs": list(job.inputs), "named_inputs": named,
        "outputs": {key: out.path for key, out in zip(keys, job.outputs)},
        "directories": [key for key, out in zip(keys, job.outputs) if out.directory],
        "log": job.log, "threads": job.threads, "resources": dict(resources), "group": group,
    }
    return table.Placed(job=job, stem=stem, shape=shape, row=row)


def project_root_from(out_dir: str) -> str:
    """The project root as seen from a project-relative output folder (`../..` for a/b)."""
    if os.path.isabs(out_dir):
        raise ValueError(f"{out_dir}: the plan's output folder must be project-relative")
    depth = len([p for p in posixpath.normpath(out_dir).split("/") if p not in ("", ".")])
    return "/".join([".."] * depth) or "."


# ---------------------------------------------------------------- profiles and README


def _default_resources(plan: Plan) -> list[str]:
    items = []
    if plan.cluster.partition:
        items.append(f"slurm_partition={plan.cluster.partition!r}")
    if plan.cluster.account:
        items.append(f"slurm_account={plan.cluster.account!r}")
    return items


def _shell_literal(text: str) -> str:
    """A compile-time value for the submit command: shell-quoted, and with braces doubled
    because Snakemake formats the command (`{resources.x}`) before the shell sees it."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


def submit_command(plan: Plan) -> str:
    """The sbatch line for `--executor cluster-generic` (resources filled per job). Every value
    from the spec is quoted: at compile time with shlex, at submit time with Snakemake's `:q`."""
    logs = _shell_literal(posixpath.join(plan.workdir, "logs", "slurm") + "/")
    prefix = _shell_literal(jobname_prefix(plan.experiment) + ".")
    parts = [f"mkdir -p {logs} && sbatch --parsable",
             f"--job-name={prefix}{{resources.fleming_job:q}}",
             f"--output={logs}{{resources.fleming_job:q}}-%j.out",
             "--nodes={resources.nodes}", "--cpus-per-task={resources.cpus_per_task}",
             "--mem={resources.mem_mb}", "--time={resources.runtime}", "{resources.sbatch_gres}",
             "--requeue", "{resources.slurm_extra}"]
    if plan.cluster.partition:
        parts.append("--partition={resources.slurm_partition:q}")
    if plan.cluster.account:
        parts.append("--account={resources.slurm_account:q}")
    if plan.cluster.qos:
        parts.append(f"--qos={_shell_literal(plan.cluster.qos)}")
    return " ".join(parts)


def jobname_prefix(experiment: str) -> str:
    """The plugin accepts [A-Za-z0-9_-]{1,50} as a job-name prefix."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", experiment) or "fleming")[:50]


# ---------------------------------------------------------------- the whole folder


def _rules(placed: list[table.Placed]) -> list[dict[str, Any]]:
    """The Snakefile's rules: name, shape, job count, the rules whose outputs it could be
    mistaken for (same folder, same tails), and per field either one literal shared by all its
    jobs (written into the Snakefile) or None (looked up per job in jobs.json)."""
    names = table.rule_names([p.shape for p in placed])
    members: dict[str, list[dict[str, Any]]] = {}
    for item in placed:
        item.row["rule"] = names[item.shape]
        members.setdefault(names[item.shape], []).append(item.row)
    rules = []
    for shape, name in names.items():
        rows = members[name]
        rivals = [other for other_shape, other in names.items()
                  if other != name and table.overlaps(shape, other_shape)]
        rules.append({
            "name": name, "shape": shape, "count": len(rows), "rivals": rivals,
            "threads": _shared(row["threads"] for row in rows),
            "resources": [(key, _shared(row["resources"][key] for row in rows))
                          for key in shape.resources],
        })
    return rules


def _shared(values) -> Any:
    """The one value all jobs of a rule share, or None when they differ (looked up per job)."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def jobs_table(plan: Plan, placed: list[table.Placed]) -> str:
    """jobs.json: one row per job, in plan order, one line per row (diffs stay per job)."""
    rows = ",\n".join("    " + json.dumps(p.row, sort_keys=True, ensure_ascii=True)
                      for p in placed)
    head = json.dumps({"experiment": plan.experiment, "spec": plan.spec}, sort_keys=True,
                      ensure_ascii=True)[:-1]
    return f'{head}, "jobs": [\n{rows}\n]}}\n'


def render(plan: Plan, spec_sha256: str = "", ir_sha256: str = "") -> dict[str, str]:
    """Every file of the workflow folder: relative path -> text."""
    env = _environment()
    files: dict[str, str] = {}
    configs: dict[str, str] = {}
    placed: list[table.Placed] = []
    libraries: dict[str, dict[str, str]] = {}
    groups = table.group_labels(plan.jobs)
    accelerate = env.get_template("accelerate.yaml.j2")
    deepspeed: dict[tuple[str, bool, bool], str] = {}
    for job in plan.jobs:
        data = job.config.model_dump(mode="json")  # once per job: the file, its hash, libraries
        text = to_json(data)
        files[f"jobs/{job.name}.json"] = text
        configs[job.name] = sha256_text(text)
        libraries.update(job_libraries([(job.name, job.kind, data)]))
        # A job re-runs by the hash of what decides its data: its config, or for a gather the
        # unsharded job's config (its own lists the shards), so a re-cut re-runs nothing.
        data_hash = (configs[job.name] if job.data_config is job.config
                     else sha256_text(jc.config_text(job.data_config)))
        placed.append(place(plan, job, data_hash, groups.get(job.name)))
        cfg = job.config
        if isinstance(cfg, (jc.SftJob, jc.GrpoJob)):
            if cfg.deepspeed_config and job.deepspeed_stage:
                key = (job.deepspeed_stage, cfg.training.bf16, job.resources.gpus == 0)
                if key not in deepspeed:  # a sweep's jobs share a handful of these
                    deepspeed[key] = to_json(deepspeed_config(key[0], key[1], cpu=key[2]))
                files[f"deepspeed/{job.name}.json"] = deepspeed[key]
            if cfg.accelerate_config:
                res = job.resources
                files[f"accelerate/{job.name}.yaml"] = accelerate.render(
                    job=job.name, deepspeed=cfg.deepspeed_config,
                    zero3=(job.deepspeed_stage or "").startswith("zero3"), bf16=cfg.training.bf16,
                    nodes=res.nodes, processes=res.nodes * max(res.gpus, 1),
                    use_cpu=res.gpus == 0)
        if needs_launcher(job):
            files[f"launch/{job.name}.sh"] = launch_script(plan, job)
    rules = _rules(placed)
    # Shards of one step as one SLURM job array; a grouped shard goes with its group instead.
    array_rules = sorted({p.row["rule"] for p in placed if p.job.is_shard and p.row["group"] is None})
    files["jobs.json"] = jobs_table(plan, placed)
    common = {"experiment": plan.experiment, "out_dir": plan.out_dir, "spec": plan.spec,
              "version": __version__}
    files["Snakefile"] = env.get_template("Snakefile.j2").render(
        **common, root=project_root_from(plan.out_dir), rules=rules, container=plan.cluster.container,
        target=plan.job("report").main_output.path)
    profile_vars = {**common, "max_jobs": plan.cluster.max_jobs,
                    "default_resources": _default_resources(plan), "qos": plan.cluster.qos,
                    "jobname_prefix": jobname_prefix(plan.experiment),
                    "submit_cmd": submit_command(plan), "array_rules": array_rules,
                    "container": plan.cluster.container,
                    "signal": f"{PREEMPT_SIGNAL}@{plan.cluster.signal_lead_s}"}
    for name in ("local", "slurm", "slurm-generic"):
        files[f"profiles/{name}/config.yaml"] = env.get_template(
            f"profiles/{name}.yaml.j2").render(**profile_vars)
    files["envs/fleming.yaml"] = env.get_template("conda.yaml.j2").render(**common)
    files["README.md"] = env.get_template("README.md.j2").render(
        **profile_vars, jobs=[p.row for p in placed], rules=rules, workdir=plan.workdir)
    files[_MANIFEST] = to_json({
        "experiment": plan.experiment, "spec": plan.spec, "spec_sha256": spec_sha256,
        "ir_sha256": ir_sha256, "fleming_version": __version__, "jobs": configs,
        "libraries": libraries})
    return files


def write_if_changed(path: Path, text: str, exists: bool | None = None) -> bool:
    """Write `text` to `path` (through a temporary file and a rename) unless it holds those
    bytes already; `exists` = False says the caller knows there is no file to compare."""
    data = text.encode("utf-8")
    if exists is not False:
        try:
            with open(path, "rb") as handle:
                if handle.read() == data:
                    return False
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
    temp = f"{path.parent}/.{path.name}.tmp-{os.getpid()}"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(handle, data)
    finally:
        os.close(handle)
    os.replace(temp, path)
    return True


def _existing(dest: Path) -> set[str]:
    """The files now under `dest` (relative paths): its top-level files and everything inside
    the folders it manages, listed once so a write need not ask the file system per file."""
    found: set[str] = set()
    try:
        found.update(entry.name for entry in os.scandir(dest) if entry.is_file())
    except FileNotFoundError:
        return found
    for folder in MANAGED_DIRS:
        for root, _dirs, names in os.walk(dest / folder):
            rel = Path(root).relative_to(dest).as_posix()
            found.update(f"{rel}/{name}" for name in names)
    return found


def emit(plan: Plan, dest: str | Path | None = None, spec_sha256: str = "",
         ir_sha256: str = "") -> list[str]:
    """Write the workflow folder (default: `plan.out_dir`); return the paths that changed."""
    dest = Path(dest if dest is not None else plan.out_dir)
    files = render(plan, spec_sha256, ir_sha256)
    existing = _existing(dest)
    for folder in sorted({posixpath.dirname(rel) for rel in files}):
        (dest / folder).mkdir(parents=True, exist_ok=True)  # once per folder, not per file
    changed = [rel for rel, text in sorted(files.items())
               if write_if_changed(dest / rel, text, exists=rel in existing)]
    for rel in sorted(existing - set(files)):
        if rel.split("/", 1)[0] in MANAGED_DIRS:
            (dest / rel).unlink()
            changed.append(rel)
    return changed
