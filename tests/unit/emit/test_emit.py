"""The emitter: golden files, determinism, write-only-changed, and what Snakemake, DeepSpeed
and accelerate make of the emitted files (dry runs only: the jobs themselves are not run)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from golden_files import comparable, rewrite, tree
from paths import GOLDEN
from plan_fixtures import gpu_experiment, tiny_experiment

from fleming_dsl import ir
from fleming_dsl.compiler import ir_sha256
from fleming_dsl.emit.workflow import emit, render
from fleming_dsl.plan.planner import Plan, plan

OUT = "generated/tiny"
CASES = {"tiny_ir": tiny_experiment, "gpu_ir": gpu_experiment}


def _plan(exp: ir.Experiment) -> Plan:
    return plan(exp, OUT)


def _files(exp: ir.Experiment) -> dict[str, str]:
    return render(_plan(exp), spec_sha256="0" * 64, ir_sha256=ir_sha256(exp))


def _project(tmp_path: Path, exp: ir.Experiment) -> Path:
    """A project folder holding the files the spec reads (empty) and its compiled workflow."""
    for path in ("data/medkg/kg.csv", "data/train/medqa_train.jsonl", "data/eval/medqa_test.jsonl",
                 "data/eval/medmcqa_dev.jsonl", "data/eval/pubmedqa.json", "prompts/question.j2",
                 "prompts/reason.j2", "prompts/grader.j2"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    emit(_plan(exp), tmp_path / OUT)
    return tmp_path


def _snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120)


# ---------------------------------------------------------------- golden and determinism


@pytest.mark.parametrize("case", sorted(CASES))
def test_emitted_files_match_golden(case: str, update_golden: bool) -> None:
    files = _files(CASES[case]())
    folder = GOLDEN / case
    if update_golden:
        rewrite(folder, files)
    assert comparable(tree(folder)) == comparable(files), "run pytest --update-golden and review the diff"


def test_rendering_twice_gives_identical_bytes() -> None:
    assert _files(gpu_experiment()) == _files(gpu_experiment())


def test_emitted_files_hold_no_absolute_path(tmp_path: Path) -> None:
    for rel, text in _files(gpu_experiment()).items():
        assert str(Path.cwd()) not in text and "/tmp/" not in text, rel
        assert not re.search(r'"/(?:work|root|home|tmp)/', text), rel


def test_unchanged_recompile_touches_nothing_and_stale_jobs_are_removed(tmp_path: Path) -> None:
    first = emit(_plan(tiny_experiment()), tmp_path)
    assert "Snakefile" in first and "jobs/report.json" in first
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert emit(_plan(tiny_experiment()), tmp_path) == []
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes

    changed = emit(_plan(tiny_experiment(form_weight=0.3)), tmp_path)
    # The Snakefile does not hold per-job values: only the table, the configs and the manifest.
    assert sorted(changed) == ["jobs.json", "jobs/grpo_rl1.json", "jobs/grpo_rl2.json",
                               "manifest.json"]

    exp = tiny_experiment()
    fewer = exp.model_copy(update={"stages": exp.stages[:1], "evaluations": ()})
    removed = emit(_plan(fewer), tmp_path)
    assert "jobs/grpo_rl2.json" in removed and not (tmp_path / "jobs/grpo_rl2.json").exists()


# ---------------------------------------------------------------- the Snakefile


def _table(files: dict[str, str]) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(files["jobs.json"])["jobs"]}


def test_each_job_row_names_its_source_line_config_hash_and_rule() -> None:
    files = _files(tiny_experiment())
    row = _table(files)["grpo_rl1"]
    digest = hashlib.sha256(files["jobs/grpo_rl1.json"].encode()).hexdigest()
    assert (row["source"], row["config_hash"], row["rule"], row["stem"]) == (
        "specs/tiny.flm:56", digest, "grpo", "rl1")
    assert row["named_inputs"] == {"config": "generated/tiny/jobs/grpo_rl1.json"}
    assert row["outputs"] == {"main": "runs/tiny/stages/rl1",
                              "metrics": "runs/tiny/stages/rl1.metrics.jsonl",
                              "meta": "runs/tiny/stages/rl1.meta.json"}
    snakefile = files["Snakefile"]
    rule = snakefile.split("rule grpo:")[1].split("\nrule ")[0]
    assert 'main=directory("runs/tiny/stages/{stem}")' in rule
    assert 'config_hash=field("grpo", "config_hash")' in rule
    assert '"fleming job grpo --config {input.config:q} > {log:q} 2>&1"' in rule
    imports = [line for line in snakefile.splitlines() if re.match(r"\s*(import|from) ", line)]
    assert imports == ["import json", "import os", "import re"]


def test_the_snakefile_has_one_rule_per_kind_whatever_the_number_of_jobs() -> None:
    exp = tiny_experiment()
    one = _files(exp)["Snakefile"]
    rules = re.findall(r"^rule (\w+):", one, re.M)
    assert rules == ["all", "build_model", "graph_load", "sample", "synthesize", "distill",
                     "filter", "sft", "grpo", "eval", "report"]
    again = tuple(ev.model_copy(update={"name": f"again_{i}"}) for i, ev in
                  enumerate(exp.evaluations))
    more = exp.model_copy(update={"evaluations": exp.evaluations + again})
    assert len(_plan(more).jobs) > len(_plan(exp).jobs)
    assert re.findall(r"^rule (\w+):", _files(more)["Snakefile"], re.M) == rules


def test_job_json_is_sorted_and_indented() -> None:
    text = _files(tiny_experiment())["jobs/sft_cold_start.json"]
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_job_configs_load_back_with_the_runtime_loader(tmp_path: Path) -> None:
    from fleming_dsl.plan.jobconfig import load_job_config

    emit(_plan(gpu_experiment()), tmp_path)
    for path in sorted((tmp_path / "jobs").glob("*.json")):
        assert load_job_config(path).job == path.stem


def test_gpu_jobs_ask_slurm_for_gpus_and_cpu_jobs_do_not() -> None:
    files = _files(gpu_experiment())
    table = _table(files)
    grpo = table["grpo_rl2"]["resources"]
    assert {k: grpo[k] for k in ("mem_mb", "runtime", "nodes", "cpus_per_task", "gpus", "gres",
                                 "slurm_partition", "slurm_account")} == {
        "mem_mb": 480000, "runtime": 2880, "nodes": 2, "cpus_per_task": 16, "gpus": 8,
        "gres": "gpu:8", "slurm_partition": "gpu", "slurm_account": "medlab"}
    assert table["grpo_rl2"]["named_inputs"]["launch"] == "generated/tiny/launch/grpo_rl2.sh"
    rules = dict(re.findall(r"\nrule (\w+):\n(.*?)(?=\n\n\n|\Z)", files["Snakefile"], re.S))
    assert '"bash {input.launch:q} > {log:q} 2>&1"' in rules["grpo"]
    assert not re.search(r"^\s+(gres|gpus)=", rules["filter"], re.M)
    assert 'sbatch_gres=""' in rules["filter"]
    assert "gpus" not in table["filter_clean"]["resources"]
    assert 'group:\n        field("graph_load", "group")' in rules["graph_load"]
    assert table["graph_load_medkg"]["group"] == "prep.graph_load_medkg+sample_rare_dx"


def test_snakemake_dry_run_lists_every_job_from_any_directory(tmp_path: Path) -> None:
    project = _project(tmp_path / "project", gpu_experiment())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _snakemake(elsewhere, "-s", str(project / OUT / "Snakefile"), "-n", "--quiet",
                        "rules")
    assert result.returncode == 0, result.stderr
    stats = result.stdout + result.stderr
    counted = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}
    jobs = _plan(gpu_experiment()).jobs
    kinds = [job.kind for job in jobs]
    assert counted == {**{kind: kinds.count(kind) for kind in kinds}, "all": 1,
                       "total": len(jobs) + 1}


def test_snakemake_lint_reports_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path, gpu_experiment())
    result = _snakemake(project, "-s", f"{OUT}/Snakefile", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["local", "slurm", "slurm-generic"])
def test_profiles_are_accepted_by_snakemake(tmp_path: Path, profile: str) -> None:
    project = _project(tmp_path, gpu_experiment())
    result = _snakemake(project, "-s", f"{OUT}/Snakefile", "--profile",
                        f"{OUT}/profiles/{profile}", "-n")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_profiles_hold_what_the_cluster_needs() -> None:
    files = _files(gpu_experiment())
    local = yaml.safe_load(files["profiles/local/config.yaml"])
    assert local == {"cores": "all", "keep-going": False, "printshellcmds": True,
                     "rerun-triggers": ["mtime", "params"]}
    slurm = yaml.safe_load(files["profiles/slurm/config.yaml"])
    assert slurm["executor"] == "slurm" and slurm["slurm-status-command"] == "squeue"
    assert slurm["default-resources"] == ["slurm_partition='cpu'", "slurm_account='medlab'"]
    generic = yaml.safe_load(files["profiles/slurm-generic/config.yaml"])
    assert generic["executor"] == "cluster-generic"
    submit = generic["cluster-generic-submit-cmd"]
    for part in ("sbatch --parsable", "--job-name=tiny.{resources.fleming_job:q}",
                 "--mem={resources.mem_mb}", "--time={resources.runtime}",
                 "{resources.sbatch_gres}", "--partition={resources.slurm_partition:q}",
                 "--account={resources.slurm_account:q}"):
        assert part in submit, part


def test_manifest_records_hashes_of_spec_ir_and_every_job() -> None:
    exp = tiny_experiment()
    files = _files(exp)
    manifest = json.loads(files["manifest.json"])
    assert manifest["ir_sha256"] == ir_sha256(exp)
    assert manifest["jobs"]["report"] == hashlib.sha256(
        files["jobs/report.json"].encode()).hexdigest()
    assert {"experiment", "spec", "spec_sha256", "ir_sha256", "fleming_version",
            "jobs"} <= set(manifest)
    assert set(manifest["jobs"]) == {job.name for job in _plan(exp).jobs}


def test_manifest_records_the_installed_version_of_each_library() -> None:
    """The goldens compare library names only (golden_files.comparable); the versions written are
    this machine's."""
    from fleming_dsl.emit.provenance import installed_version

    manifest = json.loads(_files(tiny_experiment())["manifest.json"])
    assert manifest["libraries"]["sft_cold_start"]["trl"] == installed_version("trl")
    for libraries in manifest["libraries"].values():
        for name, version in libraries.items():
            assert version == (installed_version(name) or "absent"), name


