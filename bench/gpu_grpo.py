"""GRPO rollouts with vLLM against transformers' generate, on a model the project builds (issue 23).

    python bench/gpu_grpo.py                        # on a GPU: a ~0.5B random Qwen2; on CPU: tiny
    python bench/gpu_grpo.py --hidden 1024 --layers 16 --steps 4 --completion 512

No hub is needed: the model is the workflow's own builder (`jobs/build_model.py`: a byte-level
BPE trained here and a Qwen2 with seeded random weights) at the size asked for. Three engines
are measured in the same run, on the same model and prompts:

- `transformers`: GRPOTrainer with use_vllm = false (generate on the policy itself);
- `vllm colocate`: GRPOTrainer with use_vllm = true, vllm_mode = "colocate" (GPU and vllm only);
- `vllm alone`: vllm.LLM.generate of the same prompts x generations, no trainer (the ceiling).

Per engine: seconds per GRPO step (median over the steps after the first, which compiles and
warms up), and rollout tokens/s: completion tokens over the time spent in the trainer's
`_generate` (weight sync to vLLM included: it is part of every rollout). A random model rarely
stops early, so completions run to `--completion` tokens. Without a GPU or without vllm the vLLM
rows are skipped with a line saying why; the transformers row always runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleming_dsl.ir import TinyArch  # noqa: E402
from fleming_dsl.runtime.data import items  # noqa: E402
from fleming_dsl.runtime.jobs.build_model import _scaffold_texts, build_model, train_tokenizer  # noqa: E402

PROMPTS = [f"Question {i}: which finding fits disease {i}? A) fever B) rash C) cough D) none"
           for i in range(64)]


def build(directory: Path, hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> str:
    tokenizer = train_tokenizer(_scaffold_texts() + PROMPTS, vocab)
    arch = TinyArch(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab,
                    max_position=4096)
    model = build_model(arch, tokenizer, seed=0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def format_reward(completions, **_):
    """A cheap verifiable reward: the answer shape the recipe trains for."""
    return [float(items.is_well_formed(c[0]["content"] if isinstance(c, list) else c, False))
            for c in completions]


def grpo_row(model: str, out: Path, args, *, use_vllm: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    config = GRPOConfig(
        output_dir=str(out), max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.completion, learning_rate=1e-6,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=not cuda, bf16=cuda, disable_tqdm=True,
        use_vllm=use_vllm, **({"vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3,
                               "vllm_max_model_length": args.completion + 256} if use_vllm else {}))
    trainer = GRPOTrainer(model=model, reward_funcs=format_reward, args=config, train_dataset=data)
    rollout = {"seconds": 0.0, "tokens": 0}
    generate = trainer._generate

    def timed_generate(prompts):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = generate(prompts)
        if cuda:
            torch.cuda.synchronize()
        rollout["seconds"] += time.perf_counter() - start
        rollout["tokens"] += sum(len(ids) for ids in result[1])
        return result

    trainer._generate = timed_generate
    stamps: list[float] = []

    class Steps(TrainerCallback):
        def on_step_end(self, *_, **__):
            stamps.append(time.perf_counter())

    trainer.add_callback(Steps())
    trainer.remove_callback(PrinterCallback)  # the table is the output, not every step's logs
    start = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([start, *stamps], stamps)]
    return {"step_s": statistics.median(steps[1:] or steps), "tokens": rollout["tokens"],
            "tokens_per_s": rollout["tokens"] / rollout["seconds"]}


def vllm_alone_row(model: str, args) -> dict:
    import vllm
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True)
               for p in PROMPTS[:args.prompts * args.steps]]  # what the GRPO steps rolled out
    engine = vllm.LLM(model=model, gpu_memory_utilization=0.3, max_model_len=args.completion + 256, seed=0)
    params = vllm.SamplingParams(n=args.generations, temperature=1.0, max_tokens=args.completion)
    engine.generate(prompts[:1], params)  # warm-up: CUDA graphs, first allocation
    start = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return {"step_s": None, "tokens": tokens, "tokens_per_s": tokens / seconds}


def vllm_unavailable() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm)"
    return None


def main() -> None:
    import torch

    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024 if gpu else 64)
    parser.add_argument("--layers", type=int, default=24 if gpu else 2)
    parser.add_argument("--heads", type=int, default=16 if gpu else 4)
    parser.add_argument("--kv-heads", type=int, default=4 if gpu else 2)
    parser.add_argument("--vocab", type=int, default=2000 if gpu else 400)
    parser.add_argument("--steps", type=int, default=4 if gpu else 3)
    parser.add_argument("--generations", type=int, default=8 if gpu else 4)
    parser.add_argument("--prompts", type=int, default=8 if gpu else 1, help="prompts per step")
    parser.add_argument("--completion", type=int, default=512 if gpu else 16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = build(Path(tmp) / "model", args.hidden, args.layers, args.heads, args.kv_heads, args.vocab)
        import transformers

        params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(model).parameters())
        device = torch.cuda.get_device_name(0) if gpu else "CPU"
        print(f"model: random Qwen2, hidden {args.hidden}, {args.layers} layers, {params / 1e6:.1f}M parameters; "
              f"{args.steps} GRPO steps of {args.prompts} prompts x {args.generations} completions x "
              f"{args.completion} tokens on {device}")
        rows = {"transformers generate": grpo_row(model, Path(tmp) / "hf", args, use_vllm=False)}
        why = vllm_unavailable()
        if why is None:
            rows["vllm colocate"] = grpo_row(model, Path(tmp) / "vllm", args, use_vllm=True)
            rows["vllm alone (no trainer)"] = vllm_alone_row(model, args)
        print("\n| engine | s / GRPO step | rollout tokens | rollout tokens/s |\n|---|---|---|---|")
        for name, row in rows.items():
            step = f"{row['step_s']:.2f}" if row["step_s"] is not None else "-"
            print(f"| {name} | {step} | {row['tokens']} | {row['tokens_per_s']:.0f} |")
        if why is not None:
            print(f"\nvLLM rows skipped: {why}.")


if __name__ == "__main__":
    main()
