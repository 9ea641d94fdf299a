"""Save/load round trip (safetensors + JSON) of every registered method's basis gives identical codes."""

from __future__ import annotations

import json

import pytest
import torch

from methods.base import Basis
from tests.methods.conftest import DEVICE, make_method, method_names, toy_layer


@pytest.mark.parametrize("name", method_names())
def test_round_trip_gives_identical_codes(name, tmp_path):
    method = make_method(name)
    store = toy_layer()
    basis = method.fit(store, seed=0, device=DEVICE).to("cpu")
    basis.stats["fit_seconds"] = 0.5
    basis.save(tmp_path / name)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))
    json.loads((tmp_path / name / "basis.json").read_text())  # plain JSON
    loaded = Basis.load(tmp_path / name)
    assert type(loaded) is type(basis) and loaded.kind == basis.kind
    x = torch.from_numpy(store.acts[:200].copy())
    codes = basis.encode(x)
    assert codes.shape == (200, basis.k)
    assert torch.equal(loaded.encode(x), codes)
    assert torch.equal(loaded.directions, basis.directions)
    assert loaded.stats == basis.stats
    assert loaded.has_decoder == basis.has_decoder
    if basis.has_decoder:
        assert torch.equal(loaded.decode(codes), basis.decode(codes))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("kmeans", {"cosine": True}),
        ("kmeans", {"encode": "neg_distance"}),
        ("nmf", {"shift": True}),
        ("pca", {"solver": "randomized", "n_components": 3}),
    ],
)
def test_round_trip_of_variants(name, params, tmp_path):
    store = toy_layer()
    if params.get("shift"):
        store = type(store)(store.acts - 1.0, name=store.name)
    basis = make_method(name, **params).fit(store, seed=1, device=DEVICE).to("cpu")
    basis.save(tmp_path)
    loaded = Basis.load(tmp_path)
    x = torch.from_numpy(store.acts[:100].copy())
    assert torch.equal(loaded.encode(x), basis.encode(x))
    for field in ("cosine", "encoding"):
        assert getattr(loaded, field, None) == getattr(basis, field, None)
