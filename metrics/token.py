"""Token consistency: do a direction's top activations fall on the same token string?

A measure of how *lexical* a direction is: 1.0 when every top-``n`` sample is the same token
(e.g. a "the" neuron), about the frequency of the commonest token for random sets. Lexical
directions are easy to explain but are not the whole story, so this is reported beside the
label and compression scores, not instead of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from benchmark.errors import UserError
from metrics.base import Metric, TopExamples


def normalise_token(token: str) -> str:
    """Case- and marker-insensitive form: strips WordPiece ``##``, BPE ``Ġ``/``▁`` and spaces, lowercases."""
    t = token.removeprefix("##").lstrip("Ġ▁ ").rstrip()
    return (t or token).lower()


@dataclass(frozen=True)
class TokenConsistency(Metric):
    """Fraction of the top-``n`` samples whose token is the direction's most common token.

    Settings:
        n: top samples per direction.
        normalise: compare :func:`normalise_token` forms (case, word-piece markers, spaces).
    """

    n: int = 16
    normalise: bool = False
    higher_is_better: ClassVar[bool] = True
    modalities: ClassVar[frozenset[str]] = frozenset({"language"})
    requires: ClassVar[frozenset[str]] = frozenset({"tokens"})
    version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"token_consistency: n must be >= 1, got {self.n}")

    def needs(self) -> tuple[int, tuple[float, ...]]:
        return self.n, (0.0,)

    def score(self, examples: TopExamples) -> np.ndarray:
        top = examples.top_idx[:, : self.n]
        flat = top.reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        strings = examples.stimuli.tokens(unique)
        if self.normalise:
            strings = [normalise_token(s) for s in strings]
        tokens = np.asarray(strings, dtype=object)[inverse].reshape(top.shape)
        return np.array([Counter(row).most_common(1)[0][1] / len(row) for row in tokens], dtype=np.float64)