# ---------------------------------------------------------------- DeepSpeed and accelerate


def test_deepspeed_accepts_each_emitted_config_after_the_trainer_fills_auto(tmp_path) -> None:
    import types

    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    files = _files(gpu_experiment())
    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=128))
    stages = {}
    for name in ("sft_cold_start", "grpo_rl1", "grpo_rl2"):
        hf = HfTrainerDeepSpeedConfig(json.loads(files[f"deepspeed/{name}.json"]))
        args = TrainingArguments(output_dir=str(tmp_path / name), per_device_train_batch_size=4,
                                 gradient_accumulation_steps=2, use_cpu=True, report_to=[],
                                 bf16=True)
        hf.trainer_config_process(args)
        hf.trainer_config_finalize(args, model, 100)
        assert "auto" not in json.dumps(hf.config), name
        ds = DeepSpeedConfig(hf.config)
        stages[name] = (ds.zero_optimization_stage, ds.train_micro_batch_size_per_gpu,
                        ds.zero_config.offload_optimizer is not None)
    assert stages == {"sft_cold_start": (3, 4, False), "grpo_rl1": (2, 4, False),
                      "grpo_rl2": (3, 4, True)}


def test_accelerate_reads_each_emitted_config(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    emit(_plan(gpu_experiment()), tmp_path)
    for path in sorted((tmp_path / "accelerate").glob("*.yaml")):
        config = load_config_from_file(str(path))
        assert config.distributed_type.value == "DEEPSPEED", path.name
        assert (config.num_machines, config.num_processes) == (2, 16)
        assert config.deepspeed_config["deepspeed_config_file"] == \
            f"generated/tiny/deepspeed/{path.stem}.json"


@pytest.mark.slow
def test_cluster_generic_profile_submits_each_rule_or_group_with_its_resources(
        tmp_path: Path) -> None:
    """A stand-in sbatch records its arguments; the status command reports failure, so
    Snakemake stops after the first submissions without running anything."""
    project = _project(tmp_path / "project", gpu_experiment())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "$@" >> "$SBATCH_LOG"\necho 4242\n')
    (bin_dir / "status").write_text("#!/bin/sh\necho failed\n")
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SBATCH_LOG": str(tmp_path / "sbatch.log")}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", f"{OUT}/Snakefile", "--profile",
         f"{OUT}/profiles/slurm-generic", "--cluster-generic-status-cmd",
         str(bin_dir / "status"), "--latency-wait", "1"],
        cwd=project, env=env, text=True, capture_output=True, timeout=180)
    assert result.returncode == 1  # every submitted job "failed"
    lines = sorted((tmp_path / "sbatch.log").read_text().splitlines())
    assert [line.split(" /")[0] for line in lines] == [
        "--parsable --job-name=tiny.prep.build_model_base "
        "--output=runs/tiny/logs/slurm/prep.build_model_base-%j.out --nodes=1 --cpus-per-task=1 "
        "--mem=4096 --time=60 --requeue --signal=URG@900 --partition=cpu --account=medlab",
        "--parsable --job-name=tiny.prep.graph_load_medkg+sample_rare_dx "
        "--output=runs/tiny/logs/slurm/prep.graph_load_medkg+sample_rare_dx-%j.out --nodes=1 "
        "--cpus-per-task=1 --mem=4096 --time=120 --requeue --signal=URG@900 --partition=cpu "
        "--account=medlab",
    ]


