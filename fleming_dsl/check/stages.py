"""Training stages: their arguments, data selection, stop conditions and batch shapes.

The predicates (`vocabulary.batch_problem`, `vocabulary.plateau_metrics`) are shared with the
GRPO job, which still validates a hand-written job config with the same words.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleming_dsl import ir
from fleming_dsl.check.common import (
    ITEM_SOURCES,
    Checked,
    call_kw,
    entries,
    names_in,
    option,
    option_key,
)
from fleming_dsl.errors import Diagnostic, suggestion
from fleming_dsl.spec import ast
from fleming_dsl.vocabulary import (
    SFT_METRICS,
    batch_problem,
    plateau_metrics,
    smallest_batch,
    train_ranks,
)

# ---------------------------------------------------------------- rules over the AST


def _stages(c: Checked) -> Iterator[ast.StageDecl]:
    return (d for d in c.program.decls if isinstance(d, ast.StageDecl))


def stage_arguments(c: Checked) -> Iterator[Diagnostic]:
    """sft(init, data) / grpo(init, data): the init is a name, the data a name, name[buckets] or
    mine_hard(...); anything else (`grpo(true, ...)`) has no meaning."""
    for d in _stages(c):
        args = d.method.args
        if args and not isinstance(args[0], ast.Name):
            yield Diagnostic(f"the init model of stage {d.name.name} must be the name of a model or "
                             "an earlier stage", args[0].span,
                             hint=f"{d.method.func.name}(base, data) starts from model 'base'")
        if len(args) > 1 and not isinstance(args[1], (ast.Name, ast.Index, ast.Call)):
            yield Diagnostic(f"the data of stage {d.name.name} must be a dataset, dataset[easy, moderate] "
                             "or mine_hard(pool, pass < 0.5)", args[1].span)


def buckets_need_difficulty(c: Checked) -> Iterator[Diagnostic]:
    """`clean[easy]` only selects items when `clean` is a filter with a difficulty step."""
    for decl in _stages(c):
        if len(decl.method.args) < 2:
            continue
        data = decl.method.args[1]
        if not isinstance(data, ast.Index):
            continue
        source = c.by_name.get(data.base.name)
        if source is None or source.kind not in ITEM_SOURCES:
            continue  # undefined_names / wrong_kinds report it
        graded = isinstance(source, ast.FilterDecl) and entries(source.block, ir.DIFFICULTY)
        if not graded:
            yield Diagnostic(f"'{data.base.name}' has no difficulty buckets: only a filter with a "
                             "difficulty step has easy/moderate/hard items", data.span,
                             hint=f"train on {data.base.name} itself, or add difficulty(...) to a filter")


def _rubric_data(c: Checked, name: ast.Name) -> bool:
    """Whether `name` is a HealthBench-format dataset: prompts graded by rubrics, no right option."""
    source = c.by_name.get(name.name)
    return isinstance(source, ast.DatasetDecl) and source.source.func.name == "healthbench"


def _reward_terms(value: ast.Value | None) -> list[ast.Name]:
    if isinstance(value, ast.Name):
        return [value]
    return [t.reward for t in value.terms] if isinstance(value, ast.Sum) else []


def rubric_data_is_graded(c: Checked) -> Iterator[Diagnostic]:
    """A stage may train on HealthBench-format data only as GRPO graded by a rubric() reward:
    its rows have a conversation and criteria, no right option (choice_match, mining, buckets)
    and no worked answer (sft)."""
    for d in _stages(c):
        if len(d.method.args) < 2:
            continue
        data = d.method.args[1]
        if isinstance(data, ast.Call) and data.func.name == "mine_hard" and data.args \
                and isinstance(data.args[0], ast.Name) and _rubric_data(c, data.args[0]):
            yield Diagnostic(f"mine_hard() mines items by whether the policy picks the right option; "
                             f"'{data.args[0].name}' is rubric-graded data (healthbench) with no options",
                             data.args[0].span, hint=f"train on it directly: grpo(..., {data.args[0].name})")
            continue
        if not isinstance(data, ast.Name) or not _rubric_data(c, data):
            continue  # buckets_need_difficulty reports `hb[easy]`
        if d.method.func.name == "sft":
            yield Diagnostic(f"stage {d.name.name} cannot fine-tune on '{data.name}': rubric-graded data "
                             "(healthbench) has no reference answers to imitate", data.span,
                             hint="train a grpo stage on it with a rubric() reward")
            continue
        terms = [(name, c.by_name.get(name.name)) for name in _reward_terms(option(d.block, "rewards"))]
        terms = [(name, r) for name, r in terms if isinstance(r, ast.RewardDecl)]
        for name, reward in terms:
            if reward.function.func.name == "choice_match":
                yield Diagnostic(f"reward '{name.name}' is choice_match(), which needs a right option, but "
                                 f"stage {d.name.name} trains on '{data.name}', rubric-graded data "
                                 "(healthbench) with no options", name.span,
                                 hint="grade it with a rubric() reward: reward graded = rubric(grader = judge)")
        if terms and not any(r.function.func.name == "rubric" for _, r in terms):
            yield Diagnostic(f"stage {d.name.name} trains on '{data.name}', rubric-graded data "
                             "(healthbench), but none of its rewards is rubric()", data.span,
                             hint="add reward graded = rubric(grader = judge) to its rewards")



def _item_inputs(c: Checked) -> Iterator[tuple[ast.Name, str]]:
    """Every dataset name that a data job reads as multiple-choice items, with what reads it."""
    for d in c.program.decls:
        if isinstance(d, ast.DistillDecl):
            yield from ((s, f"distill {d.name.name}") for s in d.sources)
        elif isinstance(d, ast.FilterDecl):
            yield d.source, f"filter {d.name.name}"
            for e in entries(d.block, ir.DECONTAMINATE):
                yield from ((n, f"the decontaminate step of filter {d.name.name}")
                            for n in names_in(call_kw(e.call, "against")) if e.call is not None)


def rubric_data_feeds_no_data_job(c: Checked) -> Iterator[Diagnostic]:
    """HealthBench-format rows (a conversation and criteria) are read only by evaluate and by a
    rubric-graded grpo stage; the data jobs read multiple-choice items and would fail at run time."""
    for name, reader in _item_inputs(c):
        if _rubric_data(c, name):
            yield Diagnostic(f"{reader} reads multiple-choice items; '{name.name}' is rubric-graded "
                             "data (healthbench) with no options", name.span,
                             hint="evaluate on it, or train a grpo stage on it with a rubric() reward")

def _sweeps(block: ast.Block | None) -> list[ast.SweepItem]:
    return [i for i in (block.items if block else ()) if isinstance(i, ast.SweepItem)]


def sweep_or_option(c: Checked) -> Iterator[Diagnostic]:
    """`lr = 1e-5` and `sweep lr in [...]` in one stage: one of them would silently lose."""
    for d in _stages(c):
        for sweep in _sweeps(d.block):
            key = option_key(d.block, sweep.key.name)
            if key is not None:
                yield Diagnostic(f"'{sweep.key.name}' is both set and swept in stage {d.name.name}",
                                 key.span, hint=f"drop '{sweep.key.name} = ...' or add its value "
                                                f"to the sweep at line {sweep.span.line}")


def _written(d: ast.StageDecl, key: str) -> bool:
    return option(d.block, key) is not None or any(s.key.name == key for s in _sweeps(d.block))


def _reward_names(value: ast.Value | None) -> list[str]:
    if isinstance(value, ast.Name):
        return [value.name]
    if isinstance(value, ast.Sum):
        return [t.reward.name for t in value.terms]
    return []


def plateau_is_logged(c: Checked) -> Iterator[Diagnostic]:
    """`until = plateau(metric)` watches a metric the stage logs: a GRPO stage's rewards, an SFT
    stage's loss."""
    for d in _stages(c):
        until = option(d.block, "until")
        if not isinstance(until, ast.Call) or until.func.name != "plateau":
            continue  # lowering reports a malformed `until`
        metric = until.args[0] if until.args else next(
            (kw.value for kw in until.kwargs if kw.key.name == "metric"), None)
        sft = d.method.func.name == "sft"
        if metric is None and sft:  # the IR's default metric is GRPO's reward
            yield Diagnostic(f"stage {d.name.name} is sft: its plateau watches the loss",
                             until.span, hint="write until = plateau(loss, patience = N)")
            continue
        if not isinstance(metric, ast.Name):
            continue
        allowed = list(SFT_METRICS) if sft else plateau_metrics(_reward_names(option(d.block, "rewards")))
        if metric.name not in allowed:
            yield Diagnostic(f"stage {d.name.name} does not log a metric '{metric.name}'", metric.span,
                             expected="one of " + ", ".join(allowed),
                             **suggestion(metric.name, allowed, metric.span))


