"""Character n-gram overlap of text contexts, as a similarity under either protocol.

Each stimulus's text (for token samples: the context window, markers removed) becomes its set
of character ``n``-grams; two stimuli are as similar as the Jaccard index of their sets. The
index is estimated with MinHash (``num_hashes`` seeded hash functions; the fraction of equal
minima is an unbiased estimate of the Jaccard index, standard error at most
``0.5 / sqrt(num_hashes)``), so a stimulus is a fixed-size ``[num_hashes]`` signature and the
pairwise matrices of both protocols stay cheap. ``exact_jaccard`` is the reference.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from benchmark.data.tokens import MARK_CLOSE, MARK_OPEN
from benchmark.errors import UserError
from metrics.base import SimilarityMetric
from metrics.features import CachedGather, cached_rows

_PRIME = (1 << 31) - 1
_EMPTY = np.iinfo(np.int64).max


def char_ngrams(text: str, n: int) -> set[str]:
    """The set of character ``n``-grams of ``text`` (the whole text when shorter than ``n``)."""
    text = text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
    if len(text) < n:
        return {text} if text else set()
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def exact_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard index of the character n-gram sets of two texts (1.0 for two empty texts)."""
    sa, sb = char_ngrams(a, n), char_ngrams(b, n)
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def minhash(texts: list[str], n: int, num_hashes: int, seed: int) -> np.ndarray:
    """MinHash signatures ``[m, num_hashes]`` (int64) of the texts' n-gram sets.

    Each n-gram is hashed to 31 bits (CRC-32 of its UTF-8 bytes), then by ``num_hashes``
    seeded universal hashes ``(a * x + b) mod (2^31 - 1)``; an empty text gets the sentinel
    ``int64.max`` everywhere.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=num_hashes, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_hashes, dtype=np.uint64)
    out = np.full((len(texts), num_hashes), _EMPTY, dtype=np.int64)
    for i, text in enumerate(texts):
        grams = char_ngrams(text, n)
        if not grams:
            continue
        x = np.fromiter((zlib.crc32(g.encode("utf-8", "surrogatepass")) & _PRIME for g in grams), np.uint64, len(grams))
        out[i] = ((x[:, None] * a[None, :] + b[None, :]) % np.uint64(_PRIME)).min(axis=0).astype(np.int64)
    return out


@dataclass(frozen=True)
class NgramConsistency(CachedGather, SimilarityMetric):
    """Character n-gram overlap (MinHash-estimated Jaccard) of the stimuli's texts.

    Signatures are computed once per stimulus per process (:func:`metrics.features.cached_rows`)
    and shared by every direction, protocol, chance set and grid cell.

    Settings (besides the protocol's):
        ngram: characters per n-gram.
        num_hashes: MinHash size (more = a closer estimate).
    """

    ngram: int = 3
    num_hashes: int = 128
    modalities: ClassVar[frozenset[str]] = frozenset({"language"})
    requires: ClassVar[frozenset[str]] = frozenset({"texts"})
    version: ClassVar[str] = "2"  # 2: psychophysics bands with 4 T (R + 1) samples or fewer are "insufficient"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ngram < 1 or self.num_hashes < 1:
            raise UserError(
                f"ngram_consistency: ngram and num_hashes must be >= 1, got {self.ngram}, {self.num_hashes}"
            )

    def embed(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        def compute(missing: np.ndarray) -> Tensor:
            return torch.from_numpy(minhash(stimuli.texts(missing), self.ngram, self.num_hashes, self.seed))

        return cached_rows(f"ngram:{self.ngram}:{self.num_hashes}:{self.seed}", stimuli, idx, compute)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        both_empty = (a[:, :, None, :1] == _EMPTY) & (b[:, None, :, :1] == _EMPTY)
        equal = (a[:, :, None, :] == b[:, None, :, :]) & (a[:, :, None, :] != _EMPTY)
        return torch.where(both_empty[..., 0], 1.0, equal.float().mean(dim=-1))
