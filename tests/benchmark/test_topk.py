"""Streaming top-k equals a full sort, within bands too, in bounded memory."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.activations import ActivationStore
from benchmark.topk import StreamingExtremes, top_examples
from methods.base import LinearBasis


def test_streaming_equals_full_sort():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(5000, 8)).astype(np.float32)
    ids = np.arange(5000) + 100
    basis = LinearBasis(directions=torch.eye(8))
    store = ActivationStore(acts, ids)
    bands = top_examples(basis, store, n=20, batch_size=333)
    r = bands[0.0]
    for j in range(8):
        order = np.argsort(-acts[:, j], kind="stable")
        assert np.array_equal(np.sort(r.top_idx[j]), np.sort(ids[order[:20]]))
        assert np.allclose(r.top_val[j], acts[order[:20], j])
        low = np.argsort(acts[:, j], kind="stable")
        assert np.allclose(r.bottom_val[j], acts[low[:20], j])


def test_band_excludes_extremes():
    acts = np.arange(1000, dtype=np.float32)[:, None]
    store = ActivationStore(acts)
    bands = top_examples(LinearBasis(directions=torch.eye(1)), store, n=10, quantiles=(0.0, 0.25))
    band = bands[0.25]
    assert band.top_val.max() <= 750 and band.top_val.max() >= 740
    assert band.bottom_val.min() >= 249 and band.bottom_val.min() <= 260
    assert bands[0.0].top_val[0, 0] == 999


def test_memory_is_k_by_n():
    tracker = StreamingExtremes(k=4, n=5)
    for s in range(0, 10_000, 1000):
        tracker.update(torch.randn(1000, 4), torch.arange(s, s + 1000))
        assert tracker.top_val.shape == (4, 5) and tracker.bot_val.shape == (4, 5)
