"""``kmeans``: k-means++ initialisation then Lloyd iterations, in torch, seeded.

As in Klindt et al. (2023): the directions are the unit centroids and a sample's code for a
direction is its projection on that unit centroid (``encode = "neg_distance"`` gives the
negative distance to the centroid instead). With ``cosine = True`` the activations are scaled
to unit norm before clustering (spherical k-means by assignment).

Initialisation is scikit-learn's greedy k-means++ (``2 + log k`` candidates per centre) on a
seeded sample of at most ``init_samples`` rows. Lloyd iterations run on the whole fit split:
in memory (on the fit device) when it fits under ``max_memory_rows * d`` elements, else one
streamed pass over the store per iteration. Empty clusters are moved to the points farthest
from their centres (as scikit-learn does); clusters that stay empty are reported in the stats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, Method, unit_rows
from methods.pca import checked_store, layer_moments, resolve_device, where

ENCODINGS = ("projection", "neg_distance")


def sq_distances(x: Tensor, centres: Tensor, centre_sq: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances ``[n, k]`` between rows of ``x [n, d]`` and ``centres [k, d]``."""
    if centre_sq is None:
        centre_sq = (centres * centres).sum(dim=1)
    return ((x * x).sum(dim=1, keepdim=True) - 2 * x @ centres.T + centre_sq).clamp_min(0)


@dataclass
class KMeansBasis(Basis):
    """Centroids read out as directions.

    Attributes:
        centroids: ``[k, d]`` cluster centres in activation space (on the unit sphere's inside
            when ``cosine``).
        cosine: activations are scaled to unit norm before the distance is taken.
        encoding: ``"projection"`` (codes ``acts @ directions.T``) or ``"neg_distance"``
            (codes ``-||prep(acts) - centroid||``).

    ``decode`` maps each sample to its cluster: the nearest centroid (Euclidean), or for
    ``cosine`` with projection codes the gain-shape reconstruction ``code_j * direction_j`` of
    the best-aligned direction ``j``. Cosine clusters with distance codes have no decoder (the
    codes do not carry the activation's norm).
    """

    kind: ClassVar[str] = "kmeans"
    centroids: Tensor | None = None
    cosine: bool = False
    encoding: str = "projection"

    def __post_init__(self) -> None:
        if self.centroids is None:
            self.centroids = self.directions.clone()
        self.centroids = self.centroids.contiguous()  # same layout after save/load: identical codes

    def _prep(self, acts: Tensor) -> Tensor:
        return unit_rows(acts) if self.cosine else acts

    def encode(self, acts: Tensor) -> Tensor:
        """Codes ``[n, k]`` for ``acts [n, d]``."""
        if self.encoding == "projection":
            return acts @ self.directions.T
        return -sq_distances(self._prep(acts), self.centroids).sqrt()

    def assign(self, codes: Tensor) -> Tensor:
        """Cluster index ``[n]`` of each sample, from its codes ``[n, k]``."""
        if self.encoding == "neg_distance" or self.cosine:
            return codes.argmax(dim=1)
        norms = self.centroids.norm(dim=1)  # |x - c|^2 = |x|^2 - 2 |c| code + |c|^2
        return (codes * norms - norms * norms / 2).argmax(dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[n, d]`` from codes ``[n, k]`` (see the class doc)."""
        if not self.has_decoder:
            raise NotImplementedError("cosine k-means with neg_distance codes has no decoder")
        j = self.assign(codes)
        if self.cosine:
            return codes.gather(1, j[:, None]) * self.directions[j]
        return self.centroids[j]

    @property
    def has_decoder(self) -> bool:
        return not (self.cosine and self.encoding == "neg_distance")


@dataclass(frozen=True)
class KMeans(Method):
    """k-means++ then Lloyd; directions are the unit centroids.

    Args (fields):
        n_components: number of clusters (None: ``d``); at most the number of fit rows.
        cosine: scale activations to unit norm before clustering.
        encode: ``"projection"`` on the unit centroid, or ``"neg_distance"``.
        n_init: independent k-means++ starts; the lowest inertia wins.
        max_iter, tol: Lloyd stops when the squared centre shift is below
            ``tol * mean per-unit variance`` (scikit-learn's rule).
        init_samples: rows used by k-means++ (a seeded sample).
        max_memory_rows: fits with more rows than this (at ``d`` = 1024; scaled by ``1024 / d``)
            stream from the store each iteration instead of holding the split in memory.

    Stats: ``inertia`` (mean squared distance to the nearest centre on the fit split, in the
    clustering space), ``kmeans_iterations``, ``kmeans_converged``, ``empty_clusters``.
    """

    n_components: int | None = None
    cosine: bool = False
    encode: str = "projection"
    n_init: int = 1
    max_iter: int = 100
    tol: float = 1e-4
    init_samples: int = 20_000
    max_memory_rows: int = 200_000
    version = "1"

    def fit(self, acts, *, seed: int, device: str | torch.device = "cpu") -> KMeansBasis:
        """Fit on ``acts [n, d]`` (store, tensor or array); returns a basis of ``k`` centroids."""
        device = resolve_device(device)
        store, k = checked_store(self, acts, self.n_components, k_le_d=False)
        what = where(self, store)
        if self.encode not in ENCODINGS:
            raise UserError(f"{what}: encode must be one of {ENCODINGS}, got {self.encode!r}")
        if k > store.n:
            raise UserError(f"{what}: asks for {k} clusters but the fit split has only {store.n} rows")
        moments = layer_moments(store, device=device, what=what)
        # Centre (Euclidean) for numerical stability; k-means is translation invariant.
        offset = torch.zeros_like(moments.mean).float() if self.cosine else moments.mean.float()
        prep = (lambda x: unit_rows(x)) if self.cosine else (lambda x: x - offset)
        in_memory = store.n * store.d <= self.max_memory_rows * 1024
        data = prep(store.load(device=device)) if in_memory else None

        def chunks() -> Iterator[Tensor]:
            if data is not None:
                yield from data.split(16384)
            else:
                for x in store.batches(16384, device=device):
                    yield prep(x)

        variance = float(unit_rows(store.load(max_rows=20_000, seed=seed)).var(dim=0).mean()) if self.cosine else None
        tol = self.tol * (variance if variance is not None else moments.total_var / store.d)
        best = None
        for run in range(self.n_init):
            gen = torch.Generator().manual_seed(seed * 1009 + run)
            init_rows = prep(store.load(max_rows=self.init_samples, seed=seed + run, device=device))
            centres = kmeans_plusplus(init_rows, k, gen)
            result = lloyd(chunks, centres, max_iter=self.max_iter, tol=tol)
            if best is None or result[1] < best[1]:
                best = result
        centres, inertia, iterations, converged, empty = best
        centroids = (centres + offset).cpu()
        stats = {
            "inertia": inertia / store.n,
            "kmeans_iterations": iterations,
            "kmeans_converged": converged,
            "empty_clusters": empty,
        }
        return KMeansBasis(
            directions=unit_rows(centroids), centroids=centroids, cosine=self.cosine, encoding=self.encode, stats=stats
        )


@torch.no_grad()
def kmeans_plusplus(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Greedy k-means++ centres ``[k, d]`` chosen among the rows of ``x [m, d]`` (scikit-learn's rule)."""
    m = x.shape[0]
    trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(dim=1)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(m, (1,), generator=gen))
    centres[0] = x[first]
    closest = sq_distances(x, x[first : first + 1]).squeeze(1)  # [m]
    potential = closest.sum()
    for c in range(1, k):
        targets = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device) * potential.double()
        cumulative = torch.cumsum(closest.double(), dim=0)
        candidates = torch.searchsorted(cumulative, targets).clamp_max(m - 1)
        cand = x[candidates]  # [t, d]
        dist = (x_sq[None, :] - 2 * cand @ x.T + (cand * cand).sum(dim=1, keepdim=True)).clamp_min(0)
        dist = torch.minimum(dist, closest[None, :])  # [t, m]
        pots = dist.sum(dim=1)
        best = int(pots.argmin())
        centres[c] = cand[best]
        closest, potential = dist[best], pots[best]
    return centres