class _Resources(dict):
    """The two ways the slurm plugin reads a job's resources: .get() and attributes."""

    __getattr__ = dict.__getitem__


def _sbatch_line(job) -> str:
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from fleming_dsl.emit.workflow import rule_resources

    fake = SimpleNamespace(resources=_Resources(rule_resources(job)), threads=job.threads,
                           name=job.name)
    params = {"run_uuid": "tiny_x", "slurm_logfile": "log", "comment_str": f"rule_{job.name}",
              "account": f"-A {job.resources.account}", "partition":
              f"-p {job.resources.partition}", "workdir": ""}
    return get_submit_command(fake, params) + set_gres_string(fake)


def test_the_slurm_plugin_turns_rule_resources_into_the_right_sbatch_options() -> None:
    p = _plan(gpu_experiment())
    gpu = _sbatch_line(p.job("grpo_rl2")).split()
    for option in ("-t", "2880", "--mem", "480000", "--nodes=2", "--cpus-per-task=16",
                   "--gres=gpu:8", "-p", "gpu", "-A", "medlab"):
        assert option in gpu, option
    cpu = _sbatch_line(p.job("filter_clean")).split()
    for option in ("-t", "60", "--mem", "4096", "--nodes=1", "--cpus-per-task=1", "--ntasks=1",
                   "cpu"):
        assert option in cpu, option
    assert not any("gres" in part or "gpus" in part for part in cpu)


