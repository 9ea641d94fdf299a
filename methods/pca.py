"""``pca``: top principal directions of the fit activations.

Two solvers, both streamed over the store (never all activations in memory):

- ``covariance``: the exact ``[d, d]`` covariance accumulated in float64, then ``eigh``.
  One pass over the data; cost ``n d^2 + d^3``.
- ``randomized``: a streamed randomized range finder (Halko, Martinsson & Tropp 2011,
  subspace iteration on the covariance operator ``v -> X_c^T X_c v / n``) followed by a
  Rayleigh-Ritz step. ``n_iter + 2`` passes; cost ``4 (n_iter + 1) n d (k + oversample)``;
  pays off when ``k << d``.

``solver = "auto"`` picks the cheaper one by that cost model. The randomized solver matches
the exact one to about 1e-4 where the spectrum has a gap after component ``k`` (the usual case
for network layers); on a flat spectrum individual components are ill-defined and both
randomized solvers (this one and scikit-learn's) return a rotation within the near-degenerate
subspace.

The helpers :func:`layer_moments`, :func:`where` and :func:`resolve_device` are shared by
the other classic methods (ICA, k-means, NMF, neurons, random).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import LinearBasis, Method, orient_by_skew

SOLVERS = ("auto", "covariance", "randomized")


# -- shared helpers ---------------------------------------------------------------------------
def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else as ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def where(method: Method, store: ActivationStore) -> str:
    """``"method PCA on <layer>"``: the prefix of every error message about a fit."""
    return f"method {type(method).__name__} on {store.name}"


def checked_store(
    method: Method, acts: ActivationStore | Tensor | np.ndarray, n_components: int | None, *, k_le_d: bool = True
) -> tuple[ActivationStore, int]:
    """Wrap and check ``acts`` (non-empty, finite) and resolve ``k`` (None -> d).

    Raises:
        UserError: naming the method and the layer, for an empty split, NaN/Inf values,
            ``n_components < 1``, or ``k > d`` when ``k_le_d``.
    """
    store = ActivationStore.wrap(acts)
    if n_components is not None and n_components < 1:
        raise UserError(f"{where(method, store)}: n_components must be >= 1 (or None for d), got {n_components}")
    k = store.d if n_components is None else int(n_components)
    return method.prepare(store, k, max_k=store.d if k_le_d else None), k


@dataclass
class Moments:
    """First and second moments of a store, in float64.

    Attributes:
        n: number of rows.
        mean: ``[d]``.
        var: ``[d]`` per-unit variance (biased, divided by ``n``).
        minimum: ``[d]`` per-unit minimum.
        cov: ``[d, d]`` covariance (divided by ``n``), or None when not asked for.
    """

    n: int
    mean: Tensor
    var: Tensor
    minimum: Tensor
    cov: Tensor | None = None

    @property
    def total_var(self) -> float:
        return float(self.var.sum())


@torch.no_grad()
def layer_moments(
    store: ActivationStore,
    *,
    device: torch.device | str = "cpu",
    covariance: bool = False,
    batch_size: int = 8192,
    what: str | None = None,
) -> Moments:
    """Stream ``store`` once and return its :class:`Moments`.

    Rows are shifted by the first batch's mean before accumulating, so a constant layer has
    exactly zero variance and large offsets do not cancel catastrophically.

    Args:
        what: error-message prefix (``where(method, store)``); when given, a layer whose
            total variance is zero raises a :class:`UserError`.
    """
    device = resolve_device(device)
    shift = s1 = s2 = None
    minimum = None
    n = 0
    for x in store.batches(batch_size, device=device):
        x = x.double()
        if shift is None:
            shift = x.mean(dim=0)
            s1 = torch.zeros_like(shift)
            s2 = (
                torch.zeros(store.d, store.d, dtype=torch.float64, device=device)
                if covariance
                else torch.zeros_like(shift)
            )
            minimum = torch.full_like(shift, math.inf)
        xc = x - shift
        s1 += xc.sum(dim=0)
        s2 += xc.T @ xc if covariance else (xc * xc).sum(dim=0)
        minimum = torch.minimum(minimum, x.min(dim=0).values)
        n += len(x)
    if n == 0:
        raise UserError(f"{what or store.name}: no activations (empty split)")
    m = s1 / n
    if covariance:
        cov = s2 / n - torch.outer(m, m)
        cov = (cov + cov.T) / 2
        var = torch.diagonal(cov).clamp_min(0).clone()
    else:
        cov, var = None, (s2 / n - m * m).clamp_min(0)
    moments = Moments(n=n, mean=shift + m, var=var, minimum=minimum, cov=cov)
    if what is not None and not moments.total_var > 1e-12 * float((moments.mean**2).sum()):
        raise UserError(
            f"{what}: the layer has zero variance (every row is the same), so there are no directions "
            "to find; check the layer name and the stimuli"
        )
    return moments


# -- principal components ------------------------------------------------------------------------
@dataclass
class Principal:
    """The result of :func:`principal_components`, float64 on the fit device.

    Attributes:
        mean: ``[d]``.
        components: ``[k, d]`` orthonormal rows, by decreasing variance.
        variances: ``[k]`` variance along each component (eigenvalues of the covariance).
        total_var: total variance of the layer (trace of the covariance).
        all_variances: ``[d]`` every eigenvalue (covariance solver only, else None).
        solver: which solver ran.
    """

    mean: Tensor
    components: Tensor
    variances: Tensor
    total_var: float
    all_variances: Tensor | None
    solver: str


def choose_solver(solver: str, n: int, d: int, k: int, *, n_iter: int, oversample: int) -> str:
    """Resolve ``"auto"`` by a flop count: covariance ``n d^2 + d^3``, randomized ``4 (n_iter+1) n d l``."""
    if solver not in SOLVERS:
        raise UserError(f"pca solver must be one of {SOLVERS}, got {solver!r}")
    if solver != "auto":
        return solver
    width = min(d, k + oversample)
    cost_cov = n * d * d + d**3
    cost_rand = 4 * (n_iter + 1) * n * d * width + d * width * width
    return "randomized" if width < d and cost_rand < cost_cov else "covariance"


@torch.no_grad()
def _covariance_times(store: ActivationStore, mean: Tensor, q: Tensor, device: torch.device, batch_size: int) -> Tensor:
    """``C q`` for the covariance ``C`` of ``store`` and ``q [d, l]``, streamed: ``[d, l]`` float64."""
    mean32, q32 = mean.float(), q.float()
    out = torch.zeros_like(q)
    for x in store.batches(batch_size, device=device):
        xc = x - mean32
        out += (xc.T @ (xc @ q32)).double()
    return out / store.n


@torch.no_grad()
def principal_components(
    store: ActivationStore,
    k: int,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    solver: str = "auto",
    n_iter: int = 6,
    oversample: int = 16,
    what: str | None = None,
    batch_size: int = 8192,
) -> Principal:
    """Top-``k`` principal components of ``store`` (``[n, d]``), streamed.

    Args:
        solver: ``"covariance"`` (exact), ``"randomized"`` or ``"auto"`` (see module doc).
        n_iter, oversample: subspace iterations and extra columns of the randomized solver.
        what: error-message prefix; a zero-variance layer raises a :class:`UserError`.
    """
    device = resolve_device(device)
    solver = choose_solver(solver, store.n, store.d, k, n_iter=n_iter, oversample=oversample)
    moments = layer_moments(store, device=device, covariance=solver == "covariance", what=what, batch_size=batch_size)
    if solver == "covariance":
        evals, evecs = torch.linalg.eigh(moments.cov)
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order].clamp_min(0), evecs[:, order]
        return Principal(moments.mean, evecs[:, :k].T.contiguous(), evals[:k], moments.total_var, evals, solver)
    width = min(store.d, k + oversample)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(store.d, width, generator=gen, dtype=torch.float64).to(device)
    q, _ = torch.linalg.qr(q)
    for _ in range(n_iter):
        q, _ = torch.linalg.qr(_covariance_times(store, moments.mean, q, device, batch_size))
    cq = _covariance_times(store, moments.mean, q, device, batch_size)
    small = q.T @ cq  # [l, l] Rayleigh-Ritz
    evals, evecs = torch.linalg.eigh((small + small.T) / 2)
    order = torch.argsort(evals, descending=True)[:k]
    comps = (q @ evecs[:, order]).T.contiguous()
    return Principal(moments.mean, comps, evals[order].clamp_min(0), moments.total_var, None, solver)


@dataclass(frozen=True)
class PCA(Method):
    """Top-``n_components`` principal directions (all ``d`` when None).

    Fit: streamed, see the module doc for ``solver`` (``"auto"``, ``"covariance"``,
    ``"randomized"``); ``n_iter`` and ``oversample`` tune the randomized solver.
    Codes are projections of centred activations ``(acts [n, d] - mean) @ components.T``
    ``-> [n, k]``, each direction oriented so its codes have positive skew. Decoding projects
    back: ``codes @ components + mean`` (exact when ``k = d``).

    Stats: ``pca_solver``, ``pca_variance_fraction`` (share of the fit variance in the ``k``
    components), ``pca_rank`` (components with non-zero variance; the others are dead).
    """

    n_components: int | None = None
    solver: str = "auto"
    n_iter: int = 6
    oversample: int = 16
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> LinearBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); returns a basis of ``k`` directions."""
        store, k = checked_store(self, acts, self.n_components)
        pc = principal_components(
            store,
            k,
            device=device,
            seed=seed,
            solver=self.solver,
            n_iter=self.n_iter,
            oversample=self.oversample,
            what=where(self, store),
        )
        comps = pc.components.float().cpu()
        mean = pc.mean.float().cpu()
        sample = store.load(max_rows=20_000, seed=seed)
        sign = orient_by_skew(comps, (sample - mean) @ comps.T)
        comps = comps * sign[:, None]
        variances = pc.variances.cpu()
        stats = {
            "pca_solver": pc.solver,
            "pca_variance_fraction": float(variances.sum() / pc.total_var),
            "pca_rank": int((variances > 1e-10 * float(variances.max())).sum()),
        }
        return LinearBasis(directions=comps, encoder=comps, bias=mean, decoder=comps, stats=stats)
