"""The cached-embedding machinery behind LPIPS and the perceptual distance (:mod:`metrics.features`),
on planted embeddings: fixed random vectors per stimulus, so every distance is known exactly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from metrics.base import Ranked, SimilarityMetric, TopExamples
from metrics.features import FEATURES, GramSimilarity, into_one_buffer, squared_norms


class Points(StimulusSet):
    """``n`` stimuli whose embeddings are fixed random vectors ``[n, dim]`` (far from the origin,
    as LPIPS features are: the centring must keep the Gram form exact)."""

    provides = frozenset({"images"})

    def __init__(self, n: int, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.points = (5 + rng.standard_normal((n, dim))).astype(np.float32)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.points)

    def identity(self) -> dict:
        return {"name": "points", "shape": list(self.points.shape), "seed": self.seed}


@dataclass(frozen=True)
class PointDistance(GramSimilarity, SimilarityMetric):
    """``-|x - y|^2`` between planted points, embedded ``batch`` stimuli at a time into one reused buffer."""

    batch: int = 3

    def feature_namespace(self, stimuli: StimulusSet) -> str:
        return f"points:{self.batch}"

    def raw_batches(self, stimuli: StimulusSet, idx: np.ndarray) -> Iterator[Tensor]:
        batches = (torch.from_numpy(stimuli.points[idx[s : s + self.batch]]) for s in range(0, len(idx), self.batch))
        yield from into_one_buffer(lambda x, out: x.clone() if out is None else out.copy_(x), batches)


@dataclass(frozen=True)
class PointKernel(PointDistance):
    """A similarity that is not linear in ``d2``: the set-sum shortcut must not be taken."""

    def from_squared(self, d2: Tensor) -> Tensor:
        return torch.exp(-d2 / 100)


def planted_pairs(points: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Squared distances ``[k, m, m]`` within each set, in float64 from the points themselves."""
    p = points.astype(np.float64)[sets]  # [k, m, D]
    return ((p[:, :, None] - p[:, None]) ** 2).sum(-1)


def planted_mean_d2(points: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Mean squared distance over the pairs of each set ``[k]``."""
    off = ~np.eye(sets.shape[1], dtype=bool)
    return planted_pairs(points, sets)[:, off].mean(axis=1)


def examples_for(stimuli: StimulusSet, sets: np.ndarray) -> TopExamples:
    zeros = np.zeros(sets.shape, np.float32)
    return TopExamples(stimuli, {0.0: Ranked(sets, zeros, sets[:, ::-1].copy(), zeros)})


@pytest.fixture
def sets_and_points():
    FEATURES.clear()
    stimuli = Points(n=60, dim=3000, seed=1)
    rng = np.random.default_rng(0)
    sets = np.stack([rng.choice(60, 8, replace=False) for _ in range(40)])
    yield stimuli, sets
    FEATURES.clear()


def test_set_sums_give_the_mean_pairwise_similarity(sets_and_points):
    stimuli, sets = sets_and_points
    metric = PointDistance(n=8)
    expected = -planted_mean_d2(stimuli.points, sets)
    got = metric.mean_pairwise_similarity(stimuli, sets)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # the other two routes agree: the pool's Gram matrix, and rows gathered per batch
    lookup = metric.similarity_lookup(stimuli, sets, np.arange(len(stimuli)))
    off = ~torch.eye(8, dtype=torch.bool)
    via_gram = lookup(sets, sets).double()[:, off].mean(dim=1).numpy()
    emb = metric.gather(stimuli, sets)
    via_rows = metric.pairwise(emb, emb).double()[:, off].mean(dim=1).numpy()
    np.testing.assert_allclose(via_gram, expected, rtol=1e-6)
    np.testing.assert_allclose(via_rows, expected, rtol=1e-6)
    # the protocol picks one of them and returns the same numbers
    np.testing.assert_allclose(metric.score(examples_for(stimuli, sets)), expected, rtol=1e-6)


def test_rows_embedded_in_reused_batches_are_the_planted_rows(sets_and_points):
    """Batches of 3 share one buffer: every row must be copied before the next batch overwrites it,
    and rows added after the table filled up (it grows) stay right."""
    stimuli, _ = sets_and_points
    metric = PointDistance(batch=3)
    first = np.arange(0, 30)
    rest = np.arange(30, 60)
    metric.embed(stimuli, first)
    rows = metric.embed(stimuli, np.concatenate([rest, first]))  # [60, D + 1]: centred rows, squared norms
    centre = stimuli.points[:16].astype(np.float64).mean(axis=0)
    planted = stimuli.points[np.concatenate([rest, first])] - centre
    np.testing.assert_allclose(rows[:, :-1].numpy(), planted, atol=1e-5)
    np.testing.assert_allclose(rows[:, -1].numpy(), (planted**2).sum(axis=1), rtol=1e-6)
    assert FEATURES.misses == 60  # each stimulus embedded once


def test_into_one_buffer_reuses_its_memory_and_copies_from_an_accelerator():
    inputs = [torch.full((4, 2), float(i)) for i in range(3)] + [torch.full((2, 2), 9.0)]
    seen = []
    pointers = set()
    for batch in into_one_buffer(lambda x, out: x * 2 if out is None else torch.mul(x, 2, out=out), inputs):
        seen.append(batch.clone())
        pointers.add(batch.data_ptr())
    assert len(pointers) == 1  # one buffer for every batch
    for x, y in zip(inputs, seen):
        torch.testing.assert_close(y, x * 2)


def test_a_nonlinear_similarity_skips_the_set_sum_shortcut(sets_and_points):
    stimuli, sets = sets_and_points
    metric = PointKernel(n=8)
    assert metric.mean_pairwise_similarity(stimuli, sets) is None
    expected_pairs = np.exp(-planted_pairs(stimuli.points, sets) / 100)
    off = ~np.eye(8, dtype=bool)
    np.testing.assert_allclose(
        metric.score(examples_for(stimuli, sets)), expected_pairs[:, off].mean(axis=1), rtol=1e-5
    )


def test_squared_norms_match_float64_across_column_chunks():
    rows = (3 + torch.randn(5, 40_000, generator=torch.Generator().manual_seed(0))).float()[:, :-7]
    got = squared_norms(rows)  # a strided view, three column chunks
    assert got.dtype == torch.float64 and got.shape == (5,)
    torch.testing.assert_close(got, (rows.double() ** 2).sum(dim=1), rtol=1e-7, atol=0)
