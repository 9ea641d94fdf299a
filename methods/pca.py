"""``pca``: top principal directions of the fit activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import LinearBasis, Method, orient_by_skew, resolve_k


@dataclass(frozen=True)
class PCA(Method):
    """Top-``n_components`` principal directions (all ``d`` when None).

    Streams the covariance ``[d, d]`` over batches in float64 and takes its eigenvectors;
    codes are projections of centred activations, each direction oriented to positive skew.
    Decoding is the projection back (exact when ``k = d``).
    """

    n_components: int | None = None
    version = "1"

    def fit(self, acts, *, seed: int, device="cpu") -> LinearBasis:
        store = self.prepare(acts)
        k = resolve_k(self.n_components, store.d)
        store = self.prepare(store, k, max_k=store.d)
        n = 0
        s1 = torch.zeros(store.d, dtype=torch.float64, device=device)
        s2 = torch.zeros(store.d, store.d, dtype=torch.float64, device=device)
        for x in store.batches(8192, device=device):
            x = x.double()
            s1 += x.sum(0)
            s2 += x.T @ x
            n += len(x)
        mean = s1 / n
        cov = s2 / n - torch.outer(mean, mean)
        evals, evecs = torch.linalg.eigh(cov)
        comps = evecs[:, torch.argsort(evals, descending=True)[:k]].T.float().cpu()  # [k, d]
        mean = mean.float().cpu()
        sample = store.load(max_rows=20_000, seed=seed)
        sign = orient_by_skew(comps, (sample - mean) @ comps.T)
        comps = comps * sign[:, None]
        return LinearBasis(directions=comps, encoder=comps, bias=mean, decoder=comps)
