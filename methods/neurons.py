"""``neurons``: the layer's own units, the baseline every leaderboard needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import LinearBasis, Method


@dataclass(frozen=True)
class Neurons(Method):
    """Identity basis: direction ``i`` is unit ``i``; its code is the unit's value."""

    version = "1"

    def fit(self, acts, *, seed: int, device="cpu") -> LinearBasis:
        store = self.prepare(acts)
        eye = torch.eye(store.d)
        return LinearBasis(directions=eye, encoder=eye, decoder=eye)
