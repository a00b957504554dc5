"""Teachers: disk cache, template oracle, OpenAI-compatible HTTP with retries, local backends,
and the sandboxed prompt renderer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from paths import REPO

from fleming_dsl.ir import Backend
from fleming_dsl.plan.jobconfig import Generator
from fleming_dsl.runtime.prompting import PromptError, call_macro, render
from fleming_dsl.runtime.teachers import (
    CachedTeacher,
    Request,
    TeacherError,
    make_teacher,
)
from fleming_dsl.runtime.teachers.backends.local import generate_grouped, request_seed
from fleming_dsl.runtime.teachers.backends.openai import (
    OpenAIBackend,
    backoff_delay,
    completion_texts,
)
from fleming_dsl.runtime.teachers.backends.template import grade_item, oracle_letter
from fleming_dsl.runtime.teachers.backends.transformers import TransformersBackend
from fleming_dsl.runtime.teachers.backends.vllm import VllmBackend
from fleming_dsl.runtime.teachers.cache import DiskCache


def ask(text: str, n: int = 1) -> Request:
    return Request(task="answer", messages=({"role": "user", "content": text},), n=n)


class CountingBackend:
    def __init__(self) -> None:
        self.seen: list[Request] = []

    def identity(self):
        return {"backend": "counting", "model": "m", "params": {"temperature": 0.0}}

    def key_extra(self, request):
        return {}

    def generate(self, requests):
        self.seen += requests
        return [[f"<answer>A</answer> {r.messages[0]['content']}"] * r.n for r in requests]


# ---------------------------------------------------------------- cache


def test_second_pass_makes_no_calls_and_returns_the_same_texts(tmp_path):
    backend = CountingBackend()
    first = CachedTeacher(backend, DiskCache(tmp_path))
    answers = first.complete([ask("q1"), ask("q2", n=2), ask("q1")])
    assert first.counts() == {"teacher_calls": 3, "cache_hits": 0}
    again = CachedTeacher(backend, DiskCache(tmp_path))  # a resumed job: fresh process state
    replay = again.complete([ask("q1"), ask("q2", n=2)])
    assert again.counts() == {"teacher_calls": 0, "cache_hits": 2}
    assert [r.texts for r in replay] == [answers[0].texts, answers[1].texts]
    assert all(r.cached for r in replay) and len(backend.seen) == 3


def test_key_covers_model_params_and_prompt(tmp_path):
    backend = CountingBackend()
    teacher = CachedTeacher(backend, DiskCache(tmp_path))
    teacher.complete([ask("q")])
    teacher.complete([ask("q", n=3)])  # different n: a different call
    backend.identity = lambda: {"backend": "counting", "model": "m", "params": {"temperature": 1}}
    teacher.complete([ask("q")])  # different params: a different call
    assert teacher.counts() == {"teacher_calls": 3, "cache_hits": 0}


def test_torn_cache_entry_is_a_miss(tmp_path):
    teacher = CachedTeacher(CountingBackend(), DiskCache(tmp_path))
    teacher.complete([ask("q")])
    (entry,) = tmp_path.rglob("*.json")
    entry.write_text("{not json")
    teacher.complete([ask("q")])
    assert teacher.counts() == {"teacher_calls": 2, "cache_hits": 0}


def test_an_entry_holding_another_keys_answer_is_not_served(tmp_path):
    """A cache file overwritten with another request's valid entry is a miss (issue 11)."""
    teacher = CachedTeacher(CountingBackend(), DiskCache(tmp_path))
    teacher.complete([ask("q1"), ask("q2")])
    first, second = sorted(tmp_path.rglob("*.json"))
    first.write_text(second.read_text())  # a valid entry, but for the other key
    replay = teacher.complete([ask("q1"), ask("q2")])
    assert teacher.counts() == {"teacher_calls": 3, "cache_hits": 1}
    assert [r.texts for r in replay] == [["<answer>A</answer> q1"], ["<answer>A</answer> q2"]]


