"""``sparse_coding``: L1 dictionary learning with batched FISTA and online dictionary updates.

Objective, per sample (the same as scikit-learn's ``DictionaryLearning`` and
``MiniBatchDictionaryLearning``, so values compare)::

    0.5 * ||x - z @ D||^2 + alpha * ||z||_1        x [d], z [k], D [k, d] with unit rows

Fitting alternates, over shuffled mini-batches read from the activation store, batched FISTA
(Beck & Teboulle 2009) for the codes and block coordinate descent on the accumulated sufficient
statistics ``A = z^T z [k, k]`` and ``B = z^T x [k, d]`` for the dictionary (Mairal et al. 2010,
online dictionary learning, with forgetting). Atoms that no sample uses are re-initialised to
the normalised residuals of the worst-reconstructed samples.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, Method, checked_sample, resolve_k, unit_rows


def lipschitz(gram: Tensor, iters: int = 30) -> float:
    """Largest eigenvalue of the PSD matrix ``gram [k, k]`` (power iteration, slightly padded)."""
    v = torch.ones(gram.shape[0], dtype=gram.dtype, device=gram.device) / math.sqrt(gram.shape[0])
    for _ in range(iters):
        v = gram @ v
        v = v / v.norm().clamp_min(1e-30)
    return float((v @ gram @ v).clamp_min(1e-12)) * 1.02


def fista(
    x: Tensor,
    dictionary: Tensor,
    alpha: float,
    iters: int,
    *,
    positive: bool = False,
    gram: Tensor | None = None,
    lip: float | None = None,
    init: Tensor | None = None,
) -> Tensor:
    """Batched FISTA for ``argmin_z 0.5 ||x - z D||^2 + alpha ||z||_1``.

    Args:
        x: ``[n, d]`` samples.
        dictionary: ``D [k, d]``.
        alpha: L1 weight.
        iters: FISTA iterations.
        positive: constrain codes to be non-negative.
        gram: ``D D^T [k, k]`` when already computed; ``lip`` its largest eigenvalue.
        init: ``[n, k]`` warm start.

    Returns:
        codes ``[n, k]``.
    """
    if gram is None:
        gram = dictionary @ dictionary.T
    if lip is None:
        lip = lipschitz(gram)
    step, thresh = 1.0 / lip, alpha / lip
    corr_step = (x @ dictionary.T).mul_(step)  # [n, k]
    z = torch.zeros_like(corr_step) if init is None else init.clone()
    y, t = z, 1.0
    for _ in range(iters):
        v = torch.addmm(y, y, gram, alpha=-step).add_(corr_step)
        if positive:
            z_next = torch.relu(v - thresh)
        else:
            z_next = torch.sign(v) * torch.relu(v.abs() - thresh)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = z_next + ((t - 1.0) / t_next) * (z_next - z)
        z, t = z_next, t_next
    return z


def objective(x: Tensor, codes: Tensor, dictionary: Tensor, alpha: float) -> Tensor:
    """Per-sample objective ``[n]``: ``0.5 ||x - z D||^2 + alpha ||z||_1``."""
    return 0.5 * ((x - codes @ dictionary) ** 2).sum(1) + alpha * codes.abs().sum(1)


def update_dictionary(dictionary: Tensor, a: Tensor, b: Tensor, passes: int = 1) -> Tensor:
    """Block coordinate descent on ``0.5 tr(D^T A D) - tr(D^T B)`` with unit-norm rows.

    ``dictionary [k, d]``, ``a = z^T z [k, k]``, ``b = z^T x [k, d]``; unused atoms
    (``a_jj == 0``) are left as they are. Updates in place and returns ``dictionary``.
    """
    diag = torch.diagonal(a).tolist()
    for _ in range(passes):
        for j, ajj in enumerate(diag):
            if ajj <= 1e-10:
                continue
            row = dictionary[j] + (b[j] - a[j] @ dictionary) / ajj
            dictionary[j] = row / row.norm().clamp_min(1e-12)
    return dictionary


@dataclass
class SparseCodingBasis(Basis):
    """A dictionary ``D [k, d]`` (unit rows) read by L1 sparse coding.

    ``encode`` runs ``fista_iters`` iterations of batched FISTA with the fitted ``alpha``;
    ``decode(codes) = codes @ D``.
    """

    kind: ClassVar[str] = "sparse_coding"
    alpha: float = 0.1
    fista_iters: int = 100
    positive: bool = False

    def _gram(self) -> tuple[Tensor, float]:
        """``D D^T [k, k]`` and its largest eigenvalue, computed once per dictionary tensor."""
        key = (self.directions.device, self.directions.data_ptr())
        cached = self.__dict__.get("_gram_cache")
        if cached is None or cached[0] != key:
            gram = self.directions @ self.directions.T
            cached = (key, gram, lipschitz(gram))
            self.__dict__["_gram_cache"] = cached
        return cached[1], cached[2]

    def encode(self, acts: Tensor) -> Tensor:
        gram, lip = self._gram()
        x = acts.to(self.directions.dtype)
        return fista(x, self.directions, self.alpha, self.fista_iters, positive=self.positive, gram=gram, lip=lip)

    def decode(self, codes: Tensor) -> Tensor:
        return codes.to(self.directions.dtype) @ self.directions


@dataclass(frozen=True)
class SparseCoding(Method):
    """L1 dictionary learning (online, mini-batch) with unit-norm atoms.

    Args:
        n_components: number of atoms ``k`` (else ``expansion * d``, else ``d``).
        expansion: atoms per activation dimension when ``n_components`` is None.
        alpha: L1 weight of the per-sample objective (absolute, as in scikit-learn).
        epochs: passes over the fit activations.
        batch_size: samples per mini-batch.
        fista_iters: FISTA iterations per mini-batch while fitting.
        encode_iters: FISTA iterations of the returned basis's ``encode``.
        positive: non-negative codes.
        forget: weight of the newest mini-batch in the running statistics stays at least this
            (older codes, computed with older dictionaries, are forgotten).
        bf16: use bfloat16 autocast for the FISTA matmuls on CUDA (ignored on CPU).
    """

    n_components: int | None = None
    expansion: float | None = None
    alpha: float = 0.1
    epochs: int = 5
    batch_size: int = 1024
    fista_iters: int = 30
    encode_iters: int = 100
    positive: bool = False
    forget: float = 0.1
    bf16: bool = False
    version: ClassVar[str] = "1"

    def fit(self, acts, *, seed: int, device="cpu") -> SparseCodingBasis:
        store = self.prepare(acts)
        where = f"method sparse_coding on {store.name}"
        try:
            k = resolve_k(self.n_components, store.d, self.expansion)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        checked_sample(store, where, seed)
        for name in ("epochs", "batch_size", "fista_iters", "encode_iters"):
            if getattr(self, name) < 1:
                raise UserError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.alpha < 0:
            raise UserError(f"{where}: alpha must be >= 0, got {self.alpha}")
        device = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        dictionary = self._init_dictionary(store, k, seed, gen).to(device)
        a = torch.zeros(k, k, device=device)
        b = torch.zeros(k, store.d, device=device)
        step = 0
        losses: list[float] = []
        resampled = 0
        for epoch in range(self.epochs):
            epoch_loss, epoch_n = 0.0, 0
            worst = None
            for x in store.batches(self.batch_size, device=device, shuffle=True, seed=seed * 1000 + epoch):
                gram = dictionary @ dictionary.T
                with self._autocast(device):
                    codes = fista(x, dictionary, self.alpha, self.fista_iters, positive=self.positive, gram=gram)
                codes = codes.float()
                per_sample = objective(x, codes, dictionary, self.alpha)
                epoch_loss += float(per_sample.sum())
                epoch_n += len(x)
                worst = (x, codes)
                step += 1
                beta = min(1.0 - self.forget, 1.0 - 1.0 / step)
                a.mul_(beta).addmm_(codes.T, codes, alpha=1.0 / len(x))
                b.mul_(beta).addmm_(codes.T, x, alpha=1.0 / len(x))
                update_dictionary(dictionary, a, b)
            losses.append(epoch_loss / max(epoch_n, 1))
            if epoch < self.epochs - 1 and worst is not None:
                resampled += self._resample_unused(dictionary, a, b, *worst, gen)
        basis = SparseCodingBasis(
            directions=unit_rows(dictionary).cpu(),
            alpha=float(self.alpha),
            fista_iters=int(self.encode_iters),
            positive=bool(self.positive),
        )
        basis.stats.update(final_objective=losses[-1], epoch_objectives=losses, resampled_atoms=resampled)
        return basis

    def _autocast(self, device: torch.device):
        if self.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _init_dictionary(self, store, k: int, seed: int, gen: torch.Generator) -> Tensor:
        """``[k, d]``: normalised random samples (Gaussian rows where samples are zero)."""
        sample = store.load(max_rows=min(store.n, max(k, 1)), seed=seed)
        idx = torch.randint(len(sample), (k,), generator=gen) if len(sample) < k else torch.randperm(k, generator=gen)
        rows = sample[idx].clone()
        zero = rows.norm(dim=1) < 1e-8
        if bool(zero.all()):
            return torch.zeros(k, store.d)
        rows[zero] = torch.randn(int(zero.sum()), store.d, generator=gen) * rows[~zero].norm(dim=1).mean()
        return unit_rows(rows)

    def _resample_unused(self, dictionary: Tensor, a: Tensor, b: Tensor, x: Tensor, codes: Tensor, gen) -> int:
        """Re-initialise atoms no sample used (``A_jj`` ~ 0) to the residuals of the worst samples."""
        usage = torch.diagonal(a)
        unused_mask = usage <= 1e-6 * usage.max().clamp_min(1e-30)
        # duplicates: of two atoms closer than cosine 0.9, the less used one is free again
        cos = (dictionary @ dictionary.T).abs().fill_diagonal_(0.0)
        more_used = usage[None, :] > usage[:, None]
        unused_mask |= ((cos > 0.9) & more_used).any(dim=1)
        unused = torch.nonzero(unused_mask).flatten()
        if len(unused) == 0:
            return 0
        residual = x - codes @ dictionary
        order = torch.argsort(residual.norm(dim=1), descending=True)[: len(unused)]
        new = unit_rows(residual[order])
        unused = unused[: len(new)]
        dictionary[unused] = new
        a[unused] = 0.0
        a[:, unused] = 0.0
        b[unused] = 0.0
        return len(unused)
