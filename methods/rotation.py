"""``random``: a seeded random orthonormal rotation, the off-axis baseline with no learning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import LinearBasis, Method, orient_by_skew
from methods.pca import checked_store, layer_moments, where


@dataclass(frozen=True)
class RandomRotation(Method):
    """Random orthonormal basis (QR of a Gaussian matrix, Haar-distributed), seeded.

    ``n_components = None`` gives all ``d`` rows of the rotation, ``k <= d`` its first ``k``.
    Basis: directions ``[k, d]`` orthonormal rows; codes are projections ``acts [n, d] @
    directions.T -> [n, k]``, each direction's sign chosen so its codes have positive skew;
    ``decode`` projects back (exact when ``k = d``).
    """

    n_components: int | None = None
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> LinearBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); only the seed and ``d`` matter."""
        store, k = checked_store(self, acts, self.n_components)
        layer_moments(store, device=device, what=where(self, store))  # refuses a zero-variance layer
        gen = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(store.d, store.d, generator=gen, dtype=torch.float64))
        q = (q * torch.sign(torch.diagonal(r))).T.float()[:k]  # rows orthonormal, Haar measure
        sample = store.load(max_rows=20_000, seed=seed)
        sign = orient_by_skew(q, sample @ q.T)
        q = q * sign[:, None]
        return LinearBasis(directions=q, encoder=q, decoder=q)