def test_a_model_folder_enters_the_key_by_its_content(tmp_path):
    """A retrained stage at the same path is another model: its answers are not the old ones."""
    from fleming_dsl.ir import Backend
    from fleming_dsl.runtime.teachers.backends.local import sampling_identity

    model = tmp_path / "stages" / "cold_start"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"old weights")
    settings = Backend(kind="transformers")
    before = sampling_identity(str(model), settings, 0, "transformers")
    (model / "model.safetensors").write_bytes(b"retrained weights")
    after = sampling_identity(str(model), settings, 0, "transformers")
    assert before["model"] == after["model"] and before["model_sha256"] != after["model_sha256"]
    assert "model_sha256" not in sampling_identity("Qwen/Qwen2.5-7B", settings, 0, "vllm")


def _hammer(directory: str, worker: int) -> None:
    """One writer process: the same 40 keys as every other writer, its own answers."""
    from fleming_dsl.runtime.teachers.cache import cache_key

    cache = DiskCache(directory)
    for n in range(40):
        cache.put(cache_key({"n": n}), [f"answer {n} from {worker}"], {"n": n})


def test_concurrent_writers_leave_only_whole_entries(tmp_path):
    """Shards share the cache: several processes writing the same keys at once never leave a
    torn entry or a temp file, and every key reads back as one writer's whole answer."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    cache = DiskCache(tmp_path)
    from fleming_dsl.runtime.teachers.cache import cache_key

    answers = [cache.get(cache_key({"n": n})) for n in range(40)]
    assert all(a is not None and a[0].startswith(f"answer {n} from ")
               for n, a in enumerate(answers))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".tmp"]


def test_empty_answers_are_not_cached(tmp_path):
    class Empty(CountingBackend):
        def generate(self, requests):
            return [[""] for _ in requests]

    teacher = CachedTeacher(Empty(), DiskCache(tmp_path))
    teacher.complete([ask("q")])
    teacher.complete([ask("q")])
    assert teacher.counts()["teacher_calls"] == 2


# ---------------------------------------------------------------- template teacher

ITEM = {"id": "x", "question": "Which disease presents with polyuria?",
        "options": {"A": "asthma", "B": "type 2 diabetes mellitus", "C": "gout"}, "answer": "B",
        "provenance": {"answer": "type 2 diabetes mellitus", "mask_index": 0,
                       "relations": ["disease_phenotype_positive"],
                       "path": [{"node": "type 2 diabetes mellitus", "type": "disease"},
                                {"node": "polyuria", "type": "effect/phenotype"}]}}


def test_template_judge_answers_from_provenance_not_the_label():
    assert oracle_letter(ITEM) == "B"
    assert oracle_letter({**ITEM, "answer": "C"}) == "B"  # a corrupted label is caught
    assert oracle_letter({**ITEM, "provenance": {}, "answer": "C"}) == "C"


def test_template_grader_rubric():
    assert grade_item(ITEM) == "easy"
    rare = {**ITEM, "provenance": {**ITEM["provenance"], "answer_count": 3}}
    assert grade_item(rare) == "moderate"
    two_hops = {**ITEM, "provenance": {**ITEM["provenance"], "relations": ["a", "b"],
                                       "answer_count": 1}}
    assert grade_item(two_hops) == "hard"  # an extra hop and a rare answer
    assert grade_item({**ITEM, "provenance": {}, "question": " ".join(["word"] * 30)}) == "hard"


def test_template_teacher_writes_short_rationale_with_the_answer(tmp_path):
    teacher = make_teacher(Generator(model="", backend=Backend(kind="template")), str(tmp_path), 0)
    (response,) = teacher.complete([Request(task="reason", messages=(), context={"item": ITEM})])
    text = response.texts[0]
    # the entity first, then its option
    assert text == ("<think>The findings point to type 2 diabetes mellitus; "
                    "type 2 diabetes mellitus is option B.</think><answer>B</answer>")
    assert len(text.split()) <= 40


def test_template_teacher_answers_with_the_option_text_when_the_prompt_says_so(tmp_path):
    teacher = make_teacher(Generator(model="", backend=Backend(kind="template")), str(tmp_path), 0)
    variables = {"question": ITEM["question"], "options": ITEM["options"], "answer": "B",
                 "answer_text": ITEM["options"]["B"], "facts": [], "strategy": None, "previous": ""}
    context = {"item": ITEM, "template": str(REPO / "prompts/reason_text.j2"),
               "variables": variables}
    (response,) = teacher.complete([Request(task="reason", messages=(), context=context)])
    assert response.texts[0].endswith("option B.</think><answer>type 2 diabetes mellitus</answer>")
    plain = {**context, "template": str(REPO / "prompts/reason.j2")}
    (response,) = teacher.complete([Request(task="reason", messages=(), context=plain)])
    assert response.texts[0].endswith("</think><answer>B</answer>")


# ---------------------------------------------------------------- openai-compatible HTTP


class FlakyEndpoint(BaseHTTPRequestHandler):
    """Fails `failures` times with 503, then answers like /v1/chat/completions."""

    failures = 2
    hits: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).hits.append({"auth": self.headers.get("Authorization"), "body": body})
        if len(type(self).hits) <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        answer = {"choices": [{"message": {"content": f"echo {body['messages'][-1]['content']}"}}
                              for _ in range(body["n"])]}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    FlakyEndpoint.hits = []
    FlakyEndpoint.failures = 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def openai_settings(url: str, **extra) -> Backend:
    return Backend(kind="openai", base_url=url, api_key_env="FLM_TEST_KEY", temperature=0.2,
                   max_tokens=32, timeout_s=5, retries=extra.pop("retries", 3), concurrency=2,
                   **extra)


def test_openai_retries_503_then_answers_and_caches(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("FLM_TEST_KEY", "sk-test")
    sleeps: list[float] = []
    backend = OpenAIBackend("gpt-test", openai_settings(endpoint), seed=5, sleep=sleeps.append,
                            backoff_base_s=0.01)
    teacher = CachedTeacher(backend, DiskCache(tmp_path))
    (response,) = teacher.complete([ask("hello", n=2)])
    assert response.texts == ["echo hello", "echo hello"]
    assert backend.attempts == 3 and len(sleeps) == 2
    hit = FlakyEndpoint.hits[-1]
    assert hit["auth"] == "Bearer sk-test"
    assert hit["body"] == {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}],
                           "n": 2, "temperature": 0.2, "top_p": 1.0, "max_tokens": 32, "seed": 5}
    teacher.complete([ask("hello", n=2)])
    assert len(FlakyEndpoint.hits) == 3 and teacher.counts() == {"teacher_calls": 1,
                                                                 "cache_hits": 1}


def test_openai_gives_up_after_retries_with_one_line(endpoint, monkeypatch):
    monkeypatch.setenv("FLM_TEST_KEY", "sk-test")
    FlakyEndpoint.failures = 100
    backend = OpenAIBackend("m", openai_settings(endpoint, retries=1), seed=0,
                            sleep=lambda s: None)
    with pytest.raises(TeacherError) as err:
        backend.generate([ask("q")])
    assert str(err.value) == f"{endpoint}/chat/completions: no answer after 2 attempts (HTTP 503)"


def test_openai_missing_key_is_a_clear_error(endpoint, monkeypatch):
    monkeypatch.delenv("FLM_TEST_KEY", raising=False)
    backend = OpenAIBackend("m", openai_settings(endpoint), seed=0)
    with pytest.raises(TeacherError, match="^openai teacher: environment variable FLM_TEST_KEY "
                                           "is not set$"):
        backend.generate([ask("q")])


def test_malformed_body_becomes_empty_answers_and_backoff_is_bounded():
    assert completion_texts(b"<html>oops</html>", 2) == ["", ""]
    assert completion_texts(b'{"choices": [{"message": {"content": "x"}}]}', 2) == ["x", ""]
    import random

    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(10)]
    assert all(0 <= d <= min(8.0, 2 ** a) for a, d in enumerate(delays))


# ---------------------------------------------------------------- local backends (CPU)


def test_local_backend_batches_by_n_and_keeps_order():
    calls = []

    def fake(conversations, n, seeds):
        calls.append((len(conversations), n))
        return [[f"{c[0]['content']}#{i}" for i in range(n)] for c in conversations]

    out = generate_grouped([ask("a"), ask("b", n=2), ask("c")], fake)
    assert out == [["a#0"], ["b#0", "b#1"], ["c#0"]]
    assert sorted(calls) == [(1, 2), (2, 1)]


def test_each_request_is_seeded_by_what_it_asks_not_by_its_batch():
    seen: dict[str, int] = {}

    def fake(conversations, n, seeds):
        for conv, seed in zip(conversations, seeds):
            seen.setdefault(conv[0]["content"], seed)
            assert seen[conv[0]["content"]] == seed  # the same request, the same seed
        return [["x"] * n for _ in conversations]

    generate_grouped([ask("a"), ask("b"), ask("c")], fake, seed=5)
    generate_grouped([ask("c"), ask("a")], fake, seed=5)  # another cut, another order
    assert len(set(seen.values())) == 3
    assert request_seed(5, ask("a")) != request_seed(6, ask("a"))


def test_vllm_request_is_built_without_vllm():
    settings = Backend(kind="vllm", temperature=0.6, top_p=0.9, max_tokens=64, tensor_parallel=8)
    backend = VllmBackend("org/teacher-7b", settings, seed=11)
    request = backend.build_request([ask("q1"), ask("q2")], n=4)
    assert request.llm_kwargs == {"model": "org/teacher-7b", "tensor_parallel_size": 8, "seed": 11}
    assert request.sampling_kwargs["n"] == 4 and request.sampling_kwargs["max_tokens"] == 64
    assert request.sampling_kwargs["temperature"] == 0.6 and request.sampling_kwargs["top_p"] == 0.9
    assert request.conversations == [[{"role": "user", "content": "q1"}],
                                     [{"role": "user", "content": "q2"}]]
    assert backend.identity()["backend"] == "vllm"
    assert TransformersBackend("m", settings, 1).identity()["backend"] == "transformers"


# ---------------------------------------------------------------- prompts


def test_sandbox_blocks_dunder_access(tmp_path):
    bad = tmp_path / "evil.j2"
    bad.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(PromptError) as err:
        render(str(bad))
    assert str(err.value) == (f"{bad}: template blocked by the sandbox: access to attribute "
                              "'__class__' of 'str' object is unsafe.")


def test_undefined_variable_and_missing_file(tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("Hello {{ nmae }}")
    with pytest.raises(PromptError, match=r"t\.j2: template uses an undefined variable: "
                                          r"'nmae' is undefined$"):
        render(str(template), name="x")
    with pytest.raises(PromptError, match=r"nope\.j2: prompt template not found$"):
        render(str(tmp_path / "nope.j2"))
    broken = tmp_path / "b.j2"
    broken.write_text("line one\n{% if %}")
    with pytest.raises(PromptError, match=r"b\.j2:2: template syntax error"):
        render(str(broken))


def test_question_template_stem_macro():
    facts = {"facts": [], "clues": ["presents with polyuria"], "all_facts": ["x presents with polyuria"],
             "answer": "x", "answer_type": "disease", "hops": 1}
    assert call_macro(str(REPO / "prompts/question.j2"), "stem", **facts) == \
        "Which disease presents with polyuria?"
    assert 'The correct answer is the disease "x"' in render(str(REPO / "prompts/question.j2"),
                                                             **facts)


def test_hetionet_metaedge_codes_never_reach_question_text():
    """Questions read Hetionet's published relation names, not its codes (issue 11)."""
    from fleming_dsl.runtime.teachers.verbalise import path_facts

    row = {"path": [{"node": "Lisinopril", "type": "Compound"}, {"node": "Hypertension", "type": "Disease"},
                    {"node": "ACE", "type": "Gene"}],
           "relations": ["CtD", "DaG"], "mask_index": 1}
    facts = path_facts(row)
    assert facts["clues"] == ["is treated by Lisinopril", "is associated with ACE"]
    regulated = {"path": [{"node": "TP53", "type": "Gene"}, {"node": "MDM2", "type": "Gene"}],
                 "relations": ["Gr>G:rev"], "mask_index": 1}
    assert path_facts(regulated)["all_facts"] == ["TP53 is regulated by MDM2"]
    assert not any(code in " ".join(facts["all_facts"]) for code in ("CtD", "DaG"))
    treated = {"path": [{"node": "Hypertension", "type": "Disease"}, {"node": "Lisinopril", "type": "Compound"}],
               "relations": ["CtD:rev"], "mask_index": 1}
    assert path_facts(treated)["all_facts"] == ["Hypertension is treated by Lisinopril"]