@torch.no_grad()
def lloyd(
    chunks: Callable[[], Iterator[Tensor]], centres: Tensor, *, max_iter: int, tol: float
) -> tuple[Tensor, float, int, bool, int]:
    """Lloyd iterations over the rows that ``chunks()`` yields (each call one full pass).

    Returns ``(centres [k, d], inertia (sum of squared distances), iterations, converged,
    empty clusters)``; the inertia is taken against the returned centres.
    """
    k = centres.shape[0]
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported)
        sums = torch.zeros_like(centres, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64, device=centres.device)
        far_val = torch.empty(0, device=centres.device)
        far_rows = torch.empty(0, centres.shape[1], device=centres.device, dtype=centres.dtype)
        centre_sq = (centres * centres).sum(dim=1)
        for x in chunks():
            dist, labels = sq_distances(x, centres, centre_sq).min(dim=1)
            sums.index_add_(0, labels, x.double())
            counts += torch.bincount(labels, minlength=k).double()
            far_val = torch.cat([far_val, dist])
            far_rows = torch.cat([far_rows, x])
            keep = torch.topk(far_val, min(k, len(far_val))).indices
            far_val, far_rows = far_val[keep], far_rows[keep]
        new = (sums / counts.clamp_min(1)[:, None]).to(centres.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):  # move empty clusters onto the worst-served points
            n_move = min(len(empty), len(far_rows))
            new[empty[:n_move]] = far_rows[:n_move]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol:
            converged = True
            break
    inertia = 0.0
    counts = torch.zeros(k, dtype=torch.long, device=centres.device)
    centre_sq = (centres * centres).sum(dim=1)
    for x in chunks():
        dist, labels = sq_distances(x, centres, centre_sq).min(dim=1)
        inertia += float(dist.double().sum())
        counts += torch.bincount(labels, minlength=k)
    return centres, inertia, iterations, converged, int((counts == 0).sum())
