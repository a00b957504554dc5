"""Throughput of the OpenAI teacher backend against a real OpenAI-compatible server (llm-katan's
echo backend with a simulated 500 ms latency per request), at concurrency 1 and 32.

    python bench/teacher_concurrency.py [--latency-ms 500] [--requests 256] [--concurrency 32]

The goal (issue 15): at concurrency 32, at least 80% of the ideal 32 / latency requests per second.
Both rows are measured in the same run against the same server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleming_dsl.ir import Backend  # noqa: E402
from fleming_dsl.runtime.teachers.backends.openai import OpenAIBackend  # noqa: E402
from fleming_dsl.runtime.teachers.protocol import Request  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, latency_ms: int, folder: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["llm-katan", "--model", "echo-model", "--backend", "echo", "--providers", "openai",
         "--host", "127.0.0.1", "--port", str(port), "--latency-ms", str(latency_ms),
         "--max-concurrent", "1024", "--disable-dashboard", "--log-level", "WARNING",
         "--stats-file", os.path.join(folder, "stats.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("llm-katan did not start")


def measure(port: int, concurrency: int, count: int) -> float:
    cfg = Backend(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="BENCH_KEY",
                  max_tokens=16, timeout_s=30, retries=0, concurrency=concurrency)
    client = OpenAIBackend("echo-model", cfg, seed=0)
    requests = [Request(task="answer", messages=({"role": "user", "content": f"q{i}"},)) for i in range(count)]
    start = time.perf_counter()
    client.generate(requests)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("llm-katan") is None:
        raise SystemExit("pip install 'llm-katan[transformers]' first")
    os.environ.setdefault("BENCH_KEY", "sk-local")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = start_server(port, args.latency_ms, folder)
        try:
            rows = []
            for concurrency in (1, args.concurrency):
                count = min(args.requests, 8) if concurrency == 1 else args.requests
                rate = measure(port, concurrency, count)
                ideal = concurrency / (args.latency_ms / 1000)
                rows.append((concurrency, count, rate, ideal, rate / ideal))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"| concurrency | requests | req/s | ideal req/s | of ideal |  (latency {args.latency_ms} ms)")
    print("|---|---|---|---|---|")
    for concurrency, count, rate, ideal, share in rows:
        print(f"| {concurrency} | {count} | {rate:.1f} | {ideal:.1f} | {share:.0%} |")
    share = rows[-1][-1]
    print(f"goal: >= 80% of ideal at concurrency {args.concurrency}: {'met' if share >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