def cpu_two_node_experiment() -> ir.Experiment:
    """The tiny recipe with two CPU nodes (one rank each) for every stage, ZeRO-3 offload asked."""
    exp = tiny_experiment()
    two = ir.Resources(nodes=2)
    stages = [stage.model_copy(update={
        "training": stage.training.model_copy(update={"deepspeed": "zero3_offload"}),
        "resources": two}) for stage in exp.stages]
    return exp.model_copy(update={"stages": tuple(stages)})


def test_cpu_ranks_launch_with_torchrun_and_deepspeed_without_offload() -> None:
    files = _files(cpu_two_node_experiment())
    for name in ("sft_cold_start", "grpo_rl1", "grpo_rl2"):
        wrapper = files[f"launch/{name}.sh"]
        assert "2 node(s) x 1 process(es), world size 2" in wrapper
        assert "torch.distributed.run" in wrapper and "accelerate.commands.launch" not in wrapper
        # accelerate launch starts CPU ranks only through mpirun: no accelerate YAML for them
        assert f"accelerate/{name}.yaml" not in files
        assert json.loads(files[f"jobs/{name}.json"])["accelerate_config"] is None
        zero = json.loads(files[f"deepspeed/{name}.json"])["zero_optimization"]
        # offload would make DeepSpeed JIT-build its CPU Adam; on CPU there is nothing to offload to
        assert zero["stage"] == 3 and "offload_optimizer" not in zero and "offload_param" not in zero


@pytest.mark.parametrize("value", [
    {"b": [1, 2.5, None, True, False, {"c": {}, "a": []}], "\u00e9": "x\u2028\"y\\", "a": -0.0},
    [], {}, 1e-06, 3.0, 10**20, "plain", [[1], [[]]], {"nan": float("nan")}, {1: "int key"}])
def test_to_json_writes_what_json_dumps_writes(value) -> None:
    from fleming_dsl.emit.workflow import to_json

    assert to_json(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
