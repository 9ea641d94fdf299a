"""Shared helpers of the method tests: registered methods with cheap settings, toy layers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore

# Fits run on the GPU when there is one (the bases come back on the CPU either way).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Small settings so every method fits a toy layer in about a second; only the fields a
# method has are used.
CHEAP = {
    "n_components": 6,
    "max_iter": 30,
    "epochs": 1,
    "steps": 200,
    "n_steps": 200,
    "total_steps": 200,
    "batch_size": 128,
    "encode_iters": 20,
    "fista_iters": 20,
    "k": 3,
    "topk": 3,
}
# Methods whose number of directions is bounded by d (k > d is an error for them).
K_AT_MOST_D = {"neurons", "random", "pca", "ica", "nmf"}


def method_names() -> list[str]:
    """Every registered built-in method except ``file`` (which loads a basis, it fits nothing)."""
    from benchmark.registry import METHODS

    return [n for n in METHODS.names() if n != "file"]


def make_method(name: str, **overrides):
    """Instantiate registered method ``name`` with cheap settings.

    Skips only when the method needs an optional package (:data:`tests.optional.OPTIONAL_PACKAGES`)
    that is not installed; any other failure to load it (a broken built-in) fails the test.
    """
    from benchmark.errors import UserError
    from benchmark.registry import METHODS
    from tests.optional import missing_optional

    try:
        cls = METHODS.get(name)
    except UserError as err:
        package = missing_optional(err)
        if package is None:
            raise
        pytest.skip(f"method {name!r} needs the optional package {package!r}, which is not installed")
    fields = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in {**CHEAP, **overrides}.items() if k in fields}
    return cls(**params)


def toy_layer(n: int = 600, d: int = 12, seed: int = 0, name: str = "toy_model/layer3") -> ActivationStore:
    """A non-negative, skewed toy layer ``[n, d]`` (sparse exponential sources, mixed)."""
    rng = np.random.default_rng(seed)
    sources = rng.exponential(size=(n, d)) * (rng.random((n, d)) < 0.3)
    mixing = np.abs(rng.normal(size=(d, d))) + 0.1 * np.eye(d)
    return ActivationStore((sources @ mixing).astype(np.float32), name=name)
