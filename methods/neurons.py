"""``neurons``: the layer's own units, the baseline every leaderboard needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import LinearBasis, Method
from methods.pca import checked_store, layer_moments, where


@dataclass(frozen=True)
class Neurons(Method):
    """Identity basis: direction ``i`` is unit ``i``; its code is the unit's value.

    ``n_components = None`` keeps all ``d`` units; a number ``k`` keeps the ``k`` units with
    the largest variance on the fit split (ties by index), in unit order. Basis: directions
    ``[k, d]`` one-hot rows, ``encode(acts [n, d]) -> acts[:, units]``, ``decode`` puts the
    kept units back (zeros elsewhere). Stats: ``units`` (the kept unit indices, when ``k < d``).
    """

    n_components: int | None = None
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> LinearBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); returns the one-hot basis."""
        store, k = checked_store(self, acts, self.n_components)
        moments = layer_moments(store, device=device, what=where(self, store))
        eye = torch.eye(store.d)
        if k == store.d:
            return LinearBasis(directions=eye, encoder=eye, decoder=eye)
        order = torch.sort(-moments.var.cpu(), stable=True).indices[:k]
        units = torch.sort(order).values
        rows = eye[units]
        return LinearBasis(directions=rows, encoder=rows, decoder=rows, stats={"units": units.tolist()})
