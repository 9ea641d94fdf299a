"""ngram_consistency: MinHash Jaccard of character n-grams, checked against the exact index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data.text_files import InMemoryDocuments
from benchmark.errors import UserError
from metrics.base import Ranked, TopExamples
from metrics.ngram import NgramConsistency, char_ngrams, exact_jaccard, minhash

WORDS = "the cat sat on a mat while dogs ran over green hills under grey skies".split()


def random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(n)]


def test_char_ngrams_and_exact_jaccard() -> None:
    assert char_ngrams("ab«c»d", 2) == {"ab", "bc", "cd"}  # the token markers are ignored
    assert char_ngrams("a", 3) == {"a"}
    assert exact_jaccard("abcd", "abce", 3) == pytest.approx(1 / 3)
    assert exact_jaccard("", "", 3) == 1.0


def test_minhash_estimates_the_exact_jaccard() -> None:
    texts = random_texts(40, seed=0)
    metric = NgramConsistency(num_hashes=256)
    sig = torch.from_numpy(minhash(texts, 3, 256, seed=42))
    est = metric.pairwise(sig[None], sig[None])[0].numpy()
    exact = np.array([[exact_jaccard(a, b) for b in texts] for a in texts])
    np.testing.assert_allclose(np.diag(est), 1.0)
    err = np.abs(est - exact)
    assert err.mean() < 0.02 and err.max() < 0.15  # standard error <= 0.5 / sqrt(256) = 0.031


def test_consistency_on_planted_sets() -> None:
    texts = ["the cat sat on the mat"] * 8 + random_texts(8, seed=1) + ["zqxj vwkp " * 3] * 8
    docs = InMemoryDocuments(texts, ["x"] * len(texts))
    top = np.array([np.arange(8), np.arange(8, 16), np.arange(16, 24)])
    zeros = np.zeros(top.shape, dtype=np.float32)
    ex = TopExamples(docs, {0.0: Ranked(top, zeros, top[:, ::-1].copy(), zeros)})
    got = NgramConsistency(n=8).score(ex)
    assert got[0] == pytest.approx(1.0) and got[2] == pytest.approx(1.0)
    exact = np.mean([exact_jaccard(texts[i], texts[j]) for i in range(8, 16) for j in range(8, 16) if i != j])
    assert got[1] == pytest.approx(exact, abs=0.05)


def test_psychophysics_separates_planted_texts() -> None:
    a, b = ["the cat sat on the mat " + w for w in WORDS], ["0x3f 0x2a 0x11 " + w for w in WORDS]
    texts = (a * 15)[:200] + (b * 15)[:200]
    docs = InMemoryDocuments(texts, ["x"] * len(texts))
    metric = NgramConsistency(protocol="psychophysics", n_trials=5, n_references=3, quantiles=(0.0,))
    top, bottom = np.arange(0, 20)[None], np.arange(200, 220)[None]
    ex = TopExamples(docs, {0.0: Ranked(top, top * 0.0, bottom, bottom * 0.0)})
    assert metric.score(ex)[0] > 0.9


def test_bad_settings() -> None:
    with pytest.raises(UserError, match="ngram and num_hashes"):
        NgramConsistency(ngram=0)
    assert NgramConsistency().skip_reason(InMemoryDocuments(["x"], ["a"])) is None
