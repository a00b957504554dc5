"""The emitter: a `Plan` -> the files of `generated/<experiment>/`.

`render(plan)` is pure (relative path -> bytes); `emit(plan, dest)` writes only the files whose
bytes changed, so an unchanged recompile leaves every mtime alone and Snakemake runs nothing,
and removes files of jobs that no longer exist. Output is deterministic: sorted JSON keys, no
timestamps, no absolute paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

import jinja2

from fleming_dsl import __version__
from fleming_dsl.emit.provenance import job_libraries
from fleming_dsl.plan import jobconfig as jc
from fleming_dsl.plan.planner import Job, Plan
from fleming_dsl.resources import resource_dir

# Folders this emitter owns inside the output directory: stale files there are removed.
MANAGED_DIRS = ("jobs", "deepspeed", "accelerate", "launch", "profiles", "envs")
_MANIFEST = "manifest.json"


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "workflow")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["py"] = _literal
    env.filters["sh"] = shlex.quote
    return env


def _literal(value: Any) -> str:
    """A Python (and YAML) literal: JSON strings and numbers are both."""
    return json.dumps(value, ensure_ascii=False)


def job_json(job: Job) -> str:
    return jc.config_text(job.config)


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
    """Several processes (nodes or GPUs) need the srun/accelerate wrapper; one runs directly."""
    return job.kind in ("sft", "grpo") and (job.resources.nodes > 1 or job.resources.gpus > 1)


def launch_path(plan: Plan, job: Job) -> str:
    return posixpath.join(plan.out_dir, "launch", f"{job.name}.sh")


def launch_script(plan: Plan, job: Job) -> str:
    from fleming_dsl.emit.launch import LaunchPlan, render_wrapper

    # `accelerate launch` starts several CPU processes only through mpirun; torchrun starts them
    # anywhere, and the Trainer inside still runs on accelerate (MULTI_CPU or DeepSpeed, gloo).
    cpu = job.resources.gpus == 0
    return render_wrapper(LaunchPlan(
        name=f"{plan.experiment}/{job.name}",
        python_args=("-m", "fleming_dsl.cli", "job", job.kind, "--config", plan.config_path(job)),
        nodes=job.resources.nodes, gpus_per_node=job.resources.gpus,
        launcher="torchrun" if cpu else "accelerate",
        accelerate_config=None if cpu else getattr(job.config, "accelerate_config", None)))


def _rule(plan: Plan, job: Job) -> dict[str, Any]:
    named_inputs = []
    cfg = job.config
    if isinstance(cfg, (jc.SftJob, jc.GrpoJob)):
        if cfg.deepspeed_config:
            named_inputs.append(("deepspeed", cfg.deepspeed_config))
        if cfg.accelerate_config:
            named_inputs.append(("accelerate", cfg.accelerate_config))
    if needs_launcher(job):
        named_inputs.append(("launch", launch_path(plan, job)))
    return {
        "name": job.name, "kind": job.kind, "source": job.source,
        "config": plan.config_path(job), "named_inputs": named_inputs,
        "inputs": list(job.inputs),
        "outputs": [(_output_key(o.path, job, i), o) for i, o in enumerate(job.outputs)],
        # A gather re-runs by its unsharded job's hash (its own config lists the shards), and
        # the configs of a gather and of its shards are ancient: a new cut writes new configs
        # but changes no data, so neither they nor anything downstream re-run. (A change that
        # is not a re-cut changes the hash, which the params trigger sees.)
        "config_hash": sha256_text(jc.config_text(job.data_config)),
        "ancient_config": job.kind == "gather" or job.is_shard,
        "log": job.log, "threads": job.threads,
        "resources": rule_resources(job), "group": job.group, "launch": needs_launcher(job),
    }


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


def submit_command(plan: Plan) -> str:
    """The sbatch line for `--executor cluster-generic` (resources filled per rule)."""
    logs = posixpath.join(plan.workdir, "logs", "slurm")
    parts = ["mkdir -p", logs, "&& sbatch --parsable",
             f"--job-name={jobname_prefix(plan.experiment)}.{{name}}",
             f"--output={logs}/{{name}}-%j.out",
             "--nodes={resources.nodes}", "--cpus-per-task={resources.cpus_per_task}",
             "--mem={resources.mem_mb}", "--time={resources.runtime}", "{resources.sbatch_gres}"]
    if plan.cluster.partition:
        parts.append("--partition={resources.slurm_partition}")
    if plan.cluster.account:
        parts.append("--account={resources.slurm_account}")
    if plan.cluster.qos:
        parts.append(f"--qos={plan.cluster.qos}")
    return " ".join(parts)


def jobname_prefix(experiment: str) -> str:
    """The plugin accepts [A-Za-z0-9_-]{1,50} as a job-name prefix."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", experiment) or "fleming")[:50]


