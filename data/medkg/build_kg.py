"""Write the embedded medical knowledge graph `kg.csv` (PrimeKG column layout) from facts.py.

    python data/medkg/build_kg.py            # rewrite data/medkg/kg.csv
    python data/medkg/build_kg.py --check    # exit 1 if kg.csv differs from what facts.py gives

Every fact is written in both directions, as PrimeKG ships it. Node ids are slugs of the names
under the source `medkg` (this graph is curated by the project; it borrows PrimeKG's layout and
relation names, not its identifiers).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from facts import ANATOMY_PARENTS, DISEASES, DRUGS  # noqa: E402

HERE = Path(__file__).resolve().parent
COLUMNS = ("relation", "display_relation", "x_index", "x_id", "x_type", "x_name", "x_source",
           "y_index", "y_id", "y_type", "y_name", "y_source")
DISPLAY = {
    "indication": "indication", "contraindication": "contraindication",
    "off-label use": "off-label use", "disease_phenotype_positive": "phenotype present",
    "drug_effect": "side effect", "disease_protein": "associated with",
    "drug_protein": "target", "anatomy_protein_present": "expression present",
    "disease_disease": "parent-child", "anatomy_anatomy": "parent-child",
}
TYPE_ORDER = ("disease", "effect/phenotype", "drug", "gene/protein", "anatomy")


def split(text: str, sep: str = ";") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def facts() -> list[tuple[str, str, str, str, str]]:
    """(relation, x_type, x_name, y_type, y_name) per undirected fact, first-seen order."""
    found: dict[tuple[str, str, str, str, str], None] = {}

    def add(relation: str, x_type: str, x_name: str, y_type: str, y_name: str) -> None:
        found.setdefault((relation, x_type, x_name, y_type, y_name), None)

    for d in DISEASES:
        for phenotype in split(d.phenotypes):
            add("disease_phenotype_positive", "disease", d.name, "effect/phenotype", phenotype)
        for relation, drugs in (("indication", d.drugs), ("contraindication", d.contra),
                                ("off-label use", d.off_label)):
            for drug in split(drugs):
                if drug not in DRUGS:
                    raise SystemExit(f"facts.py: disease {d.name!r}: drug {drug!r} is not in DRUGS")
                add(relation, "drug", drug, "disease", d.name)
        for gene in split(d.genes, " "):
            add("disease_protein", "gene/protein", gene, "disease", d.name)
            add("anatomy_protein_present", "anatomy", d.site, "gene/protein", gene)
        if d.parent:
            add("disease_disease", "disease", d.parent, "disease", d.name)
    for drug, (targets, effects) in DRUGS.items():
        for gene in split(targets, " "):
            add("drug_protein", "drug", drug, "gene/protein", gene)
        for effect in split(effects):
            add("drug_effect", "drug", drug, "effect/phenotype", effect)
    sites = {d.site for d in DISEASES}
    for child, parent in ANATOMY_PARENTS.items():
        add("anatomy_anatomy", "anatomy", parent, "anatomy", child)
    missing = sorted(sites - set(ANATOMY_PARENTS))
    if missing:
        raise SystemExit(f"facts.py: anatomy site {missing[0]!r} has no entry in ANATOMY_PARENTS")
    return list(found)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def node_index(all_facts) -> dict[tuple[str, str], int]:
    nodes = {(x_type, x_name) for _, x_type, x_name, _, _ in all_facts}
    nodes |= {(y_type, y_name) for _, _, _, y_type, y_name in all_facts}
    ordered = sorted(nodes, key=lambda n: (TYPE_ORDER.index(n[0]), n[1].lower(), n[1]))
    return {node: i for i, node in enumerate(ordered)}


def kg_csv() -> str:
    all_facts = facts()
    index = node_index(all_facts)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for relation, x_type, x_name, y_type, y_name in all_facts:
        for (a_type, a_name), (b_type, b_name) in (((x_type, x_name), (y_type, y_name)),
                                                   ((y_type, y_name), (x_type, x_name))):
            writer.writerow((relation, DISPLAY[relation],
                             index[a_type, a_name], slug(a_name), a_type, a_name, "medkg",
                             index[b_type, b_name], slug(b_name), b_type, b_name, "medkg"))
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "kg.csv"))
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = kg_csv()
    out = Path(args.out)
    if args.check:
        same = out.exists() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'up to date' if same else 'differs from facts.py; rerun build_kg.py'}")
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {text.count(chr(10)) - 1} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
