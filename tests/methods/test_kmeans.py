"""k-means: inertia within 1% of scikit-learn's, streamed = in memory, decoders and cosine mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans

from benchmark.errors import UserError
from methods.kmeans import KMeans, KMeansBasis, kmeans_plusplus, sq_distances
from tests.methods.conftest import DEVICE


def gaussian_mixture(n: int = 6000, k: int = 10, d: int = 8, spread: float = 2.5, seed: int = 0) -> np.ndarray:
    """``[n, d]``: ``k`` overlapping unit Gaussian clusters, far from the origin."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    labels = rng.integers(k, size=n)
    return (centres[labels] + rng.normal(size=(n, d)) + 4.0).astype(np.float32)


def inertia(x: np.ndarray, centres: torch.Tensor) -> float:
    return float(sq_distances(torch.from_numpy(x).double(), centres.double()).min(dim=1).values.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_inertia_within_one_percent_of_sklearn(seed):
    x = gaussian_mixture(seed=seed)
    basis = KMeans(n_components=10, n_init=4).fit(x, seed=seed, device=DEVICE)
    reference = SkKMeans(n_clusters=10, n_init=4, random_state=seed).fit(x)
    ours = inertia(x, basis.centroids)
    assert ours <= 1.01 * reference.inertia_
    assert basis.stats["inertia"] == pytest.approx(ours / len(x), rel=1e-4)
    assert basis.stats["kmeans_converged"] and basis.stats["empty_clusters"] == 0


def test_streamed_lloyd_equals_in_memory():
    x = gaussian_mixture(n=3000, seed=2)
    in_memory = KMeans(n_components=6).fit(x, seed=0, device=DEVICE)
    streamed = KMeans(n_components=6, max_memory_rows=1).fit(x, seed=0, device=DEVICE)
    assert torch.allclose(in_memory.centroids, streamed.centroids, atol=1e-4)


def test_codes_and_decoders():
    x = gaussian_mixture(n=2000, k=5, seed=3)
    t = torch.from_numpy(x)
    nearest = None
    for encode in ("projection", "neg_distance"):
        basis = KMeans(n_components=5, encode=encode).fit(x, seed=0, device=DEVICE)
        codes = basis.encode(t)
        dist = sq_distances(t, basis.centroids)
        nearest = basis.centroids[dist.argmin(dim=1)]
        if encode == "projection":
            assert torch.allclose(codes, t @ (basis.centroids / basis.centroids.norm(dim=1, keepdim=True)).T)
        else:
            assert torch.allclose(codes, -dist.sqrt(), atol=1e-3)
        assert torch.equal(basis.decode(codes), nearest)  # the nearest centroid, from the codes alone
    assert torch.allclose(basis.directions.norm(dim=1), torch.ones(5))


def test_cosine_recovers_directions_and_decodes_gain_shape():
    rng = np.random.default_rng(4)
    dirs = rng.normal(size=(4, 6))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    labels = rng.integers(4, size=3000)
    gains = rng.uniform(0.5, 20.0, size=(3000, 1))  # norms vary a lot: Euclidean k-means would split by norm
    x = (gains * (dirs[labels] + 0.05 * rng.normal(size=(3000, 6)))).astype(np.float32)
    basis = KMeans(n_components=4, cosine=True).fit(x, seed=0, device=DEVICE)
    assert (np.abs(basis.directions.double().numpy() @ dirs.T).max(axis=0) > 0.995).all()
    t = torch.from_numpy(x)
    codes = basis.encode(t)
    j = codes.argmax(dim=1)
    assert torch.allclose(basis.decode(codes), codes.gather(1, j[:, None]) * basis.directions[j])
    assert not KMeansBasis(directions=basis.directions, cosine=True, encoding="neg_distance").has_decoder


def test_duplicate_centres_are_reported_not_a_crash():
    x = np.repeat(np.array([[0, 0], [5, 0], [0, 5]], dtype=np.float32), 50, axis=0)
    basis = KMeans(n_components=5).fit(x, seed=0, device=DEVICE)
    assert basis.stats["empty_clusters"] == 2
    assert torch.isfinite(basis.directions).all()


def test_kmeans_plusplus_spreads_centres():
    x = torch.from_numpy(gaussian_mixture(n=2000, k=4, spread=20.0, seed=5))
    centres = kmeans_plusplus(x, 4, torch.Generator().manual_seed(0))
    assert torch.cdist(centres, centres).add(torch.eye(4) * 1e9).min() > 10


def test_bad_settings():
    x = gaussian_mixture(n=20, seed=6)
    with pytest.raises(UserError, match="KMeans on .*21 clusters.*only 20 rows"):
        KMeans(n_components=21).fit(x, seed=0, device=DEVICE)
    with pytest.raises(UserError, match="encode must be one of"):
        KMeans(n_components=2, encode="cosine").fit(x, seed=0, device=DEVICE)
    assert KMeans(n_components=12).fit(x, seed=0, device=DEVICE).k == 12  # k > d is fine for k-means
