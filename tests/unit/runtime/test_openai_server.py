"""The OpenAI teacher against a real OpenAI-compatible server: llm-katan's echo backend (FastAPI,
/v1/chat/completions) with its failure simulation. Requests are counted on the server (/stats
counts every request, failed ones included)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleming_dsl.ir import Backend
from fleming_dsl.runtime.teachers.backends.openai import OpenAIBackend
from fleming_dsl.runtime.teachers.cache import CachedTeacher, DiskCache
from fleming_dsl.runtime.teachers.protocol import Request, TeacherError

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("llm-katan") is None, reason="llm-katan is not installed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Katan:
    """One llm-katan echo server on a port, with its own stats file."""

    def __init__(self, folder: Path, port: int, *flags: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["llm-katan", "--model", "echo-model", "--backend", "echo", "--providers", "openai",
             "--host", "127.0.0.1", "--port", str(port), "--stats-file", str(folder / "stats.json"),
             "--log-level", "WARNING", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("llm-katan did not start")

    def requests(self) -> int:
        return json.loads(urllib.request.urlopen(f"{self.url}/stats", timeout=5).read())["total"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def katan(tmp_path: Path) -> Iterator:
    started: list[Katan] = []

    def start(*flags: str, port: int | None = None, name: str = "a") -> Katan:
        server = Katan(tmp_path / f"katan-{name}", port or free_port(), *flags)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLM_KATAN_KEY", "sk-local")  # llm-katan wants an Authorization header


def backend(server: Katan, sleeps: list[float] | None = None, cap_s: float = 0.05, **settings) -> OpenAIBackend:
    cfg = Backend(kind="openai", base_url=f"{server.url}/v1", api_key_env="FLM_KATAN_KEY",
                  max_tokens=16, **{"timeout_s": 10, "retries": 3, "concurrency": 4, **settings})
    return OpenAIBackend("echo-model", cfg, seed=0, backoff_base_s=0.01, backoff_cap_s=cap_s,
                         sleep=sleeps.append if sleeps is not None else time.sleep)


def asks(count: int) -> list[Request]:
    return [Request(task="answer", messages=({"role": "user", "content": f"question {i}"},))
            for i in range(count)]


def test_injected_500s_are_retried_until_every_request_is_answered(katan, tmp_path: Path) -> None:
    server = katan("--error-rate", "0.5")
    client = backend(server, retries=12)
    answers = client.generate(asks(12))
    assert [a[0].splitlines()[-1] for a in answers] == [f"User: question {i}" for i in range(12)]
    assert client.attempts == server.requests() > 12  # the server saw every retry


@pytest.mark.parametrize(("flag", "status"), [("--rate-limit-after", 429), ("--timeout-after", 504)])
def test_429_and_504_back_off_then_fail_with_one_line(katan, flag: str, status: int) -> None:
    server = katan(flag, "2")
    sleeps: list[float] = []
    client = backend(server, sleeps, retries=2, concurrency=1)
    with pytest.raises(TeacherError) as err:
        client.generate(asks(4))
    assert str(err.value) == f"{server.url}/v1/chat/completions: no answer after 3 attempts (HTTP {status})"
    assert server.requests() == 2 + 2 * 3  # two answered, then three attempts for each of the other two
    assert len(sleeps) == 2 * 2 and all(0 <= s <= 0.05 for s in sleeps)  # backoff between attempts


def test_client_timeout_is_retried_then_reported(katan) -> None:
    server = katan("--latency-ms", "3000")
    client = backend(server, retries=1, timeout_s=0.3, concurrency=1)
    with pytest.raises(TeacherError) as err:
        client.generate(asks(1))
    assert str(err.value).startswith(f"{server.url}/v1/chat/completions: no answer after 2 attempts (")
    assert "timed out" in str(err.value)


def test_crash_mid_batch_then_rerun_pays_only_for_the_missing(katan, tmp_path: Path) -> None:
    port = free_port()
    first = katan("--rate-limit-after", "5", port=port, name="first")  # the quota runs out half-way
    teacher = CachedTeacher(backend(first, retries=0, concurrency=1), DiskCache(tmp_path / "cache"))
    with pytest.raises(TeacherError):
        teacher.complete(asks(10))
    assert first.requests() == 10
    first.stop()
    second = katan(port=port, name="second")  # same endpoint, so the same cache keys
    rerun = CachedTeacher(backend(second, retries=0, concurrency=1), DiskCache(tmp_path / "cache"))
    responses = rerun.complete(asks(10))
    assert second.requests() == 5  # only the five the first run never got
    assert [r.cached for r in responses] == [True] * 5 + [False] * 5
    assert rerun.counts() == {"teacher_calls": 5, "cache_hits": 5}


def test_requests_really_run_concurrently(katan) -> None:
    # the server refuses (503) whatever is beyond 4 in flight: with 8 client threads it must refuse
    # some, and the retries still answer everything
    server = katan("--max-inflight", "4", "--latency-ms", "300", "--max-concurrent", "64")
    client = backend(server, cap_s=0.4, retries=30, concurrency=8)
    answers = client.generate(asks(16))
    assert all(a and a[0] for a in answers)
    assert server.requests() > 16


def test_evaluate_a_teacher_through_the_server(katan, tmp_path: Path) -> None:
    from fleming_dsl.plan import jobconfig as jc
    from fleming_dsl.runtime.jobs import run_job

    server = katan()
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}?", "options": {"A": "x", "B": "y"},
                                         "answer": "AB"[i % 2]}) + "\n" for i in range(4)))
    cfg = jc.EvalJob(job="eval_api", experiment="t", seed=1, meta=str(tmp_path / "e.meta.json"), target="api",
                     model="echo-model", benchmarks=(jc.Benchmark(name="b", path=str(bench), format="mcq"),),
                     samples=1, temperature=0.0, max_tokens=32, limit=None, output=str(tmp_path / "eval.json"),
                     teacher=jc.Generator(model="echo-model", backend=Backend(
                         kind="openai", base_url=f"{server.url}/v1", api_key_env="FLM_KATAN_KEY")),
                     cache_dir=str(tmp_path / "cache"))
    config = tmp_path / "eval.config.json"
    config.write_text(cfg.model_dump_json())
    run_job("eval", str(config))
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["benchmarks"]["b"]["n"] == 4 and results["format_rate"] == 0.0  # echo answers no letter
    assert server.requests() == 4
    run_job("eval", str(config))  # a baseline re-run is free: every answer from the cache
    assert server.requests() == 4


def test_search_distillation_never_sends_the_label(katan, tmp_path: Path) -> None:
    """What the server received (its echo of each user message) is the same whichever option
    the items' label names; the rationale protocol, the control, sends the label."""
    import re

    from fleming_dsl.errors import JobError
    from fleming_dsl.plan.jobconfig import DataSource, DistillJob, Generator
    from fleming_dsl.runtime.data.items import Item
    from fleming_dsl.runtime.jobs import distill, run_job
    from fleming_dsl.runtime.teachers import make_teacher

    server = katan()
    teacher = Generator(model="echo-model", backend=Backend(
        kind="openai", base_url=f"{server.url}/v1", api_key_env="FLM_KATAN_KEY", max_tokens=64))
    repo = Path(__file__).resolve().parents[3]

    def config(label: str, protocol: str) -> DistillJob:
        root = tmp_path / f"{protocol}-{label}"
        root.mkdir()
        rows = root / "items.jsonl"
        rows.write_text("".join(json.dumps({
            "id": f"k{i}", "question": f"Which finding goes with case {i}?", "answer": label,
            "options": {"A": "fever", "B": "rash", "C": "cough"}}) + "\n" for i in range(2)))
        prompt = "search.j2" if protocol == "search" else "reason.j2"
        return DistillJob(job="cot", experiment="t", seed=1, meta=str(root / "meta.json"),
                          sources=(DataSource(path=str(rows), format="items", name="k"),),
                          prompt=str(repo / "prompts" / prompt), teacher=teacher, protocol=protocol,
                          refine=("backtrack", "explore"), max_rounds=2, keep="correct",
                          cache_dir=str(root / "cache"), output=str(root / "cot.jsonl"))

    def received(label: str, protocol: str) -> list[str]:
        cfg = config(label, protocol)
        trajectories = [distill.Trajectory(item) for item in distill.load_sources(cfg)]
        distill.refine_all(cfg, trajectories, make_teacher(cfg.teacher, cfg.cache_dir, cfg.seed))
        echoes = [a.text for t in trajectories for a in t.attempts]
        # the echo's first line holds the time; what follows "User: " is what the server got
        return [re.sub(r"time=\S+", "", echo.split("\nUser: ", 1)[1]) for echo in echoes]

    before = server.requests()
    searched = received("B", "search")
    assert len(searched) == 4  # two rounds each: an echo of a search prompt names no option
    assert searched == received("C", "search")
    assert server.requests() == before + 8
    assert all("correct answer" not in text for text in searched)
    assert "Your reasoning so far:" in searched[1]  # round 2 of k0 continues the same chain
    # the rationale prompt states the label, so its echo even "answers" it in round 1
    assert received("B", "rationale") != received("C", "rationale")
    with pytest.raises(JobError, match=r"^cot: no trajectory kept of 2 items \(keep = correct, "
                                       r"4 malformed answers\)$"):
        run_job("distill", str(_write_config(config("A", "search"))))


def _write_config(cfg) -> str:
    path = Path(cfg.meta).with_name("job.json")
    path.write_text(cfg.model_dump_json())
    return str(path)
