"""Bad input to every registered method: a UserError naming the method, the layer and the problem.

NaN and Inf activations, an empty split, a zero-variance layer, and (for the methods whose
directions cannot outnumber the units) ``k > d``. A dead direction is not an error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from tests.methods.conftest import DEVICE, K_AT_MOST_D, make_method, method_names, toy_layer

LAYER = "toy_model/block2.conv"


def names_method(message: str, name: str, method) -> bool:
    text = message.lower()
    return name.lower() in text or type(method).__name__.lower() in text


def check(name: str, acts: np.ndarray, problem: tuple[str, ...], **overrides) -> None:
    method = make_method(name, **overrides)
    with pytest.raises(UserError) as info:
        method.fit(ActivationStore(acts, name=LAYER), seed=0, device=DEVICE)
    message = str(info.value)
    assert names_method(message, name, method), message
    assert LAYER in message, message
    assert any(word in message.lower() for word in problem), message


def good() -> np.ndarray:
    return toy_layer(n=300, d=10).acts.copy()


@pytest.mark.parametrize("name", method_names())
def test_nan(name):
    acts = good()
    acts[17, 3] = np.nan
    check(name, acts, ("nan",))


@pytest.mark.parametrize("name", method_names())
def test_inf(name):
    acts = good()
    acts[250, 0] = -np.inf
    check(name, acts, ("inf",))


@pytest.mark.parametrize("name", method_names())
def test_empty_split(name):
    check(name, np.zeros((0, 10), dtype=np.float32), ("empty",))


@pytest.mark.parametrize("name", method_names())
def test_zero_variance_layer(name):
    check(name, np.full((300, 10), 0.7, dtype=np.float32), ("zero variance",))


@pytest.mark.parametrize("name", sorted(K_AT_MOST_D))
def test_more_directions_than_units(name):
    check(name, good(), ("at most", "d = 10"), n_components=11)


@pytest.mark.parametrize("name", method_names())
def test_bad_n_components(name):
    method = make_method(name)
    if not hasattr(method, "n_components"):
        pytest.skip(f"{name} has no n_components")
    check(name, good(), ("n_components",), n_components=0)


@pytest.mark.parametrize("name", method_names())
def test_dead_unit_is_reported_not_an_error(name):
    """A unit that never fires (a dead ReLU) leaves the fit working; stats say what is dead."""
    from methods.base import compute_stats

    acts = good()
    acts[:, 4] = 0.0
    method = make_method(name, n_components=None) if name == "neurons" else make_method(name)
    store = ActivationStore(acts, name=LAYER)
    basis = method.fit(store, seed=0, device=DEVICE)
    assert torch.isfinite(basis.directions).all()
    stats = compute_stats(basis, store)
    assert 0.0 <= stats["dead_fraction"] <= 1.0
    if name == "neurons":
        assert stats["dead_fraction"] == pytest.approx(1 / 10)
