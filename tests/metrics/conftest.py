"""Planted answers for the metric tests: an oracle "basis" over ``shapes`` with known factors.

Directions are synthetic codes over the probe stimuli, ranked exactly as the harness ranks
them (:class:`benchmark.topk.StreamingExtremes` within quantile bands): factor directions read
one value of one factor (indicator + small noise to break ties), random directions are
Gaussian noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data.shapes import FACTORS, Shapes
from benchmark.topk import StreamingExtremes
from metrics.base import TopExamples


def rank_codes(
    codes: np.ndarray, n: int, quantiles: tuple[float, ...] = (0.0,), rank_by: np.ndarray | None = None
) -> dict:
    """``{q: Ranked}`` for codes ``[N, k]`` over stimuli ``0..N-1`` (the harness's ranking), ranked
    and banded by ``rank_by [N, k]`` (the preactivation; default the codes)."""
    c = torch.as_tensor(codes, dtype=torch.float32)
    r = c if rank_by is None else torch.as_tensor(rank_by, dtype=torch.float32)
    ids = torch.arange(len(c))
    bands = {}
    for q in quantiles:
        if q > 0:
            lo, hi = torch.quantile(r, torch.tensor([q, 1 - q]), dim=0)
            tracker = StreamingExtremes(c.shape[1], n, lo, hi)
        else:
            tracker = StreamingExtremes(c.shape[1], n)
        tracker.update(c, ids, rank_by=r)
        bands[float(q)] = tracker.result(q)
    return bands


def oracle_codes(stimuli: Shapes, factors: tuple[str, ...], n_random: int, seed: int = 0):
    """Codes ``[N, k]`` and a per-direction tag (``"color=2"``, ``"random"``)."""
    rng = np.random.default_rng(seed)
    f = stimuli.factors(np.arange(len(stimuli)))
    cols, tags = [], []
    for name in factors:
        for v in range(len(FACTORS[name])):
            cols.append((f[name] == v).astype(np.float64) + 0.05 * rng.standard_normal(len(stimuli)))
            tags.append(f"{name}={v}")
    for _ in range(n_random):
        cols.append(rng.standard_normal(len(stimuli)))
        tags.append("random")
    return np.stack(cols, axis=1), tags


def auc(scores: np.ndarray, is_planted: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(is_planted.astype(int), scores))


@pytest.fixture(scope="session")
def shapes_small() -> Shapes:
    return Shapes(n=1200, size=32, seed=3)


@pytest.fixture(scope="session")
def oracle(shapes_small):
    """``(examples, tags)`` with 200 stimuli per side (enough for psychophysics) in bands 0 and 0.25."""

    def make(factors: tuple[str, ...], n_random: int = 24, n: int = 200):
        codes, tags = oracle_codes(shapes_small, factors, n_random)
        return TopExamples(shapes_small, rank_codes(codes, n, (0.0, 0.25))), np.array(tags)

    return make
