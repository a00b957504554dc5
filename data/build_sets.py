"""Write the embedded evaluation and training sets from the curated tables in `facts.py`.

    python data/build_sets.py          # (re)write data/eval/* and data/train/*
    python data/build_sets.py --check  # exit 1 if the files differ from what this would write

Diseases and drugs come from the embedded knowledge graph's own facts (`medkg/facts.py`, via
`facts.py`), so the graph teaches the entities the benchmarks ask about, in the graph's spelling.
No question is shared between evaluation and training: evaluation asks for the diagnosis of a
vignette (MedQA), a drug's characteristic adverse effect (MedMCQA) and trial findings
(PubMedQA); training asks for a disease's first-line drug and a drug's molecular target
(`medqa_train`), and the case bank (`case_bank`) asks diagnoses as an exam's question bank
does, with answer keys and no worked solutions, from other finding sets than the evaluation's
and in other words. Output is deterministic (fixed seeds, stable order).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from facts import DISEASES, DRUGS, TRIALS  # noqa: E402

LETTERS = "ABCD"
SEED = 20240917


def _content_words(text: str) -> set[str]:
    return {w.strip(",.()").lower() for w in text.split() if len(w.strip(",.()")) > 4}


def pick_options(answer: str, pool: list[str], rng: random.Random, k: int = 3) -> list[str]:
    """The answer and k distractors from `pool` that share no content word with it (so no
    distractor is a variant of the answer), in a shuffled order."""
    candidates = sorted({p for p in pool if p != answer
                         and not _content_words(p) & _content_words(answer)})
    options = [answer] + rng.sample(candidates, k)
    rng.shuffle(options)
    return options


def medqa_row(question: str, options: list[str], answer: str, meta: str) -> dict:
    letter = LETTERS[options.index(answer)]
    return {"question": question, "answer": answer,
            "options": dict(zip(LETTERS, options)), "meta_info": meta, "answer_idx": letter}


def _article(age: int) -> str:
    return "An" if str(age).startswith(("8", "11", "18")) else "A"


def _listed(findings: list[str]) -> str:
    return findings[0] if len(findings) == 1 else ", ".join(findings[:-1]) + " and " + findings[-1]


def _diagnosis_row(disease: str, shown: list[str], question: str, rng: random.Random,
                   meta: str) -> dict:
    """Options drawn from diseases that share none of the findings shown."""
    fair = [name for name, features, _ in DISEASES if not set(features) & set(shown)]
    return medqa_row(question, pick_options(disease, fair, rng), disease, meta)


def _medqa_test_cases() -> list[tuple[list[str], dict]]:
    """One diagnosis vignette per graph disease: four of its phenotypes (as the graph spells
    them), options drawn from diseases that share none of the findings shown; with the findings
    each shows."""
    rng = random.Random(SEED)
    cases = []
    for index, (disease, features, _) in enumerate(DISEASES):
        age = 18 + (index * 7) % 60
        sex = ("man", "woman")[index % 2]
        shown = rng.sample(features, 4)
        question = (f"{_article(age)} {age}-year-old {sex} is evaluated for {_listed(shown[:3])}. "
                    f"On examination there is also {shown[3]}. What is the most likely diagnosis?")
        cases.append((shown, _diagnosis_row(disease, shown, question, rng, "step2&3")))
    return cases


def medqa_test() -> list[dict]:
    return [row for _, row in _medqa_test_cases()]


# How a question bank words a diagnosis vignette (history, then one examination finding): none
# of these is the evaluation's wording, so the bank teaches reading exam questions, not one
# template (the decontamination filter removes the few that share an 8-gram with medqa_test).
CASE_STEMS = (
    "{who} comes to the emergency department because of {history}. Physical examination shows "
    "{exam}. Which of the following is the most likely diagnosis?",
    "{who} is seen in the office with {history}. Examination is notable for {exam}. Which of "
    "the following best explains this presentation?",
    "{who} has had {history} for several weeks. Examination reveals {exam}. What is the most "
    "likely underlying condition?",
    "{who} develops {history}. On physical exam, {exam} is found. Which condition is most likely?",
    "{who} is admitted with {history}. The examination is remarkable for {exam}. Which of the "
    "following is the most likely cause?",
    "{who} has noticed {history} over the past month. Examination findings include {exam}. "
    "Which diagnosis fits best?",
    "{who} visits a clinician for {history}; {exam} is also noted. Which of the following "
    "conditions is most likely?",
    "{who} reports {history}. The physician also observes {exam}. What is the best diagnosis?",
)
CASES_PER_DISEASE = 4


def case_bank() -> list[dict]:
    """An exam-style question bank for RL: CASES_PER_DISEASE diagnosis vignettes per graph
    disease, each from three or four of its phenotypes but never the finding set medqa_test
    shows, worded by CASE_STEMS, with answer keys and no worked solutions."""
    rng = random.Random(SEED + 3)
    tested = [set(shown) for shown, _ in _medqa_test_cases()]
    rows = []
    for index, (disease, features, _) in enumerate(DISEASES):
        subsets = [list(c) for k in (3, 4) for c in itertools.combinations(features, k)
                   if set(c) != tested[index]]
        for number, shown in enumerate(rng.sample(subsets, CASES_PER_DISEASE)):
            rng.shuffle(shown)
            age, sex = rng.randrange(20, 80), rng.choice(("man", "woman"))
            stem = CASE_STEMS[(index + number) % len(CASE_STEMS)]
            question = stem.format(who=f"{_article(age)} {age}-year-old {sex}",
                                   history=_listed(shown[:-1]), exam=shown[-1])
            rows.append(_diagnosis_row(disease, shown, question, rng, "bank"))
    rng.shuffle(rows)
    return rows


def medmcqa_dev() -> list[dict]:
    """A drug's adverse effect, for every third graph drug (the first effect the graph lists);
    the distractors are effects the graph does not give that drug."""
    rng = random.Random(SEED + 1)
    effects = sorted({effect for _, _, found in DRUGS for effect in found})
    rows = []
    for drug, _, found in DRUGS[::3]:
        effect = found[0]
        pool = [e for e in effects if e not in found]
        options = pick_options(effect, pool, rng)
        rows.append({
            "id": hashlib.sha1(f"medmcqa-dev-{drug}".encode()).hexdigest()[:8] + "-flm",
            "question": f"Characteristic adverse effect of {drug}:",
            "opa": options[0], "opb": options[1], "opc": options[2], "opd": options[3],
            "cop": options.index(effect),  # 0-based, as in the HF/JSONL copies
            "choice_type": "single", "exp": f"{drug.capitalize()} classically causes {effect}.",
            "subject_name": "Pharmacology", "topic_name": "Adverse effects"})
    return rows


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def pubmedqa() -> dict[str, dict]:
    data = {}
    for index, (drug, comparator, outcome, population, decision, result) in enumerate(TRIALS):
        pmid = str(31000000 + index * 104729 % 999983)
        long_answer = {
            "yes": f"In {population}, {drug} did {outcome} compared with {comparator}.",
            "no": f"In {population}, {drug} did not {outcome} compared with {comparator}.",
            "maybe": f"Whether {drug} can {outcome} in {population} remains uncertain.",
        }[decision]
        data[pmid] = {
            "QUESTION": f"Does {drug} {outcome} in {population}?",
            "CONTEXTS": [_sentence(f"{population} were randomly assigned to {drug} or "
                                   f"{comparator}"),
                         _sentence(f"the primary question was whether {drug} would {outcome}"),
                         _sentence(result)],
            "LABELS": ["METHODS", "OBJECTIVE", "RESULTS"],
            "MESHES": ["Humans", "Randomized Controlled Trials as Topic", drug.title()],
            "YEAR": str(2000 + index % 24),
            "reasoning_required_pred": decision,
            "reasoning_free_pred": decision,
            "final_decision": decision,
            "LONG_ANSWER": long_answer,
        }
    return data


def medqa_train() -> list[dict]:
    """Questions of other types than the evaluation sets ask: a disease's first-line drug and a
    drug's molecular target, from the same graph facts."""
    rng = random.Random(SEED + 2)
    drugs = sorted({drug for _, _, found in DISEASES for drug in found})
    targets = sorted({target for _, found, _ in DRUGS for target in found})
    rows = []
    for disease, _, treatments in DISEASES:
        if treatments:
            pool = [d for d in drugs if d not in treatments]
            rows.append(medqa_row(f"Which drug is a usual first-line treatment for {disease}?",
                                  pick_options(treatments[0], pool, rng), treatments[0], "step1"))
    for drug, found, _ in DRUGS:
        if found:
            pool = [t for t in targets if t not in found]
            rows.append(medqa_row(f"Which gene product is the main molecular target of {drug}?",
                                  pick_options(found[0], pool, rng), found[0], "step1"))
    return rows


def render_all() -> dict[str, str]:
    def jsonl(rows: list[dict]) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    return {
        "eval/medqa_test.jsonl": jsonl(medqa_test()),
        "eval/medmcqa_dev.jsonl": jsonl(medmcqa_dev()),
        "eval/pubmedqa.json": json.dumps(pubmedqa(), ensure_ascii=False, indent=4) + "\n",
        "train/medqa_train.jsonl": jsonl(medqa_train()),
        "train/case_bank.jsonl": jsonl(case_bank()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
