"""The domain's words and limits, shared by the checker, the planner, the emitter and the jobs.

What a job validates again at run time (a hand-written job config, a value a template computes)
is worded once here, so `fleming check` and the job say the same thing; what several layers need
to agree on (a vLLM server's share of a stage, the graph files' columns, the variables a step's
prompt is rendered with) is defined once here. A leaf: it imports only the IR, never `check/`,
`lower/` or `plan/` (tests/unit/test_layering.py), so a job importing it loads no checker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from fleming_dsl import ir

MAX_COUNT = 100_000_000  # paths per sample job: past this a job runs for days or never ends
MAX_PROMPT_CHARS = 1_000_000  # one prompt's text: far above any model's context
MAX_TEMPLATE_INT_BITS = 1 << 16  # a number a prompt computes (about 20,000 digits): no prompt needs more

# dataset format -> the row field a `split` selects on (`split = "health"` keeps MMLU-Pro rows
# whose `category` is "health", case-insensitive)
SPLIT_FIELDS = {"mmlu_pro": "category", "mmlu": "subject", "medmcqa": "subject_name",
                "medqa": "meta_info"}


def hops_problem(steps: int, hops_min: int, hops_max: int) -> tuple[str, str] | None:
    """(why, hint) when walks of hops_min..hops_max hops cannot follow a metapath of `steps`
    steps as written, or None. A metapath is walked as written, so the longest walk is the path's
    own length; with no steps (any relation) any length goes, and hops_min > hops_max is judged
    where the range is read."""
    if steps < 1 or hops_min > hops_max or hops_max <= steps:
        return None
    fit = f"{min(hops_min, steps)}..{steps}" if min(hops_min, steps) < steps else f"{steps}"
    return (f"'hops' goes up to {hops_max}, but the metapath has {steps} "
            f"step{'s' if steps != 1 else ''}: a metapath is walked as written",
            f"write hops = {fit}, or write a longer path out step by step")


def batch_problem(batch_size: int, grad_accum: int, generations: int, ranks: int = 1) -> str | None:
    """Why TRL's GRPO cannot use this batch shape, or None: the rollouts of one generation batch,
    over all ranks, must be whole groups of `generations`."""
    total = batch_size * grad_accum * ranks
    if total % generations:
        return (f"batch x grad_accum x ranks = {batch_size} x {grad_accum} x {ranks} = {total} "
                f"is not a multiple of generations ({generations})")
    return None


def smallest_batch(batch: int, grad_accum: int, ranks: int, generations: int) -> int:
    """The smallest per-device batch >= `batch` whose global generation batch fits whole groups."""
    # candidate * grad_accum * ranks is a multiple of generations exactly when candidate is a
    # multiple of `step`: a closed form, since counting up takes forever on a huge `generations`
    step = generations // math.gcd(grad_accum * ranks, generations)
    return -(-max(batch, 1) // step) * step


# ---------------------------------------------------------------- a vLLM server's share of a stage


@dataclass(frozen=True)
class ServerSplit:
    """A server-mode stage's allocation: the server's share, and what is left for training."""

    server_nodes: int  # whole nodes given to the server (0: it shares node 0 with training)
    server_gpus: int  # GPUs the server uses (tensor x data parallel)
    train_nodes: int
    train_gpus: int  # per training node

    @property
    def train_ranks(self) -> int:
        return self.train_nodes * max(self.train_gpus, 1)


class Rollout(Protocol):
    """The rollout options of an `ir.Training` (a GRPO job config holds one as `training`)."""

    use_vllm: bool
    vllm_mode: str
    vllm_server_base_url: str | None
    vllm_tensor_parallel_size: int
    vllm_data_parallel_size: int


def starts_server(t: Rollout) -> bool:
    """Whether the stage starts its own vLLM server (server mode without an external URL)."""
    return t.use_vllm and t.vllm_mode == "server" and t.vllm_server_base_url is None


def server_split(t: Rollout, res: ir.Resources) -> ServerSplit | str:
    """The split of the allocation, or why it cannot be split."""
    need = t.vllm_tensor_parallel_size * t.vllm_data_parallel_size
    if res.nodes == 1:
        if res.gpus == 0:  # a CPU machine: server and trainer share it (the tests' layout)
            return ServerSplit(0, 0, 1, 0)
        if need >= res.gpus:
            return (f"the vLLM server takes vllm_tensor_parallel_size x vllm_data_parallel_size = {need} "
                    f"GPU(s) and training needs at least one more, but the stage declares gpus = {res.gpus} "
                    "on one node")
        return ServerSplit(0, need, 1, res.gpus - need)
    server_nodes = math.ceil(need / max(res.gpus, 1))
    if server_nodes >= res.nodes:
        return (f"the vLLM server takes {server_nodes} of the stage's {res.nodes} nodes "
                f"({need} GPU(s) at gpus = {res.gpus} per node), leaving none for training")
    return ServerSplit(server_nodes, need, res.nodes - server_nodes, res.gpus)


def train_ranks(t: Rollout, res: ir.Resources) -> int:
    """Training processes: every GPU of the allocation, less a server's."""
    split = server_split(t, res) if starts_server(t) else None
    return split.train_ranks if isinstance(split, ServerSplit) else res.nodes * max(res.gpus, 1)


