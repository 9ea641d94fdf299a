"""token_consistency: the share of top samples on the direction's commonest token."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.text_files import InMemoryDocuments
from benchmark.data.tokens import ByteTokenizer, TokenSamples
from benchmark.errors import UserError
from metrics.base import Ranked, TopExamples
from metrics.token import TokenConsistency, normalise_token


def examples(stimuli, top: np.ndarray) -> TopExamples:
    zeros = np.zeros(top.shape, dtype=np.float32)
    return TopExamples(stimuli, {0.0: Ranked(top, zeros, top[:, ::-1].copy(), zeros)})


def test_planted_directions() -> None:
    # document "aaaa...b" : positions 0..5 are 'a', 6 is 'b', 7.. are 'c'
    docs = InMemoryDocuments(["aaaaaabcccc"], ["x"])
    s = TokenSamples(docs, ByteTokenizer(), window=32, tokens_per_doc=100, before=2, after=1)
    top = np.array(
        [
            [0, 1, 2, 3],  # all 'a'
            [0, 1, 7, 8],  # two 'a', two 'c'
            [0, 6, 7, 8],  # a, b, c, c
        ]
    )
    got = TokenConsistency(n=4).score(examples(s, top))
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5])
    assert TokenConsistency(n=2).score(examples(s, top)).tolist() == [1.0, 1.0, 0.5]


def test_independent_count_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    docs = InMemoryDocuments(["".join(rng.choice(list("abc"), 400))], ["x"])
    s = TokenSamples(docs, ByteTokenizer(), window=512, tokens_per_doc=400)
    top = np.stack([rng.choice(len(s), 16, replace=False) for _ in range(50)])
    got = TokenConsistency(n=16).score(examples(s, top))
    tokens = np.array(s.tokens(np.arange(len(s))))
    expected = [max((tokens[row] == t).sum() for t in "abc") / 16 for row in top]
    np.testing.assert_allclose(got, expected)


def test_normalised_tokens() -> None:
    assert normalise_token("##ing") == "ing"
    assert normalise_token("ĠThe") == "the"
    assert normalise_token("▁the") == "the"
    assert normalise_token("##") == "##"


def test_skips_and_bad_settings() -> None:
    docs = InMemoryDocuments(["abc"], ["x"])
    assert "do not provide tokens" in TokenConsistency().skip_reason(docs)
    with pytest.raises(UserError, match="n must be >= 1"):
        TokenConsistency(n=0)
