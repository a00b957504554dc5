"""The eval job: a model on the declared benchmarks, accuracy with a 95% interval per benchmark.

Each benchmark is read from its published file format (`formats.load_items`), every item is put
to the model exactly as training puts it (`items.prompt_messages`), completions are read back
with `items.extract_answer` (restricted to the item's own options: by letter, or with
`accept = "text"` also by an option's exact text) and checked for the
trained shape with `items.is_well_formed`.

Results (`cfg.output`):
    {"target", "model", "samples", "temperature", "max_tokens", "limit", "accept", "predictions",
     "benchmarks": {name: {"n", "samples", "correct", "correct_by": {"letter", "text"},
                           "accuracy", "ci95": [lo, hi],
                           "format_rate", "extracted_rate", "by_difficulty"?,
                           "pass@k"?, "maj@k"? (each declared metric)}},
     "format_rate", "accuracy_mean"}
- `n` counts items; `correct` counts correct (item, sample) pairs; accuracy = correct /
  (n * samples), i.e. with samples > 1 the mean over samples of each item's accuracy.
- `ci95` is Wilson's interval at that accuracy over n items (samples of one item are correlated,
  so they are not counted as separate trials).
- `format_rate` at the top is over every completion of every benchmark; `accuracy_mean` is the
  unweighted mean over benchmarks, the "average" column of the paper's tables.
Every completion goes, one row per (item, sample: the question, options, gold, the option read,
the completion), to `<output>.predictions.jsonl` (`jobconfig.predictions_path`, a declared output):
the report pairs them across stages and shows a few.

Items are generated in chunks (`chunk_size`: one transformers batch, seeded `seed + chunk`), each
kept in `<output>.progress.jsonl` as it finishes (`runtime/journal.py`). The signal before a time
limit (or a preemption) stops the job after the chunk in hand; the next allocation generates only
the chunks not kept, so a long evaluation finishes across allocations with the output of one
that was never stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleming_dsl.errors import JobError
from fleming_dsl.plan.jobconfig import Benchmark, EvalJob, predictions_path
from fleming_dsl.runtime import preemption
from fleming_dsl.runtime.data import shards
from fleming_dsl.runtime.data.items import (
    MEDXPERTQA_GROUPS,
    Item,
    extract_answer,
    is_well_formed,
    prompt_messages,
)
from fleming_dsl.runtime.io import read_jsonl, write_json, write_jsonl
from fleming_dsl.runtime.jobs.context import JobContext
from fleming_dsl.runtime.journal import Journal, fingerprint
from fleming_dsl.runtime.reporting.sampled import sampled_metrics
from fleming_dsl.runtime.reporting.stats import proportion, wilson_interval


LARGE_CHUNK = 1024  # items per vLLM or teacher call: enough to keep an engine busy


# ---------------------------------------------------------------- loading


def _read_item_jsonl(path: str) -> list[Item]:
    items = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            items.append(Item.model_validate(row))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "(row)"
            raise JobError(f"{path}:{number}: field '{field}': {first['msg']}") from None
    return items


def load_benchmark(bench: Benchmark, index: int) -> list[Item]:
    """The items of one benchmark; a missing or unusable file is a JobError naming it."""
    if not Path(bench.path).is_file():
        raise JobError(f"{bench.path}: benchmark file not found "
                       f"(field 'benchmarks[{index}].path', benchmark '{bench.name}')")
    try:
        from fleming_dsl.runtime.data.formats import load_items
    except ImportError:  # the published-format loaders are optional until they land
        load_items = None
    if load_items is not None:
        items = load_items(bench.path, bench.format, bench.split, bench.limit)
    elif bench.format == "items":
        items = _read_item_jsonl(bench.path)
    else:
        raise JobError(f"{bench.path}: format '{bench.format}' needs fleming_dsl.runtime.data.formats "
                       f"(field 'benchmarks[{index}].format')")
    if not items:
        raise JobError(f"{bench.path}: benchmark '{bench.name}' has no items")
    return list(items)


# ---------------------------------------------------------------- scoring (pure)


# item provenance fields whose values split a benchmark's accuracy (MedXpertQA's categories)


def score_item(benchmark: str, item: Item, completions: list[str],
               accept: str = "letter") -> list[dict[str, Any]]:
    """One prediction row per sampled completion of one item; `named_by` says whether the
    option was named by its letter or (accept = "text") by its text."""
    rows = []
    for sample, text in enumerate(completions):
        extracted, how = extract_answer(text, item.options, accept)
        rows.append({
            "benchmark": benchmark, "id": item.id, "sample": sample, "question": item.question,
            "options": item.options, "answer": item.answer,
            "extracted": extracted, "named_by": how, "correct": extracted == item.answer,
            "well_formed": is_well_formed(text, accept == "text"), "difficulty": item.difficulty,
            "groups": {k: str(item.provenance[k]) for k in MEDXPERTQA_GROUPS if item.provenance.get(k)},
            "completion": text,
        })
    return rows


def summarise(rows: list[dict[str, Any]], n_items: int, samples: int) -> dict[str, Any]:
    """Accuracy, Wilson 95% interval, format and extraction rates of one benchmark's rows."""
    total = len(rows)
    correct = sum(row["correct"] for row in rows)
    accuracy = proportion(correct, total)
    lo, hi = wilson_interval(accuracy, n_items)
    summary: dict[str, Any] = {
        "n": n_items, "samples": samples, "correct": correct, "accuracy": accuracy,
        "ci95": [lo, hi],
        # how the right answers named their option (text only counts under accept = text)
        "correct_by": {how: sum(row["correct"] and row.get("named_by") == how for row in rows)
                       for how in ("letter", "text")},
        "format_rate": proportion(sum(row["well_formed"] for row in rows), total),
        "extracted_rate": proportion(sum(row["extracted"] is not None for row in rows), total),
    }
    buckets = sorted({row["difficulty"] for row in rows if row["difficulty"]})
    if buckets:
        summary["by_difficulty"] = {}
        for bucket in buckets:
            picked = [row for row in rows if row["difficulty"] == bucket]
            summary["by_difficulty"][bucket] = {
                "n": len(picked) // samples,
                "accuracy": proportion(sum(row["correct"] for row in picked), len(picked)),
            }
    for field in MEDXPERTQA_GROUPS:  # published categories (MedXpertQA): accuracy per value
        values = sorted({row["groups"][field] for row in rows if field in row.get("groups", {})})
        if values:
            summary[f"by_{field}"] = {}
            for value in values:
                picked = [row for row in rows if row.get("groups", {}).get(field) == value]
                summary[f"by_{field}"][value] = {
                    "n": len(picked) // samples,
                    "accuracy": proportion(sum(row["correct"] for row in picked), len(picked)),
                }
    return summary


