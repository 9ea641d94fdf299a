"""``sparse_coding``: recovers planted sparse features; its objective is scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import Basis
from methods.sparse_coding import (
    SparseCoding,
    SparseCodingBasis,
    fista,
    lasso_working_set,
    lipschitz,
    objective,
    solve_lasso,
    update_dictionary,
)
from tests.methods.toy import mean_max_cosine, sparse_toy_data


@pytest.mark.slow
def test_recovers_planted_features():
    acts, features, _ = sparse_toy_data(n=20_000)  # measured: forward 0.993, reverse 0.994
    method = SparseCoding(n_components=512, alpha=0.1, epochs=5, batch_size=1024)
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


def test_working_set_codes_are_the_lasso_optimum():
    """Working-set FISTA with the optimality check gives scikit-learn's lasso objective, cold
    and warm-started, even when a sample's support outgrows the first working set."""
    decomposition = pytest.importorskip("sklearn.decomposition")
    acts, features, _ = sparse_toy_data(n=200, d=32, m=48, mean_active=8.0)
    gram, corr = features @ features.T, acts @ features.T
    ref = decomposition.sparse_encode(
        acts.double().numpy(), features.double().numpy(), algorithm="lasso_cd", alpha=0.05, max_iter=5000
    )
    ref_obj = objective(acts, torch.from_numpy(ref).float(), features, 0.05)
    cold = lasso_working_set(corr, gram, 0.05, size=4, iters=2000, tol=1e-7, rounds=30)
    warm = lasso_working_set(corr, gram, 0.05, size=4, iters=2000, tol=1e-7, rounds=30, warm=cold[:2])
    for atoms, sub_codes, unresolved in (cold, warm):
        assert not bool(unresolved.any())
        codes = torch.zeros(200, 48).scatter_add_(1, atoms, sub_codes)
        assert int((codes != 0).sum(1).max()) > 4  # the set grew
        assert torch.allclose(objective(acts, codes, features, 0.05), ref_obj, atol=1e-4)


def test_dense_codes_are_finished_by_dense_fista():
    """Samples whose codes need more atoms than the working set may hold are left unresolved by
    the working set and solved by dense FISTA: the lasso optimum either way."""
    decomposition = pytest.importorskip("sklearn.decomposition")
    gen = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(48, 32, generator=gen), dim=1)
    acts = torch.randn(100, 32, generator=gen)  # Gaussian data, small alpha: ~30 of 48 atoms active
    gram, corr = dictionary @ dictionary.T, acts @ dictionary.T
    ref = decomposition.sparse_encode(
        acts.double().numpy(), dictionary.double().numpy(), algorithm="lasso_lars", alpha=0.01
    )
    ref_obj = objective(acts, torch.from_numpy(ref).float(), dictionary, 0.01)
    assert float((torch.from_numpy(ref) != 0).sum(1).float().mean()) > 16
    _, _, unresolved = lasso_working_set(corr, gram, 0.01, size=4, max_size=8, iters=500, rounds=10)
    assert bool(unresolved.all())
    codes, _, unresolved = solve_lasso(
        corr, gram, lipschitz(gram), 0.01, size=4, max_size=8, iters=500, dense_iters=20000, tol=1e-8, rounds=10
    )
    assert bool(unresolved.all())
    assert torch.allclose(objective(acts, codes, dictionary, 0.01), ref_obj, atol=1e-4)


def test_fit_on_dense_codes_switches_to_dense_fista():
    """On data whose codes are dense (no sparse structure) the fit moves to dense FISTA rather
    than growing per-sample working sets, and the codes of its basis are the lasso optimum."""
    acts = torch.randn(3000, 32, generator=torch.Generator().manual_seed(1))
    basis = SparseCoding(n_components=48, alpha=0.01, epochs=2, batch_size=500, max_working_set=8).fit(acts, seed=0)
    batches = basis.stats["solver_batches"]
    assert batches == {"working_set": 0, "mixed": 1, "dense": 11}, batches  # dense from the second batch on
    x, d, alpha = acts[:200], basis.directions, basis.alpha
    ours = objective(x, basis.encode(x), d, alpha)  # dense FISTA (encode_iters) from the working-set codes
    dense = objective(x, fista(x, d, alpha, basis.fista_iters), d, alpha)  # the same iterations from zero
    exact = objective(x, fista(x, d, alpha, 5000), d, alpha)
    gap, dense_gap = (ours - exact) / exact, (dense - exact) / exact  # measured: both mean 1.1 %, max 3.5 %
    assert float(gap.mean()) < float(dense_gap.mean()) + 0.002 and float(gap.max()) < 0.05


def test_encode_reaches_the_lasso_optimum():
    acts, _, _ = sparse_toy_data(n=400, d=32, m=48)
    basis = SparseCoding(n_components=48, epochs=2, batch_size=128).fit(acts, seed=0)
    assert basis.working_set > 0
    ours = basis.encode(acts[:200])
    exact = fista(acts[:200], basis.directions, basis.alpha, 3000)
    gap = objective(acts[:200], ours, basis.directions, basis.alpha) - objective(
        acts[:200], exact, basis.directions, basis.alpha
    )
    assert float(gap.abs().max()) < 1e-3
    old_style = SparseCodingBasis(directions=basis.directions, alpha=basis.alpha, fista_iters=3000)  # working_set 0
    assert torch.allclose(old_style.encode(acts[:200]), exact)


def test_dictionary_update_solves_the_quadratic_with_fixed_codes():
    """With exact statistics of planted codes, block coordinate descent returns the planted atoms."""
    acts, features, codes = sparse_toy_data(n=4000, d=32, m=48)
    a, b = codes.T @ codes, codes.T @ acts
    start = torch.nn.functional.normalize(features + 0.3 * torch.randn(features.shape), dim=1)
    updated = update_dictionary(start.clone(), a, b, passes=30)
    assert torch.allclose(updated, features, atol=1e-3)


def test_dictionary_update_leaves_unused_atoms():
    acts, features, codes = sparse_toy_data(n=2000, d=32, m=48)
    codes[:, 5] = 0.0
    a, b = codes.T @ codes, codes.T @ acts
    start = torch.nn.functional.normalize(features + 0.1 * torch.randn(features.shape), dim=1)
    updated = update_dictionary(start.clone(), a, b)
    assert torch.equal(updated[5], start[5])
    assert torch.allclose(updated.norm(dim=1), torch.ones(48), atol=1e-5)


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
    with pytest.raises(UserError, match="sparse_coding.*working_set"):
        SparseCoding(working_set=0).fit(acts, seed=0)
    with pytest.raises(UserError, match="sparse_coding.*fit_tol"):
        SparseCoding(fit_tol=-1.0).fit(acts, seed=0)
