"""Cluster life in the generated workflow: the signal before the time limit and requeue in every
sbatch line, shard steps as job arrays, the efficiency report, the container, the Apptainer
definition, and where `--cluster` leads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from flm_fixtures import MINIMAL, write_project
from paths import REPO
from plan_fixtures import tiny_experiment

from fleming_dsl import ir
from fleming_dsl.cli.main import main
from fleming_dsl.compiler import check_experiment, load_experiment
from fleming_dsl.emit.container import LockError, definition, pins
from fleming_dsl.emit.workflow import render
from fleming_dsl.errors import SpecError
from fleming_dsl.plan.planner import plan


def _files(exp: ir.Experiment) -> dict[str, str]:
    return render(plan(exp, "generated/tiny"))


def _with_cluster(**fields) -> ir.Experiment:
    exp = tiny_experiment()
    return exp.model_copy(update={"cluster": exp.cluster.model_copy(update=fields)})


def test_the_slurm_plugin_asks_for_the_signal_and_requeue_for_every_job() -> None:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    files = _files(_with_cluster(signal_lead_s=600))
    rules = re.findall(r"^rule (?!all:)\w+:", files["Snakefile"], re.MULTILINE)
    assert files["Snakefile"].count('slurm_extra="--signal=URG@600"') == len(rules) > 5
    profile = yaml.safe_load(files["profiles/slurm/config.yaml"])
    assert (profile["slurm-requeue"], profile["slurm-efficiency-report"]) == (True, True)
    row = next(r for r in json.loads(files["jobs.json"])["jobs"] if r["name"] == "sft_cold_start")

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(resources=Resources(row["resources"]), threads=1, name="sft")
    line = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c",
                                    "account": "", "partition": "", "workdir": ""},
                              settings=SimpleNamespace(requeue=profile["slurm-requeue"], qos=None,
                                                       reservation=None))
    assert " --requeue" in line and line.endswith(" --signal=URG@600")
    generic = yaml.safe_load(files["profiles/slurm-generic/config.yaml"])
    assert "--requeue {resources.slurm_extra}" in generic["cluster-generic-submit-cmd"]


def test_shard_steps_go_out_as_job_arrays_and_unsharded_specs_have_none() -> None:
    sharded = load_experiment(REPO / "tests" / "specs" / "tiny_sharded.flm", REPO)
    profile = yaml.safe_load(_files(sharded)["profiles/slurm/config.yaml"])
    assert profile["slurm-array-jobs"] == "distill,eval_1,eval_2,eval_3,eval_4,filter_1,synthesize"
    assert "slurm-array-jobs" not in yaml.safe_load(_files(tiny_experiment())["profiles/slurm/config.yaml"])


def test_a_container_reaches_every_rule_through_every_profile(tmp_path: Path) -> None:
    files = _files(_with_cluster(container="docker://ghcr.io/lab/fleming:1.0"))
    assert '\ncontainer: "docker://ghcr.io/lab/fleming:1.0"\n' in files["Snakefile"]
    for name in ("local", "slurm", "slurm-generic"):
        assert yaml.safe_load(files[f"profiles/{name}/config.yaml"])[
            "software-deployment-method"] == ["apptainer"]
    plain = _files(tiny_experiment())
    assert "container:" not in plain["Snakefile"]
    assert "software-deployment-method" not in plain["profiles/slurm/config.yaml"]
    # Snakemake reads the directive: every job of a dry run names the image
    (tmp_path / "generated").mkdir()
    from fleming_dsl.emit.workflow import emit
    emit(plan(_with_cluster(container="docker://ghcr.io/lab/fleming:1.0"), "generated/tiny"),
         tmp_path / "generated" / "tiny")
    listed = subprocess.run([sys.executable, "-m", "snakemake", "-s", "generated/tiny/Snakefile",
                             "--list-rules"], cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert listed.returncode == 0, listed.stderr


def test_container_in_the_header_reaches_the_cluster_and_signal_lead_is_read(tmp_path: Path) -> None:
    spec = MINIMAL.replace('experiment "t" { seed = 1 }',
                           'experiment "t" { seed = 1  container = "fleming.sif" }\n'
                           'cluster { signal_lead = 10m }')
    exp = load_experiment(write_project(tmp_path, spec), tmp_path)
    assert (exp.cluster.container, exp.cluster.signal_lead_s) == ("fleming.sif", 600)


def test_a_container_set_twice_is_an_error(tmp_path: Path) -> None:
    spec = MINIMAL.replace('experiment "t" { seed = 1 }',
                           'experiment "t" { seed = 1  container = "a.sif" }\n'
                           'cluster { container = "b.sif" }')
    with pytest.raises(SpecError) as info:
        check_experiment(write_project(tmp_path, spec), tmp_path)
    assert str(info.value).splitlines()[0].endswith(
        "spec.flm:1:40: error: container is set both in the experiment header and in the cluster block")


def test_the_signal_lead_is_at_most_half_a_jobs_time_limit() -> None:
    exp = _with_cluster(signal_lead_s=3600)
    stages = tuple(s.model_copy(update={"resources": ir.Resources(time_min=10)}) if s.name == "cold_start"
                   else s for s in exp.stages)
    rows = {r["name"]: r for r in json.loads(_files(exp.model_copy(update={"stages": stages}))[
        "jobs.json"])["jobs"]}
    assert rows["sft_cold_start"]["resources"]["slurm_extra"] == "--signal=URG@300"
    assert rows["report"]["resources"]["slurm_extra"] == "--signal=URG@1800"  # the 60m default


def test_the_apptainer_definition_pins_every_library_of_the_lock() -> None:
    lock = (REPO / "constraints.txt").read_text()
    text = definition(lock, python=(3, 11, 7))
    assert "\nFrom: python:3.11.7-slim-bookworm\n" in text
    body = text.split("<<'PINS'\n", 1)[1].split("\nPINS\n", 1)[0].splitlines()
    assert body == pins(lock) and "torch==2.13.0" in body and "transformers==5.24.0" in body
    assert re.search(r"pip install --no-cache-dir -c /opt/constraints.txt /opt/fleming-dsl", text)
    with pytest.raises(LockError) as info:
        pins("torch==2.13.0\n--index-url http://x\n")
    assert str(info.value) == ("constraints.txt:2: expected a pin such as torch==2.13.0, "
                               "got '--index-url http://x'")


def test_run_with_the_old_cluster_option_names_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as code:
        main(["run", "specs/tiny.flm", "--cluster", "sbatch -p gpu"])
    assert code.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "fleming: error: --cluster is Snakemake 7's option; Snakemake 9 submits through a "
        "profile: fleming run specs/tiny.flm --profile slurm (the slurm executor plugin), or "
        "--profile slurm-generic (an sbatch line through the cluster-generic executor; "
        "generated/<experiment>/README.md shows both)")


def test_a_container_that_is_not_an_image_reference_is_an_error(tmp_path: Path) -> None:
    spec = MINIMAL + 'cluster { container = "img.sif; rm -rf ~" }\n'
    with pytest.raises(SpecError) as info:
        check_experiment(write_project(tmp_path, spec), tmp_path)
    lines = str(info.value).splitlines()
    assert lines[0].endswith("spec.flm:16:23: error: container 'img.sif; rm -rf ~' is not an "
                             "image reference")
