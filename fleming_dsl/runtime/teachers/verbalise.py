"""Sampled knowledge-graph paths in words: facts, clues about the masked entity, type labels.

Used by synthesis (prompt variables for every teacher) and by the template teacher (question
stems and rationales). PrimeKG stores each fact in both directions under one relation name, so
a relation maps to a verb for its usual head type and a reverse verb for the other direction.
Hetionet and typed triples store a fact's reverse as `<relation>:rev`, which reads the other
way. A graph's `reads { }` block names the words of its own relations; the sample job writes
them into each row (`readings`), and they win over the tables here.
"""

from __future__ import annotations

from typing import Any

from fleming_dsl.vocabulary import REVERSED

# relation -> (usual head type prefix, verb from the head, verb from the tail)
RELATION_VERBS: dict[str, tuple[str, str, str]] = {
    "disease_phenotype_positive": ("disease", "presents with", "is a feature of"),
    "disease_phenotype_negative": ("disease", "typically lacks", "is typically absent in"),
    "indication": ("drug", "is indicated for", "is treated with"),
    "contraindication": ("drug", "is contraindicated in", "rules out the use of"),
    "off-label use": ("drug", "is used off-label for", "is treated off-label with"),
    "drug_effect": ("drug", "can cause", "is an adverse effect of"),
    "disease_protein": ("disease", "involves", "is implicated in"),
    "drug_protein": ("drug", "acts on", "is a target of"),
    "anatomy_protein_present": ("anatomy", "expresses", "is expressed in"),
    "disease_disease": ("disease", "is related to", "is related to"),
    "phenotype_phenotype": ("effect", "is related to", "is related to"),
    "drug_drug": ("drug", "interacts with", "interacts with"),
}

# Hetionet v1.0 metaedges (abbreviation -> head kind, verb from the head, verb from the tail), as
# Hetionet publishes them (metaedge name "Compound - treats - Disease" = CtD): question text reads
# the names, never the codes. The loader stores a directed metaedge's reverse as "<code>:rev".
HETIONET_METAEDGES: dict[str, tuple[str, str, str]] = {
    "AdG": ("Anatomy", "downregulates", "is downregulated in"),
    "AeG": ("Anatomy", "expresses", "is expressed in"),
    "AuG": ("Anatomy", "upregulates", "is upregulated in"),
    "CbG": ("Compound", "binds", "is bound by"),
    "CcSE": ("Compound", "causes", "is a side effect of"),
    "CdG": ("Compound", "downregulates", "is downregulated by"),
    "CpD": ("Compound", "palliates", "is palliated by"),
    "CrC": ("Compound", "resembles", "resembles"),
    "CtD": ("Compound", "treats", "is treated by"),
    "CuG": ("Compound", "upregulates", "is upregulated by"),
    "DaG": ("Disease", "is associated with", "is associated with"),
    "DdG": ("Disease", "downregulates", "is downregulated in"),
    "DlA": ("Disease", "localizes to", "is a site of"),
    "DpS": ("Disease", "presents with", "is a symptom of"),
    "DrD": ("Disease", "resembles", "resembles"),
    "DuG": ("Disease", "upregulates", "is upregulated in"),
    "GcG": ("Gene", "covaries with", "covaries with"),
    "GiG": ("Gene", "interacts with", "interacts with"),
    "GpBP": ("Gene", "participates in", "involves"),
    "GpCC": ("Gene", "participates in", "involves"),
    "GpMF": ("Gene", "participates in", "involves"),
    "GpPW": ("Gene", "participates in", "involves"),
    "Gr>G": ("Gene", "regulates", "is regulated by"),
    "PCiC": ("Pharmacologic Class", "includes", "is included in"),
}

TYPE_LABELS = {
    "effect/phenotype": "clinical finding",
    "gene/protein": "gene or protein",
    "anatomy": "anatomical site",
    "biological_process": "biological process",
    "molecular_function": "molecular function",
    "cellular_component": "cellular component",
    "exposure": "exposure",
    "pathway": "pathway",
}


def type_label(node_type: str) -> str:
    return TYPE_LABELS.get(node_type, node_type.replace("_", " "))


def verb(relation: str, subject_type: str) -> str:
    """How `relation` reads with a subject of `subject_type` in front (never a bare code)."""
    code = relation.removesuffix(REVERSED)
    if code in HETIONET_METAEDGES:
        head, forward, backward = HETIONET_METAEDGES[code]
        if relation.endswith(REVERSED):  # walked from the written fact's tail
            return backward
        return forward if subject_type == head else backward
    readable = relation.replace("_", " ")
    head, forward, backward = RELATION_VERBS.get(
        relation, ("", f"is related ({readable}) to", f"is related ({readable}) to"))
    return forward if subject_type.startswith(head) else backward


def hop_readings(relations: list[str], readings: dict[str, tuple[str, str]]) -> list | None:
    """Per hop of a sampled path, [words from the node it leaves, words from the node it
    reaches] where the graph's `reads { }` names its relation (None elsewhere); None when it
    names none of them. A hop along `<relation>:rev` leaves the written fact's tail."""
    out: list[list[str] | None] = []
    for rel in relations:
        words = readings.get(rel.removesuffix(REVERSED))
        if words is None:
            out.append(None)
        else:
            out.append(list(reversed(words)) if rel.endswith(REVERSED) else list(words))
    return out if any(out) else None


def _edges(row: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(i, rel, i + 1) for i, rel in enumerate(row["relations"])]


def path_facts(row: dict[str, Any]) -> dict[str, Any]:
    """Prompt variables for one sampled path row.

    facts: sentences about edges not touching the masked entity; clues: predicates of which the
    masked entity is the subject ("presents with fever"), the path's then its `extra` ones (a
    further neighbour joined as path edge `edge` is); all_facts: every edge as a sentence, the
    answer named (what a rationale may say once the answer is known).
    """
    path = row["path"]
    mask = row["mask_index"]
    facts, clues, all_facts = [], [], []
    readings = row.get("readings") or [None] * len(row["relations"])
    for x, rel, y in _edges(row):
        sx, sy = path[x], path[y]
        from_x, from_y = readings[x] or (verb(rel, sx["type"]), verb(rel, sy["type"]))
        all_facts.append(f"{sx['node']} {from_x} {sy['node']}")
        if x == mask:
            clues.append(f"{from_x} {sy['node']}")
        elif y == mask:
            clues.append(f"{from_y} {sx['node']}")
        else:
            facts.append(all_facts[-1])
    for more in row.get("extra", ()):
        x, y = more["edge"], more["edge"] + 1
        from_x, from_y = readings[x] or (verb(row["relations"][x], path[x]["type"]),
                                         verb(row["relations"][x], path[y]["type"]))
        if x == mask:  # the masked entity heads the edge, the extra node is its other end
            clues.append(f"{from_x} {more['node']}")
            all_facts.append(f"{path[mask]['node']} {from_x} {more['node']}")
        else:
            clues.append(f"{from_y} {more['node']}")
            all_facts.append(f"{more['node']} {from_x} {path[mask]['node']}")
    return {"facts": facts, "clues": clues, "all_facts": all_facts,
            "answer": row.get("answer", path[mask]["node"]),
            "answer_type": type_label(row.get("answer_type", path[mask]["type"])),
            "hops": len(row["relations"])}
