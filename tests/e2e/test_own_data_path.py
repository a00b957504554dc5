"""A researcher's own data, from `fleming init` to a failed job found where the user looks
(issue 26): a fresh project, a graph and questions written by the test, the mistakes a new user
makes (each a located error at check time), then a run whose job fails on a record check's bounded
read does not reach: `fleming run` shows the job's own error line and its log, and `fleming
status` (given the spec) shows the job as failed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the run builds a graph, samples, synthesizes and distills: ~40 s

DISEASES = {f"disease{i}": ([f"symptom{i}", f"symptom{i + 1}"], [f"drug{i}"]) for i in range(8)}


def fleming(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleming_dsl.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def graph_lines(columns: int = 5) -> str:
    rows = ["head\thead_type\trelation\ttail\ttail_type"] if columns == 5 else []
    for name, (symptoms, drugs) in DISEASES.items():
        for s in symptoms:
            rows.append(f"{name}\tdisease\thas_symptom\t{s}\tsymptom" if columns == 5
                        else f"{name}\thas_symptom\t{s}")
        for d in drugs:
            rows.append(f"{d}\tdrug\ttreats\t{name}\tdisease" if columns == 5
                        else f"{d}\ttreats\t{name}")
    return "\n".join(rows) + "\n"


def questions(count: int, text_answer_at: int | None = None) -> str:
    names = sorted(DISEASES)
    rows = []
    for i in range(count):
        answer = names[i % len(names)]
        options = dict(zip("ABCD", [answer, *(n for n in names if n != answer)][:4][::-1]))
        letter = next(k for k, v in options.items() if v == answer)
        rows.append({"question": f"Case {i}: {' and '.join(DISEASES[answer][0])}. Diagnosis?",
                     "options": options, "answer": answer if i == text_answer_at else letter})
    return "".join(json.dumps(r) + "\n" for r in rows)


def first_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": error: " in line]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert fleming(tmp_path, "init", "proj").returncode == 0
    root = tmp_path / "proj"
    (root / "data" / "graph.tsv").write_text(graph_lines())
    (root / "data" / "questions" / "train.jsonl").write_text(questions(30))
    (root / "data" / "questions" / "test.jsonl").write_text(questions(8))
    return root


def test_a_fresh_project_checks(project: Path) -> None:
    result = fleming(project, "check", "specs/own.flm")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "specs/own.flm: ok (experiment 'own', 13 declarations)\n"


def test_each_mistake_is_a_located_error_at_check_time(project: Path) -> None:
    (project / "data" / "graph.tsv").write_text(graph_lines(columns=3))
    (project / "data" / "questions" / "train.jsonl").write_text(questions(30, text_answer_at=0))
    (project / "prompts" / "question.j2").write_text("Ask about {{ answer_type }}:\n{{ anwser }}\n")
    spec = project / "specs" / "own.flm"
    spec.write_text(spec.read_text().replace("epochs = 1", "epoch = 1"))
    result = fleming(project, "check", "specs/own.flm")
    assert result.returncode == 1
    assert first_lines(result) == [
        "specs/own.flm:16:20: error: graph kg: ../data/graph.tsv line 1 has 3 tab-separated "
        "fields; the triples format has 5: head, head_type, relation, tail, tail_type",
        "specs/own.flm:25:21: error: dataset train: record 1 of ../data/questions/train.jsonl: "
        "field 'answer' is 'disease0', not one of the option letters ABCD",
        "specs/own.flm:28:26: error: prompt template ../prompts/question.j2:2 reads 'anwser', "
        "which synthesize questions does not pass",
        "specs/own.flm:28:26: error: prompt template ../prompts/question.j2 defines no macro "
        "'stem', which the template teacher of synthesize questions answers with",
        "specs/own.flm:43:3: error: unknown option 'epoch' for stage tune"]


def test_a_failing_job_is_shown_by_run_and_status(project: Path) -> None:
    # record 25 names its answer by text: past check's bounded read, so the distill job finds it
    (project / "data" / "questions" / "train.jsonl").write_text(questions(30, text_answer_at=24))
    result = fleming(project, "run", "specs/own.flm", "--cores", "2", "distill_cot")
    assert result.returncode == 1
    shown = result.stdout + result.stderr
    assert "started  distill_cot" in shown
    assert "FAILED   distill_cot" in shown
    assert "  error: data/questions/train.jsonl:25: field 'answer' is 'disease0', not one of " \
           "the option letters ABCD" in shown, shown
    assert "  log: runs/own/logs/distill_cot.log" in shown
    assert "Snakemake's output: runs/own/logs/snakemake.log" in shown
    assert "MissingRuleException" not in shown and "Error in rule" not in shown
    status = fleming(project, "status", "specs/own.flm")
    assert status.returncode == 1
    rows = {m.group(2): m.group(1) + m.group(3) for m in re.finditer(
        r"^(up to date|failed|running|missing|stale)\s+(\S+)(.*)$", status.stdout, re.M)}
    assert rows["distill_cot"].startswith("failed")
    assert "field 'answer' is 'disease0'" in rows["distill_cot"]
    assert rows["sample_cases"].startswith("up to date")


def test_a_declaration_name_as_a_target_names_its_jobs(project: Path) -> None:
    result = fleming(project, "run", "specs/own.flm", "cases")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: 'cases' is a declaration, not a job: name one of its jobs (sample_cases)")