# ---------------------------------------------------------------- the whole folder


def render(plan: Plan, spec_sha256: str = "", ir_sha256: str = "") -> dict[str, str]:
    """Every file of the workflow folder: relative path -> text."""
    env = _environment()
    files: dict[str, str] = {}
    rules = []
    configs: dict[str, str] = {}
    for job in plan.jobs:
        text = job_json(job)
        files[f"jobs/{job.name}.json"] = text
        configs[job.name] = sha256_text(text)
        rules.append(_rule(plan, job))
        cfg = job.config
        if isinstance(cfg, (jc.SftJob, jc.GrpoJob)):
            if cfg.deepspeed_config and job.deepspeed_stage:
                files[f"deepspeed/{job.name}.json"] = to_json(
                    deepspeed_config(job.deepspeed_stage, cfg.bf16, cpu=job.resources.gpus == 0))
            if cfg.accelerate_config:
                res = job.resources
                files[f"accelerate/{job.name}.yaml"] = env.get_template(
                    "accelerate.yaml.j2").render(
                    job=job.name, deepspeed=cfg.deepspeed_config,
                    zero3=(job.deepspeed_stage or "").startswith("zero3"), bf16=cfg.bf16,
                    nodes=res.nodes, processes=res.nodes * max(res.gpus, 1),
                    use_cpu=res.gpus == 0)
        if needs_launcher(job):
            files[f"launch/{job.name}.sh"] = launch_script(plan, job)
    common = {"experiment": plan.experiment, "out_dir": plan.out_dir, "spec": plan.spec,
              "version": __version__}
    files["Snakefile"] = env.get_template("Snakefile.j2").render(
        **common, root=project_root_from(plan.out_dir), rules=rules,
        target=plan.job("report").main_output.path)
    profile_vars = {**common, "max_jobs": plan.cluster.max_jobs,
                    "default_resources": _default_resources(plan), "qos": plan.cluster.qos,
                    "jobname_prefix": jobname_prefix(plan.experiment),
                    "submit_cmd": submit_command(plan)}
    for name in ("local", "slurm", "slurm-generic"):
        files[f"profiles/{name}/config.yaml"] = env.get_template(
            f"profiles/{name}.yaml.j2").render(**profile_vars)
    files["envs/fleming.yaml"] = env.get_template("conda.yaml.j2").render(**common)
    files["README.md"] = env.get_template("README.md.j2").render(
        **profile_vars, jobs=plan.jobs, workdir=plan.workdir)
    files[_MANIFEST] = to_json({
        "experiment": plan.experiment, "spec": plan.spec, "spec_sha256": spec_sha256,
        "ir_sha256": ir_sha256, "fleming_version": __version__, "jobs": configs,
        "libraries": job_libraries((job.name, job.kind, job.config.model_dump(mode="json"))
                                   for job in plan.jobs)})
    return files


def write_if_changed(path: Path, text: str) -> bool:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_bytes(data)
    os.replace(temp, path)
    return True


def _stale(dest: Path, keep: set[str]) -> list[Path]:
    stale = []
    for folder in MANAGED_DIRS:
        root = dest / folder
        if root.is_dir():
            stale += [p for p in root.rglob("*")
                      if p.is_file() and p.relative_to(dest).as_posix() not in keep]
    return stale


def emit(plan: Plan, dest: str | Path | None = None, spec_sha256: str = "",
         ir_sha256: str = "") -> list[str]:
    """Write the workflow folder (default: `plan.out_dir`); return the paths that changed."""
    dest = Path(dest if dest is not None else plan.out_dir)
    files = render(plan, spec_sha256, ir_sha256)
    changed = [rel for rel, text in sorted(files.items()) if write_if_changed(dest / rel, text)]
    for path in _stale(dest, set(files)):
        path.unlink()
        changed.append(path.relative_to(dest).as_posix())
    return changed
