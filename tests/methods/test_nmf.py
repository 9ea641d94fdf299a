"""NMF: reconstruction error within 1% of scikit-learn's, exact NNLS codes, negative layers refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls
from sklearn.decomposition import NMF as SkNMF

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import compute_stats
from methods.nmf import NMF, nnls_codes
from tests.methods.conftest import DEVICE


def planted(n: int = 1500, d: int = 30, k: int = 6, seed: int = 0) -> np.ndarray:
    """Non-negative ``[n, d]`` = sparse non-negative codes times non-negative parts, plus noise."""
    rng = np.random.default_rng(seed)
    codes = rng.exponential(size=(n, k)) * (rng.random((n, k)) < 0.4)
    parts = rng.exponential(size=(k, d)) * (rng.random((k, d)) < 0.5)
    return (codes @ parts + 0.1 * rng.random((n, d))).astype(np.float32)


@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_reconstruction_within_one_percent_of_sklearn(init):
    x = planted()
    basis = NMF(n_components=6, init=init).fit(x, seed=0, device=DEVICE)
    reference = SkNMF(n_components=6, init=init, random_state=0, max_iter=1000).fit(x.astype(np.float64))
    t = torch.from_numpy(x)
    ours = float((basis.decode(basis.encode(t)) - t).norm())
    assert ours <= 1.01 * reference.reconstruction_err_
    assert basis.stats["nmf_reconstruction_error"] <= 1.01 * reference.reconstruction_err_
    assert (basis.components >= 0).all() and (basis.encode(t) >= 0).all()


def test_codes_are_nonnegative_least_squares():
    rng = np.random.default_rng(1)
    components = torch.from_numpy(np.abs(rng.normal(size=(5, 12)))).float()
    x = torch.from_numpy(np.abs(rng.normal(size=(40, 12)))).float()
    codes = nnls_codes(x, components, iters=500)
    for i in range(40):
        _, best = nnls(components.double().numpy().T, x[i].double().numpy())
        ours = float((codes[i] @ components - x[i]).norm())
        assert ours <= best * (1 + 1e-4) + 1e-6


def test_recovers_planted_parts():
    rng = np.random.default_rng(2)
    parts = np.zeros((4, 16))
    for j in range(4):
        parts[j, 4 * j : 4 * j + 4] = rng.uniform(0.5, 1.5, size=4)  # disjoint supports: identifiable
    x = (rng.exponential(size=(2000, 4)) @ parts).astype(np.float32)
    basis = NMF(n_components=4).fit(x, seed=0, device=DEVICE)
    truth = parts / np.linalg.norm(parts, axis=1, keepdims=True)
    assert (basis.directions.double().numpy() @ truth.T).max(axis=0).min() > 0.99


def test_negative_layer_refused_unless_shift():
    x = planted(seed=3) - 0.5
    store = ActivationStore(x, name="cnn/conv2_preact")
    with pytest.raises(UserError, match=r"NMF on cnn/conv2_preact.*negative values.*shift = true"):
        NMF(n_components=4).fit(store, seed=0, device=DEVICE)
    basis = NMF(n_components=4, shift=True).fit(store, seed=0, device=DEVICE)
    assert torch.allclose(basis.shift, torch.from_numpy(x.min(axis=0)))
    t = torch.from_numpy(x)
    unexplained = float(((basis.decode(basis.encode(t)) - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())
    assert unexplained < 0.2 and basis.stats["nmf_shift"]


def test_dead_component_reported():
    x = np.zeros((200, 6), dtype=np.float32)
    x[:, :2] = np.random.default_rng(4).exponential(size=(200, 2))  # rank 2, four units always 0
    basis = NMF(n_components=5, init="nndsvd").fit(x, seed=0, device=DEVICE)  # NNDSVD leaves 3 components at zero
    assert basis.stats["dead_components"] == 3
    stats = compute_stats(basis, ActivationStore(x))
    assert stats["dead_fraction"] == pytest.approx(3 / 5)
    assert stats["fvu"] < 1e-6
