"""The baselines: neurons (identity) and random (seeded Haar rotation, skew-oriented)."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.activations import ActivationStore
from methods.base import compute_stats
from methods.neurons import Neurons
from methods.rotation import RandomRotation
from tests.methods.conftest import DEVICE, toy_layer


def test_neurons_codes_are_the_units():
    store = toy_layer(d=9)
    basis = Neurons().fit(store, seed=0, device=DEVICE)
    x = torch.from_numpy(store.acts.copy())
    assert torch.equal(basis.encode(x), x) and torch.equal(basis.decode(x), x)
    assert compute_stats(basis, store)["fvu"] < 1e-10


def test_neurons_k_keeps_highest_variance_units():
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 5.0, 0.1, 3.0, 4.0, 0.5])
    acts = (rng.normal(size=(500, 6)) * scales).astype(np.float32)
    basis = Neurons(n_components=3).fit(acts, seed=0, device=DEVICE)
    assert basis.stats["units"] == [1, 3, 4]
    assert torch.equal(basis.encode(torch.from_numpy(acts)), torch.from_numpy(acts[:, [1, 3, 4]]))


def test_random_rotation_is_orthonormal_seeded_and_skew_oriented():
    store = toy_layer(d=10)
    a = RandomRotation().fit(store, seed=1, device=DEVICE)
    assert torch.allclose(a.directions @ a.directions.T, torch.eye(10), atol=1e-5)
    assert torch.equal(a.directions, RandomRotation().fit(store, seed=1, device=DEVICE).directions)
    assert not torch.allclose(a.directions.abs(), RandomRotation().fit(store, seed=2, device=DEVICE).directions.abs())
    codes = a.encode(torch.from_numpy(store.acts.copy()))
    centred = codes - codes.mean(dim=0)
    assert ((centred**3).mean(dim=0) > 0).all()
    assert compute_stats(a, store)["fvu"] < 1e-8
    part = RandomRotation(n_components=4).fit(store, seed=1, device=DEVICE)
    assert part.k == 4 and torch.allclose(part.directions.abs(), a.directions[:4].abs())


def test_random_rotation_is_not_axis_aligned():
    """Haar rotations spread each direction over the units: no row is close to a neuron."""
    basis = RandomRotation().fit(ActivationStore(toy_layer(d=64).acts), seed=0, device=DEVICE)
    assert basis.directions.abs().max() < 0.9
    assert basis.directions.abs().max(dim=1).values.mean() < 0.6
