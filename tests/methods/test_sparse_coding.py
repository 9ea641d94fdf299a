"""``sparse_coding``: recovers planted sparse features; its objective is scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import Basis
from methods.sparse_coding import SparseCoding, SparseCodingBasis, fista, objective, update_dictionary
from tests.methods.toy import mean_max_cosine, sparse_toy_data


@pytest.mark.slow
def test_recovers_planted_features():
    acts, features, _ = sparse_toy_data(n=20_000)  # measured: forward 0.994, reverse 0.996 (12,000: 0.988)
    method = SparseCoding(n_components=512, alpha=0.1, epochs=5, batch_size=1024, fista_iters=15)
    basis = method.fit(ActivationStore.wrap(acts), seed=0)
    forward, reverse = mean_max_cosine(features, basis.directions)
    print(f"sparse_coding recovery: forward {forward:.4f}, reverse {reverse:.4f}, stats {basis.stats}")
    assert forward >= 0.99
    assert reverse >= 0.98  # no dead or duplicated atoms hiding behind the forward measure
    assert basis.stats["final_objective"] < basis.stats["epoch_objectives"][0]


def test_fista_reaches_the_lasso_optimum_of_scikit_learn():
    """Same per-sample objective as scikit-learn's ``sparse_encode`` (coordinate descent)."""
    decomposition = pytest.importorskip("sklearn.decomposition")
    acts, features, _ = sparse_toy_data(n=200, d=32, m=48)
    dictionary = features
    for positive in (False, True):
        ours = fista(acts, dictionary, 0.1, 500, positive=positive)
        ref = decomposition.sparse_encode(
            acts.double().numpy(),
            dictionary.double().numpy(),
            algorithm="lasso_cd",
            alpha=0.1,
            positive=positive,
            max_iter=5000,
        )
        ref = torch.from_numpy(ref).float()
        ours_obj = objective(acts, ours, dictionary, 0.1)
        ref_obj = objective(acts, ref, dictionary, 0.1)
        assert torch.allclose(ours_obj, ref_obj, atol=1e-4), float((ours_obj - ref_obj).abs().max())
        if positive:
            assert (ours >= 0).all()


def test_dictionary_update_solves_the_quadratic_with_fixed_codes():
    """With exact statistics of planted codes, block coordinate descent returns the planted atoms."""
    acts, features, codes = sparse_toy_data(n=4000, d=32, m=48)
    a, b = codes.T @ codes, codes.T @ acts
    start = torch.nn.functional.normalize(features + 0.3 * torch.randn(features.shape), dim=1)
    updated = update_dictionary(start.clone(), a, b, passes=30)
    assert torch.allclose(updated, features, atol=1e-3)


def test_positive_codes_and_round_trip(tmp_path):
    acts, _, _ = sparse_toy_data(n=2000, d=32, m=48)
    basis = SparseCoding(n_components=48, epochs=2, positive=True, batch_size=256).fit(acts, seed=3)
    codes = basis.encode(acts[:300])
    assert codes.shape == (300, 48) and (codes >= 0).all()
    basis.save(tmp_path / "sc")
    loaded = Basis.load(tmp_path / "sc")
    assert isinstance(loaded, SparseCodingBasis) and loaded.positive and loaded.alpha == basis.alpha
    assert torch.equal(loaded.encode(acts[:300]), codes)
    assert torch.allclose(loaded.decode(codes), codes @ basis.directions)


def test_same_seed_same_dictionary():
    acts, _, _ = sparse_toy_data(n=1000, d=16, m=24)
    one = SparseCoding(n_components=24, epochs=1, batch_size=256).fit(acts, seed=1)
    two = SparseCoding(n_components=24, epochs=1, batch_size=256).fit(acts, seed=1)
    assert torch.equal(one.directions, two.directions)


def test_bad_settings_name_the_method():
    acts = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    with pytest.raises(UserError, match="sparse_coding.*alpha"):
        SparseCoding(alpha=-1.0).fit(acts, seed=0)
    with pytest.raises(UserError, match="sparse_coding.*epochs"):
        SparseCoding(epochs=0).fit(acts, seed=0)
