"""Token samples: spans, marked context windows, caps, groups, and the forward-window plan."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.base import Subset, split_indices
from benchmark.data.text_files import InMemoryDocuments
from benchmark.data.tokens import ByteTokenizer, TokenSamples, resolve_token_samples
from benchmark.errors import UserError


def test_byte_tokenizer_spans_multibyte_characters() -> None:
    enc = ByteTokenizer().encode("aé€")
    assert enc.ids.tolist() == list("aé€".encode())
    assert enc.spans.tolist() == [[0, 1], [1, 2], [1, 2], [2, 3], [2, 3], [2, 3]]
    assert ByteTokenizer().token_strings(np.array([65, 10, 0xC3])) == ["A", "<0x0A>", "<0xC3>"]


def test_context_window_marks_the_token() -> None:
    docs = InMemoryDocuments(["0123456789abcdef"], ["x"])
    s = TokenSamples(docs, ByteTokenizer(), window=16, tokens_per_doc=100, before=3, after=2)
    assert len(s) == 16
    assert s.texts(np.array([5])) == ["234«5»67"]
    assert s.texts(np.array([0, 15])) == ["«0»12", "cde«f»"]
    assert s.tokens(np.array([10])) == ["a"]
    assert s.captions(np.array([5])) == s.texts(np.array([5]))
    assert s.labels(np.array([0])).tolist() == [0]


def test_cap_groups_and_split_by_document() -> None:
    texts = [f"document number {i} " * 10 for i in range(12)]
    docs = InMemoryDocuments(texts, ["a", "b"] * 6)
    s = TokenSamples(docs, ByteTokenizer(), window=64, tokens_per_doc=7, seed=3)
    assert len(s) == 12 * 7
    assert np.bincount(s.groups()).tolist() == [7] * 12
    assert s.labels(np.arange(len(s))).tolist() == np.repeat([0, 1] * 6, 7).tolist()
    fit, probe = split_indices(s, 0.5, seed=0)
    assert not set(s.groups()[fit]) & set(s.groups()[probe])
    again = TokenSamples(docs, ByteTokenizer(), window=64, tokens_per_doc=7, seed=3)
    assert np.array_equal(again.sample_pos, s.sample_pos)
    assert s.identity() == again.identity()
    assert TokenSamples(docs, ByteTokenizer(), window=64, tokens_per_doc=8).identity() != s.identity()


def test_one_window_per_document_with_left_context() -> None:
    docs = InMemoryDocuments(["x" * 1000, "y" * 50, "z" * 300], ["a", "b", "a"])
    s = TokenSamples(docs, ByteTokenizer(), window=128, tokens_per_doc=40, overlap=32, seed=0)
    idx = np.arange(len(s))
    windows = list(s.windows(idx))
    assert [w.doc for w in windows] == [0, 1, 2]  # each document runs once
    assert np.bincount(s.groups()).tolist() == [40, 40, 40]
    for w in windows:
        assert 1 <= len(w.ids) <= 128
        pos = w.start + w.local
        assert np.all(w.local < len(w.ids))
        assert w.start == 0 or np.all(w.local >= 32)  # at least `overlap` tokens before
        assert np.array_equal(pos, s.sample_pos[idx[w.rows]])
        assert np.array_equal(w.ids, s.document_ids(w.doc)[w.start : w.start + 128])
    assert np.array_equal(np.concatenate([w.rows for w in windows]), idx)
    starts = {TokenSamples(docs, ByteTokenizer(), window=128, seed=k).sample_start[0] for k in range(5)}
    assert len(starts) > 1  # the window of a long document is drawn by the seed


def test_subset_views_resolve_to_the_token_samples() -> None:
    docs = InMemoryDocuments(["abcdefgh" * 4, "ijklmnop" * 4], ["a", "b"])
    s = TokenSamples(docs, ByteTokenizer(), window=32, tokens_per_doc=5)
    sub = Subset(s, np.array([2, 4, 7]))
    base, idx = resolve_token_samples(sub, np.array([0, 2]))
    assert base is s and idx.tolist() == [2, 7]
    with pytest.raises(UserError, match="token samples"):
        resolve_token_samples(docs, np.array([0]))


def test_bad_input() -> None:
    docs = InMemoryDocuments(["some text here"], ["a"])
    with pytest.raises(UserError, match="longer than the model's context of 16"):
        TokenSamples(docs, ByteTokenizer(), window=16, before=24, after=4)
    with pytest.raises(UserError, match="tokens_per_doc"):
        TokenSamples(docs, ByteTokenizer(), window=64, tokens_per_doc=0)
    with pytest.raises(UserError, match="empty corpus"):
        TokenSamples(InMemoryDocuments(["", ""], ["a", "b"]), ByteTokenizer(), window=64)