def test_a_graph_s_own_words_for_its_relations_reach_the_teacher():
    """issue 26: custom relations read "wheeze is related (has symptom) to cirrhosis"."""
    from fleming_dsl.runtime.teachers.verbalise import hop_readings, path_facts

    words = {"has_symptom": ("has symptom", "is a symptom of")}
    row = {"path": [{"node": "wheeze", "type": "symptom"}, {"node": "cirrhosis", "type": "disease"},
                    {"node": "jaundice", "type": "symptom"}],
           "relations": ["has_symptom:rev", "has_symptom"], "mask_index": 1}
    row["readings"] = hop_readings(row["relations"], words)
    assert row["readings"] == [["is a symptom of", "has symptom"], ["has symptom", "is a symptom of"]]
    facts = path_facts(row)
    assert facts["all_facts"] == ["wheeze is a symptom of cirrhosis", "cirrhosis has symptom jaundice"]
    assert facts["clues"] == ["has symptom wheeze", "has symptom jaundice"]
    assert hop_readings(["other"], words) is None


def test_the_fallible_template_teacher_errs_at_its_declared_rates():
    from fleming_dsl.runtime.teachers.backends.template import DEBRIS, TemplateBackend

    backend = TemplateBackend(Backend(kind="template", error_rate=0.3, malformed_rate=0.1), seed=7)
    items = [{**ITEM, "id": f"x{n}"} for n in range(2000)]
    texts = [backend.reason({"item": item, "round": 1}) for item in items]
    wrong = sum("<answer>B</answer>" not in t and "<answer>" in t for t in texts)
    cut = sum("<answer>" not in t for t in texts)
    debris = sum(DEBRIS in t for t in texts)
    assert 0.25 < wrong / len(items) < 0.35 and 0.03 < cut / len(items) < 0.07
    assert 0.03 < debris / len(items) < 0.07
    assert texts == [backend.reason({"item": item, "round": 1}) for item in items]  # seeded
    # a later round never names an option the chain named before, and opens with its strategy
    chain = [{"named": ITEM["options"]["A"]}]
    later = [backend.reason({"item": item, "round": 2, "strategy": "explore",
                             "variables": {"chain": chain}}) for item in items]
    assert not any("<answer>A</answer>" in t for t in later)
    assert all(t.startswith(f"<think>Wait, {ITEM['options']['A']} explains only part of the picture")
               for t in later if DEBRIS not in t)
    # votes err one by one; an oracle never does
    (votes,) = backend.generate([Request(task="answer", messages=(), n=50, context={"item": ITEM})])
    assert 5 < sum(v != "<answer>B</answer>" for v in votes) < 30
    oracle = TemplateBackend(Backend(kind="template"), seed=7)
    assert set(oracle.generate([Request(task="answer", messages=(), n=50,
                                        context={"item": ITEM})])[0]) == {"<answer>B</answer>"}


def test_the_template_teacher_without_the_label_or_provenance_guesses():
    from fleming_dsl.runtime.teachers.backends.template import TemplateBackend

    hidden = {k: v for k, v in ITEM.items() if k not in ("answer", "provenance")}
    picks = {TemplateBackend(seed=s).choose({**hidden, "id": "q"}, 1, set()) for s in range(40)}
    assert picks == set(ITEM["options"])