def plateau_metrics(reward_names: list[str] | tuple[str, ...]) -> list[str]:
    """What a GRPO stage logs per step, so what `until = plateau(<metric>)` may watch: the total
    reward, each reward term by its name, and the reward per difficulty bucket."""
    return ["reward", *reward_names, *(f"bucket/{b}" for b in ir.BUCKETS)]


SFT_METRICS = ("loss",)  # what an SFT stage logs per logging step (lower is better)


_PERCENT_WIDTHS = re.compile(r"%[-#0 +]*(\d*|\*)(?:\.(\d*|\*))?")


def template_operation_problem(operator: str, left: object, right: object) -> str | None:
    """Why a prompt template's `left <operator> right` is refused, or None: the operations whose
    cost grows with the numbers written (a power, a repetition, a %-format width) are judged
    before they run, as one such step in C cannot be interrupted (`9 ** (9 ** 9)` runs for
    minutes, `"a" * 10 ** 12` fills the memory). Both `fleming check` (on constants) and the
    job's sandbox (on every value) ask this."""
    if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        bits = right * abs(left).bit_length()
        if bits > MAX_TEMPLATE_INT_BITS:
            return f"{left} ** {right} is a number of about {bits:,} bits"
    if operator == "*":
        if _is_int(left) and _is_int(right):
            if left.bit_length() + right.bit_length() > MAX_TEMPLATE_INT_BITS:
                return "a product of numbers larger than a prompt needs"
            return None
        seq, times = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
        if isinstance(seq, (str, list, tuple)) and _is_int(times) and len(seq) * times > MAX_PROMPT_CHARS:
            return f"{len(seq):,} characters or items repeated {times:,} times, longer than a prompt"
    if operator == "%" and isinstance(left, str):
        values = right if isinstance(right, tuple) else (right,)
        for match in _PERCENT_WIDTHS.finditer(left):
            widths = [int(g) for g in match.groups() if g and g != "*"]
            if "*" in match.groups():
                widths += [v for v in values if _is_int(v)]
            if any(abs(w) > MAX_PROMPT_CHARS for w in widths):
                return "a %-format width longer than a prompt"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def template_filter_problem(name: str, args: tuple, value: object = None) -> str | None:
    """Why a filter call is refused, or None: a number argument past the length of a prompt
    (`"a"|center(10 ** 9)` builds a gigabyte in one step of C), or, for `format` (which is
    `value % args`), a %-format width past it."""
    big = next((a for a in args if _is_int(a) and abs(a) > MAX_PROMPT_CHARS), None)
    if big is not None:
        return f"filter '{name}' given {big:,}, longer than a prompt"
    if name == "format" and isinstance(value, str):
        return template_operation_problem("%", value, args)
    return None


_DIGITS = re.compile(r"\d+")


def format_spec_problem(spec: str) -> str | None:
    """Why a `str.format` field's spec is refused, or None: a width or precision past the length
    of a prompt (`"{:>999999999}".format(x)` builds a gigabyte in one step of C). Every number in
    a spec is a width or a precision but a digit used as the fill character, which is one digit."""
    if any(len(n) > len(str(MAX_PROMPT_CHARS)) or int(n) > MAX_PROMPT_CHARS
           for n in _DIGITS.findall(spec)):
        return "a format width or precision longer than a prompt"
    return None