def overall(per_benchmark: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [summary["accuracy"] for summary in per_benchmark.values()]
    return {
        "format_rate": proportion(sum(row["well_formed"] for row in rows), len(rows)),
        "accuracy_mean": proportion(sum(accuracies), len(accuracies)),
    }


# ---------------------------------------------------------------- the job


def _ask_teacher(cfg: EvalJob, items: list[Item], counts: dict[str, Any]) -> list[list[str]]:
    """Completions from a teacher's own backend (cached like any teacher call)."""
    from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher
    from fleming_dsl.runtime.teachers.batching import complete_batched

    teacher = make_teacher(cfg.teacher, cfg.cache_dir or f"{cfg.output}.cache", cfg.seed)
    requests = [Request(task="answer", messages=tuple(prompt_messages(item)), n=cfg.samples,
                        context={"item": item.model_dump(exclude_none=True)}) for item in items]
    try:
        responses = complete_batched(teacher, requests, f"eval {cfg.target}")
    except TeacherError as err:
        raise JobError(f"{cfg.job}: {err}") from None
    for key, value in teacher.counts().items():
        counts[key] = counts.get(key, 0) + value
    return [list(r.texts) + [""] * (cfg.samples - len(r.texts)) for r in responses]


def engine(cfg: EvalJob) -> tuple[str, int]:
    """The generation backend and tensor parallel size this machine runs the evaluation with."""
    from fleming_dsl.runtime.generation import attention_heads, fit_tensor_parallel, resolve_backend

    backend = resolve_backend(cfg.backend)
    if backend != "vllm":
        return backend, 1
    return backend, fit_tensor_parallel(cfg.tensor_parallel, attention_heads(cfg.model))


def chunk_size(cfg: EvalJob) -> int:
    """Items per resumable chunk: one transformers batch (the batches of an uninterrupted run,
    padding included), else a large call: vLLM seeds each item (any cut gives the same answers)
    and a teacher caches each answer."""
    if cfg.teacher is None and engine(cfg)[0] == "transformers":
        return cfg.batch_size
    return LARGE_CHUNK


def _generate(cfg: EvalJob, items: list[Item], counts: dict[str, Any] | None = None,
              seed: int | None = None) -> list[list[str]]:
    """Completions of one chunk; `seed` is the chunk's (transformers reseeds per call)."""
    from fleming_dsl.runtime.generation import GenerationError, generate_chat

    if cfg.teacher is not None:
        return _ask_teacher(cfg, items, counts if counts is not None else {})

    backend, tensor_parallel = engine(cfg)
    conversations = [prompt_messages(item) for item in items]
    seeds = None
    if backend == "vllm":  # the engine's sampler is shared by its calls: seed each item instead
        from fleming_dsl.runtime.teachers import Request
        from fleming_dsl.runtime.teachers.backends.local import request_seed

        seeds = [request_seed(cfg.seed, Request(task="answer", messages=tuple(c), n=cfg.samples))
                 for c in conversations]
    try:
        return generate_chat(
            cfg.model, conversations, n=cfg.samples,
            temperature=cfg.temperature, max_new_tokens=cfg.max_tokens,
            seed=cfg.seed if seed is None else seed, batch_size=cfg.batch_size, backend=backend,
            tensor_parallel=tensor_parallel, seeds=seeds)
    except GenerationError as err:
        raise JobError(f"{cfg.job}: {err}") from None
    except OSError as err:  # transformers: no such directory or hub id
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError(f"{cfg.model}: cannot load model (field 'model'): {first}") from None


def rubric_benchmark(cfg: EvalJob, bench: Benchmark) -> dict[str, Any]:
    """A rubric benchmark (HealthBench layout): free-text responses, graded criterion by criterion
    by the declared grader through the cached teacher."""
    from fleming_dsl.runtime.data import rubrics
    from fleming_dsl.runtime.teachers import Request, TeacherError, make_teacher

    if cfg.grader is None:
        raise JobError(f"benchmark {bench.name!r} is graded against rubrics: field 'grader' is missing")
    cache = cfg.cache_dir or f"{cfg.output}.cache"
    items = rubrics.load_rubric_items(bench.path)
    items = items[:cfg.limit] if cfg.limit is not None else items
    conversations = [list(item.messages) for item in items]
    try:
        if cfg.teacher is not None:  # an API or teacher model answers through its own backend
            asked = make_teacher(cfg.teacher, cache, cfg.seed).complete(
                [Request(task="answer", messages=tuple(c)) for c in conversations])
            responses = [r.texts[0] if r.texts else "" for r in asked]
        else:
            from fleming_dsl.runtime.generation import GenerationError, generate_chat

            backend, tensor_parallel = engine(cfg)
            try:
                responses = [texts[0] for texts in generate_chat(
                    cfg.model, conversations, n=1, temperature=cfg.temperature,
                    max_new_tokens=cfg.max_tokens, seed=cfg.seed, batch_size=cfg.batch_size,
                    backend=backend, tensor_parallel=tensor_parallel)]
            except GenerationError as err:
                raise JobError(f"{cfg.job}: {err}") from None
        teacher = make_teacher(cfg.grader, cache, cfg.seed)
        records = rubrics.grade(teacher, items, responses, cfg.rubric_prompt)
    except TeacherError as err:
        raise JobError(f"{cfg.job}: {err}") from None
    return {"n": len(items), "score": round(rubrics.set_score(records), 6),
            "unreadable_verdicts": sum(r["unreadable"] for r in records),
            "grader_calls": teacher.counts(), "items": [{"id": r["id"], "score": r["score"]} for r in records]}


def rubric_benchmarks(cfg: EvalJob, ctx: JobContext) -> dict[str, dict[str, Any]]:
    """Every rubric benchmark, graded whole: by the unsharded job, or by the gather of a sharded
    one (shards cut the per-item benchmarks only)."""
    results = {}
    for bench in cfg.benchmarks:
        if bench.format == "healthbench":
            with ctx.timed("rubric"):
                results[bench.name] = rubric_benchmark(cfg, bench)
    return results


def run(cfg: EvalJob, ctx: JobContext) -> None:
    with ctx.timed("load"):
        benchmarks = []  # (benchmark, item) over every benchmark, in order: the job's input
        for index, bench in enumerate(cfg.benchmarks):
            if bench.format == "healthbench":
                continue
            items = load_benchmark(bench, index)
            items = items[:cfg.limit] if cfg.limit is not None else items
            benchmarks += [(bench.name, item) for item in items]
    # the benchmark is part of the key: two benchmarks may reuse an item id
    picked = shards.positions([f"{name}/{item.id}" for name, item in benchmarks], cfg.shard)
    teacher_counts: dict[str, Any] = {}
    journal = Journal(cfg.output, fingerprint(ctx.config_sha256, ctx.inputs))
    wanted = set(picked)
    outs = {pos: out for pos, out in journal.load().items() if pos in wanted}
    if outs:
        ctx.counts["resumed_items"] = len(outs)
    with preemption.cooperative():  # the signal is taken between chunks, each one kept
        for name in dict.fromkeys(name for name, _ in benchmarks):
            positions = [pos for pos in picked if benchmarks[pos][0] == name]
            size = chunk_size(cfg)
            for number, start in enumerate(range(0, len(positions), size)):
                chunk = positions[start:start + size]
                if all(pos in outs for pos in chunk):
                    continue  # a whole chunk only: a part of one would be padded otherwise
                outs.update(_chunk(cfg, ctx, name, [(pos, benchmarks[pos][1]) for pos in chunk],
                                   cfg.seed + number, teacher_counts, journal))
                if preemption.requested():
                    raise preemption.Preempted(
                        f"stopped by SIG{preemption.PREEMPT_SIGNAL} (time limit near, or "
                        f"preempted) with {len(outs)} of {len(picked)} items done; kept in "
                        f"{journal.path} for the next run")
    ordered = sorted(outs.items())
    if cfg.shard is not None:
        shards.finish_shard(cfg, ctx, len(benchmarks), [pos for pos, _ in ordered],
                            [out for _, out in ordered], teacher_counts)
    else:
        finish(cfg, ctx, len(benchmarks), [out for _, out in ordered], teacher_counts)
    journal.remove()


def _chunk(cfg: EvalJob, ctx: JobContext, name: str, chunk: list[tuple[int, Item]], seed: int,
           teacher_counts: dict[str, Any], journal: Journal) -> dict[int, dict[str, Any]]:
    """One chunk of a benchmark's items: generated, scored and kept in the journal."""
    items = [item for _, item in chunk]
    with ctx.timed("generate"):
        completions = _generate(cfg, items, teacher_counts, seed)
    records = [(pos, {"benchmark": name, "rows": score_item(name, item, texts, cfg.accept)})
               for (pos, item), texts in zip(chunk, completions, strict=True)]
    journal.add(records)
    return dict(records)


def finish(cfg: EvalJob, ctx: JobContext, total: int, outs: list[dict[str, Any]],
           teacher_counts: dict[str, int]) -> None:
    """Score every benchmark from its items' prediction rows (the gather calls this too)."""
    rubric_results = rubric_benchmarks(cfg, ctx)
    per_benchmark: dict[str, dict[str, Any]] = {}
    all_rows: list[dict[str, Any]] = []
    n_items: dict[str, int] = {}
    for bench in cfg.benchmarks:
        if bench.format == "healthbench":
            continue
        picked = [out["rows"] for out in outs if out["benchmark"] == bench.name]
        rows = [row for item_rows in picked for row in item_rows]
        n_items[bench.name] = len(picked)
        per_benchmark[bench.name] = summarise(rows, len(picked), cfg.samples) | sampled_metrics(rows, cfg.metrics)
        all_rows += rows

    results = {
        "target": cfg.target, "model": cfg.model, "samples": cfg.samples,
        "temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "limit": cfg.limit,
        "accept": cfg.accept, "predictions": Path(predictions_path(cfg.output)).name,
        "benchmarks": per_benchmark, **overall(per_benchmark, all_rows),
    }
    if rubric_results:
        results["rubric_benchmarks"] = rubric_results
    write_jsonl(predictions_path(cfg.output), all_rows)
    write_json(cfg.output, results)

    ctx.counts.update(teacher_counts)
    ctx.counts.update(items=n_items, completions=len(all_rows),
                      extracted=sum(row["extracted"] is not None for row in all_rows),
                      well_formed=sum(row["well_formed"] for row in all_rows))
    if rubric_results:
        ctx.metrics["rubric_score"] = {name: r["score"] for name, r in rubric_results.items()}
        ctx.counts["grader_calls"] = {name: r["grader_calls"] for name, r in rubric_results.items()}
    ctx.metrics.update(accuracy={name: s["accuracy"] for name, s in per_benchmark.items()},
                       accuracy_mean=results["accuracy_mean"], format_rate=results["format_rate"])
    for metric in cfg.metrics:  # pass@k / maj@k per benchmark, as accuracy
        ctx.metrics[metric] = {name: s[metric] for name, s in per_benchmark.items() if metric in s}
