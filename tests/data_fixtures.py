"""Small inputs for the data-job tests (synthesize, distill, filter), built in code."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from fleming_dsl.ir import Backend
from fleming_dsl.plan.jobconfig import DataSource, Generator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "data"))

from facts import DISEASES  # noqa: E402


def template_generator() -> Generator:
    return Generator(model="", backend=Backend(kind="template", temperature=0.0))


def sample_rows(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """Rows shaped like the sample job's output: 1-hop disease->phenotype paths with the
    disease masked, plus 2-hop paths through a second disease sharing nothing."""
    rng = random.Random(seed)
    names = [d[0] for d in DISEASES]
    rows = []
    for index in range(count):
        disease, features, _ = DISEASES[index % len(DISEASES)]
        feature = features[(index // len(DISEASES)) % len(features)]
        path = [{"node": disease, "type": "disease"}, {"node": feature, "type": "effect/phenotype"}]
        relations = ["disease_phenotype_positive"]
        if index % 3 == 2:
            path.append({"node": "metformin" if index % 2 else "ibuprofen", "type": "drug"})
            relations.append("drug_effect")
        rows.append({"id": f"s{index}", "path": path, "relations": relations, "mask_index": 0,
                     "answer": disease, "answer_type": "disease",
                     "distractors": rng.sample([n for n in names if n != disease], 3),
                     "seed": seed})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(path: Path, cfg: Any) -> Path:
    path.write_text(cfg.model_dump_json(), encoding="utf-8")
    return path


def repo_source(relative: str, fmt: str, name: str) -> DataSource:
    return DataSource(path=str(REPO / relative), format=fmt, name=name)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
