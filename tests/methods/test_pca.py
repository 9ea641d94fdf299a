"""PCA equals scikit-learn's (exact and randomized solvers), streamed from a store on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SkPCA

from benchmark.activations import ActivationStore, write_store
from methods.base import compute_stats
from methods.pca import PCA, choose_solver
from tests.methods.conftest import DEVICE


def planted(n: int = 4000, d: int = 40, offset: float = 3.0, seed: int = 0) -> np.ndarray:
    """Gaussian data ``[n, d]`` with a known, well separated spectrum in a random rotation."""
    rng = np.random.default_rng(seed)
    spectrum = np.concatenate([np.linspace(30, 5, 12), np.geomspace(1.0, 0.05, d - 12)])
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return ((rng.normal(size=(n, d)) * np.sqrt(spectrum)) @ rotation.T + offset).astype(np.float32)


def sign_free_error(ours: torch.Tensor, reference: np.ndarray) -> float:
    """Largest entry-wise difference after matching each row's sign: ``[k, d]`` vs ``[k, d]``."""
    ours = ours.double().numpy()
    signs = np.sign((ours * reference).sum(axis=1, keepdims=True))
    return float(np.abs(ours * signs - reference).max())


@pytest.mark.parametrize(("solver", "k"), [("covariance", None), ("covariance", 8), ("randomized", 8)])
def test_matches_sklearn_up_to_sign(solver, k):
    x = planted()
    basis = PCA(n_components=k, solver=solver).fit(x, seed=0, device=DEVICE)
    reference = SkPCA(n_components=k, svd_solver="full").fit(x.astype(np.float64))
    assert basis.k == (k or x.shape[1])
    assert sign_free_error(basis.directions, reference.components_) < 1e-4
    assert basis.stats["pca_solver"] == solver
    assert basis.stats["pca_variance_fraction"] == pytest.approx(reference.explained_variance_ratio_.sum(), abs=1e-5)
    assert torch.allclose(basis.bias, torch.from_numpy(reference.mean_).float(), atol=1e-5)


def test_streamed_store_with_large_offset_matches_sklearn(tmp_path):
    """Batches from an on-disk store, data far from the origin: no cancellation."""
    x = planted(n=20_000, offset=1e3, seed=1)
    store = write_store(tmp_path / "acts", iter(torch.from_numpy(x).split(3000)), np.arange(len(x)), name="m/l")
    basis = PCA(n_components=12, solver="covariance").fit(
        ActivationStore.open(tmp_path / "acts"), seed=0, device=DEVICE
    )
    reference = SkPCA(n_components=12, svd_solver="full").fit(x.astype(np.float64))
    assert store.n == 20_000
    assert sign_free_error(basis.directions, reference.components_) < 1e-4


def test_codes_skew_positive_and_full_basis_reconstructs():
    rng = np.random.default_rng(2)
    sources = rng.exponential(size=(3000, 6)) * rng.choice([-1.0, 1.0], size=6)  # skewed either way
    x = (sources @ rng.normal(size=(6, 6))).astype(np.float32)
    basis = PCA().fit(x, seed=0, device=DEVICE)
    codes = basis.encode(torch.from_numpy(x))
    centred = codes - codes.mean(dim=0)
    assert ((centred**3).mean(dim=0) > 0).all()
    assert torch.allclose(codes.mean(dim=0), torch.zeros(6), atol=1e-4)
    stats = compute_stats(basis, ActivationStore(x))
    assert stats["fvu"] < 1e-8


def test_auto_solver_picks_randomized_only_when_k_much_smaller_than_d():
    assert choose_solver("auto", 100_000, 2048, 16, n_iter=6, oversample=16) == "randomized"
    assert choose_solver("auto", 100_000, 512, 256, n_iter=6, oversample=16) == "covariance"
    assert choose_solver("auto", 100_000, 64, 60, n_iter=6, oversample=16) == "covariance"


def test_randomized_with_auto_on_wide_layer_matches_exact():
    rng = np.random.default_rng(3)
    d = 300
    low = rng.normal(size=(5000, 5)) * np.array([10, 8, 6, 4, 3.0])
    x = (low @ rng.normal(size=(5, d)) / np.sqrt(d) * 4 + 0.05 * rng.normal(size=(5000, d))).astype(np.float32)
    fast = PCA(n_components=5, solver="randomized").fit(x, seed=0, device=DEVICE)
    exact = PCA(n_components=5, solver="covariance").fit(x, seed=0, device=DEVICE)
    assert sign_free_error(fast.directions, exact.directions.double().numpy()) < 1e-4


def test_same_seed_same_basis():
    x = planted()
    a = PCA(n_components=8, solver="randomized").fit(x, seed=3, device=DEVICE)
    b = PCA(n_components=8, solver="randomized").fit(x, seed=3, device=DEVICE)
    assert torch.equal(a.directions, b.directions)