def miner_has_max_steps(c: Checked) -> Iterator[Diagnostic]:
    """Hard-sample mining runs rounds of `refresh` steps up to max_steps: without max_steps it has
    no end."""
    for d in _stages(c):
        data = d.method.args[1] if len(d.method.args) > 1 else None
        if isinstance(data, ast.Call) and data.func.name == "mine_hard" and d.method.func.name == "grpo" \
                and not _written(d, "max_steps"):
            yield Diagnostic(f"stage {d.name.name} mines hard samples but sets no max_steps", data.span,
                             hint="add max_steps = N: mining re-estimates pass rates every refresh "
                                  "steps until max_steps")


def verify_label_has_judge(c: Checked) -> Iterator[Diagnostic]:
    """verify_label without model = ... asks the nearest teacher upstream; there must be one."""
    known: dict[str, bool] = {}  # every filter on a walked chain has the chain's answer

    def upstream_teacher(name: str) -> bool:
        seen: dict[str, None] = {}  # a filter chain is walked in a loop: it may be 100,000 long
        while name not in known:
            decl = c.by_name.get(name)
            if isinstance(decl, ast.FilterDecl) and name not in seen:
                seen[name] = None
                name = decl.source.name
                continue
            # undefined names are reported elsewhere; a loop of filters has no teacher
            known[name] = isinstance(decl, (ast.DistillDecl, ast.SynthesizeDecl)) or decl is None
        for link in seen:
            known[link] = known[name]
        return known[name]

    for d in c.program.decls:
        if not isinstance(d, ast.FilterDecl):
            continue
        for step in entries(d.block, ir.VERIFY_LABEL):
            has_model = step.call is not None and any(kw.key.name == "model" for kw in step.call.kwargs)
            if not has_model and not upstream_teacher(d.source.name):
                yield Diagnostic(f"verify_label in filter {d.name.name} has no judge: no distill or "
                                 "synthesize teacher is upstream of it", step.name.span,
                                 hint="name one: verify_label(model = teacher, votes = 5)")


