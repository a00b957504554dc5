"""How much stage-1 GRPO moves the embedded default: rl1 variants trained from a finished tiny
run's cold start, each evaluated greedily on medqa_test and paired with the cold start's answers
on the same questions (gained, lost, exact McNemar p).

    python bench/rl_probe.py PROJECT 24:1e-4 300:1e-4 600:1e-4

PROJECT is a folder where `fleming run specs/tiny.flm` finished (e.g. the end-to-end test's
`/tmp/pytest-of-*/pytest-*/tiny-project0`); each variant STEPS:LR copies its
`generated/tiny/jobs/grpo_rl1.json` and `eval_rl1.json` with new steps, learning rate and
outputs under `runs/probe/`, and runs them with `fleming job`. Nothing of the run is changed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from scipy.stats import binomtest


def _job(project: Path, kind: str, config: dict, path: Path) -> None:
    path.write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "fleming_dsl.cli", "job", kind, "--config", str(path)],
                          cwd=project, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-2000:])


def _correct(path: Path) -> dict[str, bool]:
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return {r["id"]: r["correct"] for r in rows if r["benchmark"] == "medqa_test" and r["sample"] == 0}


def probe(project: Path, steps: int, lr: float) -> dict:
    jobs, out = project / "generated" / "tiny" / "jobs", project / "runs" / "probe"
    out.mkdir(parents=True, exist_ok=True)
    name = f"rl1_{steps}_{lr:g}"
    grpo = json.loads((jobs / "grpo_rl1.json").read_text())
    grpo["training"].update(max_steps=steps, lr=lr)
    model = f"runs/probe/{name}"
    grpo.update(job=f"grpo_{name}", output=model, meta=f"{model}.meta.json", metrics=f"{model}.metrics.jsonl")
    _job(project, "grpo", grpo, out / f"{name}.grpo.json")
    evaluation = json.loads((jobs / "eval_rl1.json").read_text())
    evaluation.update(job=f"eval_{name}", target=name, model=model, output=f"{model}.eval.json",
                      meta=f"{model}.eval.meta.json", inputs=[model, *evaluation["inputs"][1:]])
    _job(project, "eval", evaluation, out / f"{name}.eval.cfg.json")
    cold = _correct(project / "runs" / "tiny" / "eval" / "cold_start.json.predictions.jsonl")
    new = _correct(project / f"{model}.eval.json.predictions.jsonl")
    gained = sum(new[q] and not cold[q] for q in cold)
    lost = sum(cold[q] and not new[q] for q in cold)
    seconds = json.loads((project / f"{model}.meta.json").read_text())["timings"]["total_s"]
    return {"steps": steps, "lr": lr, "cold": sum(cold.values()), "rl1": sum(new.values()),
            "gained": gained, "lost": lost, "n": len(cold), "train_s": seconds,
            "p": binomtest(gained, gained + lost).pvalue if gained + lost else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("variants", nargs="+", help="STEPS:LR, e.g. 300:1e-4")
    args = parser.parse_args()
    print("| steps | lr | cold start | rl1 | gained | lost | McNemar p | train s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant in args.variants:
        steps, lr = variant.split(":")
        r = probe(args.project.resolve(), int(steps), float(lr))
        print(f"| {r['steps']} | {r['lr']:g} | {r['cold']}/{r['n']} | {r['rl1']}/{r['n']} | {r['gained']} "
              f"| {r['lost']} | {r['p']:.3g} | {r['train_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
