"""``ica``: FastICA after whitening to ``k`` dimensions, in torch.

Whitening uses the streamed principal components of :mod:`methods.pca` (all rows); FastICA
itself (Hyvärinen 1999, parallel/symmetric version, ``logcosh`` contrast, as scikit-learn's
``FastICA(algorithm="parallel", fun="logcosh")``) runs on a seeded sample of at most
``max_samples`` whitened rows.

With ``mean [d]``, principal components ``V [k, d]``, their variances ``lam [k]`` and the
orthogonal unmixing ``W [k, k]`` of the whitened data:

- unmixing ``U = W diag(lam^-1/2) V``  ``[k, d]``: codes ``s = (x - mean) @ U.T`` ``[n, k]``
  (unit variance, independent as far as FastICA found);
- mixing ``A = V.T diag(lam^1/2) W.T`` ``[d, k]``: ``x ~ A s + mean``; the basis decoder is
  ``A.T`` and the directions (readout view) are the unit columns of ``A``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import LinearBasis, Method, orient_by_skew, unit_rows
from methods.pca import checked_store, principal_components, resolve_device, where


def symmetric_decorrelation(w: Tensor) -> Tensor:
    """``(W W^T)^{-1/2} W`` for ``w [k, k]``: the nearest matrix with orthonormal rows."""
    evals, evecs = torch.linalg.eigh(w @ w.T)
    return (evecs * evals.clamp_min(1e-30).rsqrt()) @ evecs.T @ w


@torch.no_grad()
def fastica(z: Tensor, *, seed: int, max_iter: int = 200, tol: float = 1e-4) -> tuple[Tensor, int, bool]:
    """Parallel FastICA with the ``logcosh`` contrast on whitened data ``z [m, k]``.

    Returns ``(W [k, k] float64 orthogonal unmixing, iterations, converged)``; sources are
    ``z @ W.T``. The convergence test is scikit-learn's: ``max |(|diag(W_new W^T)| - 1)| < tol``.
    """
    k = z.shape[1]
    gen = torch.Generator().manual_seed(seed)
    w = symmetric_decorrelation(torch.randn(k, k, generator=gen, dtype=torch.float64)).to(z.device)
    m = z.shape[0]
    for it in range(1, max_iter + 1):
        g = torch.tanh(z @ w.T.to(z.dtype))  # [m, k]
        g_prime_mean = (1 - g * g).mean(dim=0).double()  # [k]
        w_new = (g.T @ z).double() / m - g_prime_mean[:, None] * w
        w_new = symmetric_decorrelation(w_new)
        change = float((torch.diagonal(w_new @ w.T).abs() - 1).abs().max())
        w = w_new
        if change < tol:
            return w, it, True
    return w, max_iter, False


@dataclass(frozen=True)
class ICA(Method):
    """Independent directions: FastICA after PCA whitening to ``n_components`` dimensions.

    ``n_components = None`` uses every direction with non-zero variance (``d`` for a full-rank
    layer). FastICA runs on at most ``max_samples`` seeded rows for at most ``max_iter``
    iterations (tolerance ``tol``). Components are ordered by decreasing variance (norm of
    the mixing column), each oriented so its codes have positive skew.

    Basis: ``directions [k, d]`` unit mixing columns, ``encode(acts [n, d]) -> [n, k]`` the
    unmixing projection of centred activations, ``decode(codes [n, k]) -> [n, d]`` through the
    mixing matrix. Stats: ``ica_iterations``, ``ica_converged``, ``ica_rank``.
    """

    n_components: int | None = None
    max_samples: int = 50_000
    max_iter: int = 200
    tol: float = 1e-4
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> LinearBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); returns a basis of ``k`` directions."""
        device = resolve_device(device)
        store, k = checked_store(self, acts, self.n_components)
        what = where(self, store)
        solver = "covariance" if self.n_components is None else "auto"
        pc = principal_components(store, k, device=device, seed=seed, solver=solver, what=what)
        top = float(pc.variances[0])
        rank_vars = pc.all_variances if pc.all_variances is not None else pc.variances
        rank = int((rank_vars > 1e-6 * top).sum())
        if self.n_components is None:
            k = min(k, rank)
        elif k > rank:
            raise UserError(
                f"{what}: asks for {k} independent components but the layer has only {rank} directions with "
                f"non-zero variance (rank {rank}); use n_components <= {rank}"
            )
        comps, lam = pc.components[:k], pc.variances[:k]  # [k, d], [k] float64
        whitener = comps / lam.sqrt()[:, None]  # [k, d]
        sample = store.load(max_rows=self.max_samples, seed=seed, device=device)  # [m, d]
        z = (sample - pc.mean.float()) @ whitener.T.float()  # [m, k], unit covariance
        w, iterations, converged = fastica(z, seed=seed, max_iter=self.max_iter, tol=self.tol)
        unmixing = w @ whitener  # [k, d]
        mixing_t = w @ (comps * lam.sqrt()[:, None])  # [k, d] = A.T
        order = torch.argsort(mixing_t.norm(dim=1), descending=True)
        unmixing, mixing_t = unmixing[order].float().cpu(), mixing_t[order].float().cpu()
        mean = pc.mean.float().cpu()
        sign = orient_by_skew(mixing_t, (sample.cpu() - mean) @ unmixing.T)
        unmixing, mixing_t = unmixing * sign[:, None], mixing_t * sign[:, None]
        stats = {"ica_iterations": iterations, "ica_converged": converged, "ica_rank": rank}
        return LinearBasis(directions=unit_rows(mixing_t), encoder=unmixing, bias=mean, decoder=mixing_t, stats=stats)
