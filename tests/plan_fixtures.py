"""Hand-built IR for the planner/emitter tests: mirrors specs/tiny.flm, so nothing of the
planner's tests waits on the front end. Spans point at the lines of the draft spec."""

from __future__ import annotations

import os
from pathlib import Path

from fleming_dsl import ir

SPEC = "specs/tiny.flm"


def span(line: int) -> ir.Span:
    return ir.Span(file=SPEC, line=line, col=1, end_line=line, end_col=2)


def tiny_experiment(form_weight: float = 0.2, **cluster: object) -> ir.Experiment:
    grpo_training = ir.Training(generations=4, batch_size=8, beta=0.0, lr=5e-5,
                                max_completion_length=48, max_steps=8)
    rewards = (ir.RewardTerm(reward="correct", weight=1.0),
               ir.RewardTerm(reward="form", weight=form_weight),
               ir.RewardTerm(reward="brevity", weight=0.1))
    return ir.Experiment(
        name="tiny", seed=7, workdir="runs/tiny", spec=SPEC,
        models=(
            ir.Model(name="base", source="tiny", ref="", span=span(10),
                     tiny=ir.TinyArch(hidden=128, layers=2, heads=4, kv_heads=2, vocab=800)),
            ir.Model(name="teacher", source="hf", ref="", span=span(11),
                     backend=ir.Backend(kind="template", temperature=0.0)),
        ),
        graphs=(ir.Graph(name="medkg", format="primekg", paths=("data/medkg/kg.csv",),
                         span=span(13)),),
        samples=(ir.Sample(name="rare_dx", graph="medkg", start_type="disease", span=span(15),
                           steps=(ir.MetapathStep(relation="disease_phenotype_positive",
                                                  node_type="effect/phenotype"),),
                           hops_min=1, hops_max=2, mask="anchor", count=600),),
        datasets=(
            ir.Dataset(name="medqa_train", format="medqa", path="data/train/medqa_train.jsonl",
                       span=span(24)),
            ir.Dataset(name="medqa_test", format="medqa", path="data/eval/medqa_test.jsonl",
                       span=span(25)),
            ir.Dataset(name="medmcqa_dev", format="medmcqa", path="data/eval/medmcqa_dev.jsonl",
                       span=span(26)),
            ir.Dataset(name="pubmedqa", format="pubmedqa", path="data/eval/pubmedqa.json",
                       span=span(27)),
        ),
        prompts=(ir.Prompt(name="ask", path="prompts/question.j2", span=span(29)),
                 ir.Prompt(name="reason", path="prompts/reason.j2", span=span(30))),
        synthesize=(ir.Synthesize(name="questions", source="rare_dx", teacher="teacher",
                                  prompt="ask", span=span(32)),),
        distill=(ir.Distill(name="cot", sources=("questions", "medqa_train"), teacher="teacher",
                            prompt="reason", refine=("backtrack", "explore", "self_correct"),
                            max_rounds=2, keep="correct", span=span(34)),),
        filters=(ir.Filter(name="clean", source="cot", span=span(40), steps=(
            ir.FormatCheck(),
            ir.VerifyLabel(votes=3, agree=1, on_fail="review"),
            ir.Dedupe(method="minhash", threshold=0.8),
            ir.Decontaminate(against=("medqa_test", "medmcqa_dev", "pubmedqa"), ngram=8),
            ir.Difficulty(method="grader", model="teacher"),
        )),),
        rewards=(
            ir.Reward(name="correct", function="choice_match", options={"tag": "answer"},
                      span=span(48)),
            ir.Reward(name="form", function="regex",
                      options={"pattern": "^<think>.*</think><answer>[A-D]</answer>$"},
                      span=span(49)),
            ir.Reward(name="brevity", function="length_penalty", options={"max_tokens": 96},
                      span=span(50)),
        ),
        stages=(
            ir.Stage(name="cold_start", method="sft", init="base", span=span(52),
                     data=ir.StageData(dataset="clean"),
                     training=ir.Training(epochs=2, lr=3e-3, batch_size=16, max_length=256)),
            ir.Stage(name="rl1", method="grpo", init="cold_start", span=span(56),
                     data=ir.StageData(dataset="clean", buckets=("easy", "moderate")),
                     training=grpo_training, rewards=rewards,
                     plateau=ir.Plateau(metric="reward", patience=4)),
            ir.Stage(name="rl2", method="grpo", init="rl1", span=span(63),
                     data=ir.StageData(miner=ir.Miner(pool="clean", pass_below=0.5, refresh=4,
                                                      samples=2)),
                     training=grpo_training, rewards=rewards),
        ),
        evaluations=(ir.Evaluate(name="evaluate_69", targets=("cold_start", "rl1", "rl2"),
                                 benchmarks=("medqa_test", "medmcqa_dev", "pubmedqa"),
                                 max_tokens=64, span=span(69)),),
        cluster=ir.Cluster(**cluster),
    )


def gpu_experiment() -> ir.Experiment:
    """The tiny recipe with paper-scale resources: deepspeed zero3 and 2 nodes x 8 GPUs."""
    exp = tiny_experiment(account="medlab", partition="cpu", gpu_partition="gpu")
    big = ir.Resources(nodes=2, gpus=8, cpus=16, mem_mb=480_000, time_min=2880)
    stages = []
    for stage, zero in zip(exp.stages, ("zero3", "zero2", "zero3_offload")):
        training = stage.training.model_copy(update={"deepspeed": zero, "bf16": True})
        stages.append(stage.model_copy(update={"training": training, "resources": big}))
    return exp.model_copy(update={"stages": tuple(stages)})


def fabricate_outputs(root: Path, job, stamp: float | None = None) -> None:
    """Write a planner job's outputs (not its meta) under `root`, as if it had run: a folder
    output gets one file. With `stamp`, every file written gets that mtime."""
    for out in job.outputs[:-1]:
        target = root / out.path
        target.parent.mkdir(parents=True, exist_ok=True)
        written = [target]
        if out.directory:
            target.mkdir(exist_ok=True)
            (target / "weights.bin").write_text(f"{job.name}\n")
            written.insert(0, target / "weights.bin")
        else:
            target.write_text(f"{job.name}\n")
        for path in written if stamp is not None else ():
            os.utime(path, (stamp, stamp))
