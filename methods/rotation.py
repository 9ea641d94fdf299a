"""``random``: a seeded random orthonormal rotation, the off-axis baseline with no learning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import LinearBasis, Method, orient_by_skew


@dataclass(frozen=True)
class RandomRotation(Method):
    """Random orthonormal basis (QR of a Gaussian matrix, Haar-distributed), seeded.

    Codes are projections; each direction's sign gives its code distribution positive skew.
    """

    version = "1"

    def fit(self, acts, *, seed: int, device="cpu") -> LinearBasis:
        store = self.prepare(acts)
        gen = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(store.d, store.d, generator=gen, dtype=torch.float64))
        q = (q * torch.sign(torch.diagonal(r))).T.float()  # rows orthonormal, Haar measure
        sample = store.load(max_rows=20_000, seed=seed)
        sign = orient_by_skew(q, sample @ q.T)
        q = q * sign[:, None]
        return LinearBasis(directions=q, encoder=q, decoder=q)
