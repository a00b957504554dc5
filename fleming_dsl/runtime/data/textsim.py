"""Text similarity for the filter: normalisation, exact and MinHash-LSH near duplicates, n-gram
decontamination.

Pure functions over strings; the filter job decides what to do with the answers.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from fleming_dsl.runtime.data.items import Item

_WORD = re.compile(r"[a-z0-9]+")
NUM_PERM = 128


def words(text: str) -> list[str]:
    """Lower-case alphanumeric tokens after Unicode compatibility folding."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _WORD.findall(folded)


def signature_text(item: Item) -> str:
    """What makes two items the same question: the stem and the set of option texts (option
    order and letters do not matter)."""
    options = sorted(" ".join(words(text)) for text in item.options.values())
    return " ".join(words(item.question)) + " || " + " | ".join(options)


def exact_key(item: Item) -> str:
    return hashlib.sha256(signature_text(item).encode("utf-8")).hexdigest()


def shingles(text: str, size: int = 3) -> set[str]:
    tokens = text.split()
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def near_duplicates(items: list[Item], threshold: float, seed: int = 1) -> dict[int, int]:
    """{index of a later item: index of the earlier item it nearly duplicates}.

    MinHash over word 3-shingles of `signature_text`, LSH for candidates, then the MinHash
    Jaccard estimate must reach `threshold` (LSH alone admits some false candidates).
    """
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    hashes: dict[int, MinHash] = {}
    duplicates: dict[int, int] = {}
    # Generating permutations is the slow part of a MinHash: make them once, share them.
    first = MinHash(num_perm=NUM_PERM, seed=seed)
    for index, item in enumerate(items):
        minhash = MinHash(num_perm=NUM_PERM, seed=seed, permutations=first.permutations,
                          scheme=first.scheme)
        minhash.update_batch([s.encode("utf-8") for s in shingles(signature_text(item))])
        matches = [int(key) for key in lsh.query(minhash)
                   if hashes[int(key)].jaccard(minhash) >= threshold]
        if matches:
            duplicates[index] = min(matches)
            continue
        lsh.insert(str(index), minhash)
        hashes[index] = minhash
    return duplicates


def ngrams(text: str, n: int) -> set[str]:
    tokens = words(text)
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


class NgramIndex:
    """The n-grams of a set of (evaluation) texts, for contamination look-ups."""

    def __init__(self, texts: Iterable[str], n: int) -> None:
        self.n = n
        self.grams: set[str] = set()
        for text in texts:
            self.grams |= ngrams(text, n)

    def shared(self, text: str) -> str | None:
        """One n-gram `text` shares with the index (the evidence), or None."""
        for gram in sorted(ngrams(text, self.n)):
            if gram in self.grams:
                return gram
        return None
