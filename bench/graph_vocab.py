"""Time the check-time read of a graph's names (`check/graph_vocab.py`) on a PrimeKG-shaped file.

    python bench/graph_vocab.py [--rows 1000000]

Writes a synthetic `kg.csv` (PrimeKG's 12 columns, 30 relations, 10 node types) and prints one
table: the first `fleming check` streams the file once and writes a sidecar; every later check
reads the sidecar (a fingerprint of the file's size, mtime and first/last MiB, then a small JSON).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleming_dsl.check.graph_vocab import vocabulary

HEADER = ("relation,display_relation,x_index,x_id,x_type,x_name,x_source,y_index,y_id,y_type,"
          "y_name,y_source\n")


def write_kg(path: Path, rows: int) -> None:
    rng = random.Random(0)
    types = [f"type_{i}" for i in range(10)]
    relations = [f"relation_{i}" for i in range(30)]
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for _ in range(rows):
            x, y = rng.randrange(129_375), rng.randrange(129_375)
            rel = rng.choice(relations)
            out.write(f"{rel},{rel} shown,{x},id{x},{rng.choice(types)},node {x},src,"
                      f"{y},id{y},{rng.choice(types)},node {y},src\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FLEMING_CACHE_DIR"] = str(Path(tmp) / "cache")
        kg = Path(tmp) / "kg.csv"
        write_kg(kg, args.rows)
        size_mb = kg.stat().st_size / 2**20
        start = time.perf_counter()
        cold = vocabulary("primekg", [kg])
        first = time.perf_counter() - start
        start = time.perf_counter()
        warm = vocabulary("primekg", [kg])
        second = time.perf_counter() - start
        assert cold == warm
        print("| kg.csv rows | size | first check (stream + sidecar) | later checks (sidecar) |")
        print("|---|---|---|---|")
        print(f"| {args.rows:,} | {size_mb:.0f} MB | {first:.2f} s | {second * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
