"""``nmf``: non-negative matrix factorisation ``X ~ W H`` of (post-ReLU) activations, in torch.

Fit: HALS (hierarchical alternating least squares; Cichocki & Phan 2009, Gillis & Glineur
2012: exact coordinate descent on one row of ``H`` or one column of ``W`` at a time, the same
updates as scikit-learn's ``solver="cd"``) on a seeded sample of at most ``max_samples`` rows,
initialised by NNDSVDa (or scaled random), minimising ``0.5 ||X - W H||_F^2``.

Encode: the non-negative least-squares codes of any activations for the fixed components
``H``: HALS sweeps over the code columns, batched, up to ``encode_iters`` sweeps.

A layer with negative values is refused unless ``shift = True``: then each unit's minimum on
the fit split is subtracted first (and added back when decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, Method, unit_rows
from methods.pca import checked_store, layer_moments, resolve_device, where

INITS = ("nndsvda", "nndsvd", "random")


@torch.no_grad()
def hals_sweep(rows: Tensor, gram: Tensor, cross: Tensor, floor: float = 0.0) -> Tensor:
    """One HALS sweep, in place, over the rows of ``rows [k, p]`` minimising
    ``0.5 tr(R^T G R) - tr(C^T R)`` subject to ``R >= floor``, with ``gram G [k, k]`` and
    ``cross C [k, p]``. Returns ``rows``."""
    diag = torch.diagonal(gram).clamp_min(1e-12)
    for j in range(rows.shape[0]):
        step = (cross[j] - gram[j] @ rows) / diag[j]
        rows[j] = (rows[j] + step).clamp_min(floor)
    return rows


@torch.no_grad()
def nnls_codes(x: Tensor, components: Tensor, *, iters: int = 100, tol: float = 1e-5) -> Tensor:
    """Non-negative codes ``[n, k]`` minimising ``||x - codes @ components||`` for ``x [n, d]``
    and fixed ``components [k, d]`` (HALS sweeps; stops when the codes change by less than
    ``tol`` relative)."""
    gram = components @ components.T  # [k, k]
    cross = components @ x.T.contiguous()  # [k, n]
    codes_t = (cross / torch.diagonal(gram).clamp_min(1e-12)[:, None]).clamp_min(0) / components.shape[0]
    for it in range(iters):
        before = codes_t.clone() if it % 10 == 9 else None
        hals_sweep(codes_t, gram, cross)
        if before is not None and float((codes_t - before).norm()) <= tol * float(codes_t.norm()) + 1e-30:
            break
    return codes_t.T.contiguous()


def nndsvd_init(x: Tensor, k: int, variant: str) -> tuple[Tensor, Tensor]:
    """NNDSVD initialisation (Boutsidis & Gallopoulos 2008) of ``W [m, k]``, ``H [k, d]`` for
    ``x [m, d] >= 0``; ``"nndsvda"`` fills zeros with the mean of ``x`` (scikit-learn's rule)."""
    u, s, vt = torch.linalg.svd(x.double(), full_matrices=False)
    u, s, vt = u[:, :k], s[:k], vt[:k]
    up, un, vp, vn = u.clamp_min(0), (-u).clamp_min(0), vt.clamp_min(0), (-vt).clamp_min(0)
    pos = up.norm(dim=0) * vp.norm(dim=1)  # [k]
    neg = un.norm(dim=0) * vn.norm(dim=1)
    use_pos = pos > neg
    uu = torch.where(use_pos[None, :], up / up.norm(dim=0).clamp_min(1e-30), un / un.norm(dim=0).clamp_min(1e-30))
    vv = torch.where(
        use_pos[:, None],
        vp / vp.norm(dim=1, keepdim=True).clamp_min(1e-30),
        vn / vn.norm(dim=1, keepdim=True).clamp_min(1e-30),
    )
    scale = (s * torch.where(use_pos, pos, neg)).sqrt()
    scale[0] = s[0].sqrt()  # the leading singular vectors can be taken non-negative
    uu[:, 0], vv[0] = u[:, 0].abs(), vt[0].abs()
    w, h = uu * scale[None, :], vv * scale[:, None]
    w[w < 1e-6], h[h < 1e-6] = 0, 0
    if variant == "nndsvda":
        avg = x.double().mean()
        w[w == 0], h[h == 0] = avg, avg
    return w.to(x.dtype), h.to(x.dtype)


def random_init(x: Tensor, k: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Scaled random initialisation (scikit-learn's ``init="random"``): ``|N(0, 1)| sqrt(mean(x) / k)``."""
    avg = float(x.mean() / k) ** 0.5
    h = avg * torch.randn(k, x.shape[1], generator=gen).abs()
    w = avg * torch.randn(x.shape[0], k, generator=gen).abs()
    return w.to(x.device, x.dtype), h.to(x.device, x.dtype)


@torch.no_grad()
def fit_hals(x: Tensor, w: Tensor, h: Tensor, *, max_iter: int, tol: float) -> tuple[Tensor, Tensor, int, float]:
    """Alternate HALS sweeps on ``W [m, k]`` and ``H [k, d]`` for ``x [m, d]``.

    Stops (scikit-learn's rule, checked every 10 iterations) when the error dropped by less
    than ``tol`` times the initial error. Returns ``(W, H, iterations, ||x - W H||_F)``.
    """
    x_sq = float((x.double() ** 2).sum())
    w_t = w.T.contiguous()  # [k, m]: rows are contiguous
    x_t = x.T.contiguous()  # [d, m]: ``h @ x_t`` is far faster than ``h @ x.T`` on CPU

    def error() -> float:
        wtw = w_t @ w_t.T
        value = x_sq - 2 * float((h * (w_t @ x)).double().sum()) + float((wtw * (h @ h.T)).double().sum())
        return max(value, 0.0) ** 0.5

    start = previous = error()
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (reported)
        hals_sweep(w_t, h @ h.T, h @ x_t)
        hals_sweep(h, w_t @ w_t.T, w_t @ x)
        if it % 10 == 0:
            current = error()
            if (previous - current) / max(start, 1e-30) < tol:
                break
            previous = current
    return w_t.T, h, it, error()


@dataclass
class NMFBasis(Basis):
    """Non-negative components read out by non-negative least squares.

    Attributes:
        components: ``[k, d]`` non-negative rows ``H`` (directions are their unit rows).
        shift: ``[d]`` subtracted before encoding, added after decoding (zero unless fitted
            with ``shift = True``).
        encode_iters: HALS sweeps per encode.
    """

    kind: ClassVar[str] = "nmf"
    components: Tensor | None = None
    shift: Tensor | None = None
    encode_iters: int = 100

    def __post_init__(self) -> None:
        if self.components is None:
            self.components = self.directions.clone()
        if self.shift is None:
            self.shift = torch.zeros(self.directions.shape[1], dtype=self.directions.dtype)
        # the same memory layout before and after save/load, so codes are bit-identical
        self.components, self.shift = self.components.contiguous(), self.shift.contiguous()

    def encode(self, acts: Tensor) -> Tensor:
        """Non-negative codes ``[n, k]`` of ``acts [n, d]``."""
        return nnls_codes(acts - self.shift, self.components, iters=self.encode_iters)

    def encode_with_preactivation(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """``(codes, preactivation)``, both ``[n, k]``. The preactivation is what the NNLS update
        ``h_j <- max(0, h_j + r . H_j / |H_j|^2)`` thresholds at its fixed point (``r`` the
        residual): the code where it is positive, ``min(r . H_j / |H_j|^2, 0)`` where it is zero
        (how strongly the residual points away from the component)."""
        x = acts - self.shift
        codes = nnls_codes(x, self.components, iters=self.encode_iters)
        residual = x - codes @ self.components
        gap = residual @ self.components.T / (self.components * self.components).sum(1).clamp_min(1e-12)
        return codes, torch.where(codes > 0, codes, gap.clamp_max(0))

    def decode(self, codes: Tensor) -> Tensor:
        """``codes [n, k] @ components + shift`` -> ``[n, d]``."""
        return codes @ self.components + self.shift


@dataclass(frozen=True)
class NMF(Method):
    """Non-negative matrix factorisation; directions are the unit components.

    Args (fields):
        n_components: number of components (None: ``d``); at most ``d``.
        shift: subtract each unit's fit-split minimum first (for layers with negative values).
        init: ``"nndsvda"`` (default, as scikit-learn), ``"nndsvd"`` or ``"random"``.
        max_iter, tol: HALS iterations and stopping tolerance (scikit-learn's rule).
        max_samples: rows of the seeded fit sample.
        encode_iters: HALS sweeps when encoding.

    Stats: ``nmf_iterations``, ``nmf_reconstruction_error`` (Frobenius, on the fit sample),
    ``dead_components`` (components that are all zero), ``nmf_shift``.
    """

    n_components: int | None = None
    shift: bool = False
    init: str = "nndsvda"
    max_iter: int = 200
    tol: float = 1e-4
    max_samples: int = 50_000
    encode_iters: int = 100
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> NMFBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); returns a basis of ``k`` components."""
        device = resolve_device(device)
        store, k = checked_store(self, acts, self.n_components)
        what = where(self, store)
        if self.init not in INITS:
            raise UserError(f"{what}: init must be one of {INITS}, got {self.init!r}")
        moments = layer_moments(store, device=device, what=what)
        lowest = float(moments.minimum.min())
        if lowest < 0 and not self.shift:
            unit = int(moments.minimum.argmin())
            raise UserError(
                f"{what}: NMF needs non-negative activations but the layer has negative values "
                f"(minimum {lowest:.4g} in unit {unit}); use a post-ReLU layer or set shift = true"
            )
        offset = moments.minimum.float() if self.shift else torch.zeros_like(moments.minimum).float()
        x = store.load(max_rows=self.max_samples, seed=seed, device=device) - offset  # [m, d] >= 0
        gen = torch.Generator().manual_seed(seed)
        w, h = random_init(x, k, gen) if self.init == "random" else nndsvd_init(x, k, self.init)
        w, h, iterations, err = fit_hals(x, w, h, max_iter=self.max_iter, tol=self.tol)
        components = h.cpu()
        stats = {
            "nmf_iterations": iterations,
            "nmf_reconstruction_error": err,
            "dead_components": int((components.abs().sum(dim=1) == 0).sum()),
            "nmf_shift": self.shift,
        }
        return NMFBasis(
            directions=unit_rows(components),
            components=components,
            shift=offset.cpu(),
            encode_iters=self.encode_iters,
            stats=stats,
        )
