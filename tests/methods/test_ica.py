"""FastICA recovers the mixing of independent Laplace sources (Amari distance <= 0.05)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import compute_stats
from methods.ica import ICA
from methods.pca import PCA
from tests.methods.conftest import DEVICE


def amari_distance(product: np.ndarray) -> float:
    """Normalised Amari distance of ``P = unmixing @ mixing [k, k]``: 0 iff a scaled permutation."""
    p = np.abs(product)
    k = len(p)
    rows = (p.sum(axis=1) / p.max(axis=1) - 1).sum()
    cols = (p.sum(axis=0) / p.max(axis=0) - 1).sum()
    return float((rows + cols) / (2 * k * (k - 1)))


def laplace_mixture(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``acts [n, d] = sources [n, k] @ mixing.T + offset``, with ``mixing [d, k]``."""
    rng = np.random.default_rng(seed)
    sources = rng.laplace(size=(n, k))
    mixing = rng.normal(size=(d, k))
    return (sources @ mixing.T + 2.0).astype(np.float32), mixing


@pytest.mark.parametrize(("k", "d"), [(8, 8), (6, 20)])
def test_recovers_laplace_mixing(k, d):
    acts, mixing = laplace_mixture(20_000, k, d, seed=k)
    basis = ICA(n_components=k).fit(acts, seed=0, device=DEVICE)
    assert basis.stats["ica_converged"]
    assert amari_distance(basis.encoder.double().numpy() @ mixing) <= 0.05
    # directions are the unit mixing columns, up to order and sign
    true_cols = mixing / np.linalg.norm(mixing, axis=0)
    best_cos = np.abs(basis.directions.double().numpy() @ true_cols).max(axis=0)
    assert best_cos.min() > 0.99


def test_codes_unit_variance_positive_skew_and_decoder_is_pca_projection():
    acts, _ = laplace_mixture(10_000, 5, 12, seed=1)
    basis = ICA(n_components=5).fit(acts, seed=0, device=DEVICE)
    codes = basis.encode(torch.from_numpy(acts))
    assert torch.allclose(codes.var(dim=0), torch.ones(5), atol=0.01)
    centred = codes - codes.mean(dim=0)
    assert ((centred**3).mean(dim=0) > 0).all()
    norms = basis.decoder.norm(dim=1)
    assert (norms[:-1] >= norms[1:]).all()  # ordered by variance
    store = ActivationStore(acts)
    pca_fvu = compute_stats(PCA(n_components=5).fit(acts, seed=0, device=DEVICE), store)["fvu"]
    assert compute_stats(basis, store)["fvu"] == pytest.approx(pca_fvu, abs=1e-5)


def test_rank_deficient_layer():
    acts, _ = laplace_mixture(5000, 4, 10, seed=2)  # rank 4 in 10 dims
    basis = ICA().fit(acts, seed=0, device=DEVICE)
    assert basis.k == 4 and basis.stats["ica_rank"] == 4
    with pytest.raises(UserError, match=r"ICA on .*rank 4.*n_components <= 4"):
        ICA(n_components=6).fit(ActivationStore(acts, name="m/layer"), seed=0, device=DEVICE)


def test_seeded():
    acts, _ = laplace_mixture(4000, 4, 6, seed=3)
    a, b = ICA(n_components=4).fit(acts, seed=5, device=DEVICE), ICA(n_components=4).fit(acts, seed=5, device=DEVICE)
    assert torch.equal(a.encoder, b.encoder)