# ---------------------------------------------------------------- rules over the IR


def batch_fits_generations(c: Checked) -> Iterator[Diagnostic]:
    """Every GRPO stage (every sweep point) has a batch TRL can split into whole groups over all
    its ranks (written values are judged before lowering by `multirank`; this sees swept ones)."""
    assert c.experiment is not None
    reported: set[tuple] = set()
    for stage in c.experiment.stages:
        if stage.method != "grpo":
            continue
        t, res = stage.training, stage.resources
        ranks = train_ranks(t, res)  # a vLLM server's GPUs train nothing
        problem = batch_problem(t.batch_size, t.grad_accum, t.generations, ranks)
        decl = c.decl_at(stage.span)
        if problem is None or (stage.span, problem) in reported:
            continue
        reported.add((stage.span, problem))
        block = decl.block if isinstance(decl, ast.StageDecl) else None
        key = option_key(block, "generations") or option_key(block, "batch")
        name = decl.name.name if decl is not None else stage.name
        yield Diagnostic(f"stage {name}: {problem}", key.span if key else stage.span,
                         hint="TRL's GRPO splits each generation batch over all ranks in whole groups "
                              f"of generations; use batch = "
                              f"{smallest_batch(t.batch_size, t.grad_accum, ranks, t.generations)}")


batch_fits_generations.after_lowering = True  # type: ignore[attr-defined]