# what a rubric prompt is rendered with (runtime/data/rubrics.py `grading_request`): always the
# first four; a multiple-choice item graded by a rubric() reward adds the last three
RUBRIC_VARIABLES = ("conversation", "response", "criterion", "points", "answer", "answer_text", "options")

REVERSED = ":rev"  # a relation walked against its written direction: `-["CtD:rev"]->`


def stored_reverse(fmt: str, relation: str, same_type: bool) -> str:
    """The relation name a graph loader files a fact's reverse edge under, so a metapath walks a
    relation the way the file writes it unless it names the reverse (`CtD:rev`). A Hetionet
    metaedge between nodes of one kind that is not directed (`GiG`, gene interacts gene) reads
    the same both ways and keeps its name. PrimeKG ships both directions as rows itself, so its
    loader adds none."""
    if fmt == "hetionet" and same_type and not any(c in relation for c in "<>"):
        return relation
    return relation + REVERSED


# ---------------------------------------------------------------- what data files and prompts hold

# graph format -> the header of each of its files, in the order the spec names them (triples:
# the header line is optional, but every line has these fields)
GRAPH_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "primekg": (("relation", "display_relation", "x_index", "x_id", "x_type", "x_name",
                 "x_source", "y_index", "y_id", "y_type", "y_name", "y_source"),),
    "hetionet": (("id", "name", "kind"), ("source", "metaedge", "target")),
    "triples": (("head", "head_type", "relation", "tail", "tail_type"),),
}

# step -> the variables its job renders the step's prompt with (the jobs pass exactly these, so
# `fleming check` can name a template's undefined variable before anything runs)
PROMPT_VARIABLES: dict[str, tuple[str, ...]] = {
    "synthesize": ("facts", "clues", "all_facts", "answer", "answer_type", "hops"),
    "distill": ("question", "options", "answer", "answer_text", "facts", "strategy", "previous"),
    "difficulty": ("question", "options", "answer", "answer_text"),
    # distill { protocol = search }: no label, the chain so far instead of the last attempt
    "search": ("question", "options", "facts", "strategy", "chain"),
    # distill { rewrite = ... }: the whole search and the option it ended on
    "rewrite": ("question", "options", "chain", "said"),
}
# step -> the macros its prompt must define when the teacher is the template verbaliser (it
# answers with the prompt's own macro: runtime/teachers/backends/template.py)
TEMPLATE_TEACHER_MACROS: dict[str, tuple[str, ...]] = {"synthesize": ("stem",)}


def prompt_variables(step: str, available: dict) -> dict:
    """The variables a step's prompt is rendered with, picked from what the job computed."""
    return {name: available[name] for name in PROMPT_VARIABLES[step]}


OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # JMED has up to 21 options: A..U


def option_table(value, name: str = "options") -> dict[str, str]:
    """A row's options as {letter: text}, from an object of letters or a list; ValueError says
    what is wrong."""
    if isinstance(value, dict):
        options = {str(k).strip(): str(v).strip() for k, v in value.items()}
        if any(k not in OPTION_LETTERS or len(k) != 1 for k in options):
            raise ValueError(f"field '{name}' keys must be letters A..Z, got {sorted(options)}")
        return dict(sorted(options.items()))
    if isinstance(value, list):
        if len(value) > len(OPTION_LETTERS):
            raise ValueError(f"field '{name}' has {len(value)} options, at most {len(OPTION_LETTERS)}")
        return {OPTION_LETTERS[i]: str(v).strip() for i, v in enumerate(value)}
    raise ValueError(f"field '{name}' must be an object of letters or a list")


def answer_letter(value, options: dict[str, str], name: str, base: int = 0) -> str:
    """The answer as a letter, from a letter or an index counted from `base`; ValueError says
    what is wrong (an option's text where its letter belongs, most often)."""
    if isinstance(value, bool):
        raise ValueError(f"field '{name}' must be a letter or an index, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value) - base
        if not 0 <= index < len(options):
            raise ValueError(f"field '{name}' is {value}, outside the {len(options)} options")
        return list(options)[index]
    letter = str(value).strip().strip("()").upper()
    if letter not in options:
        raise ValueError(f"field '{name}' is {value!r}, not one of the option letters "
                         f"{''.join(options)}")
    return letter
