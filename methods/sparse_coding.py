"""``sparse_coding``: L1 dictionary learning with working-set FISTA and online dictionary updates.

Objective, per sample (the same as scikit-learn's ``DictionaryLearning`` and
``MiniBatchDictionaryLearning``, so values compare)::

    0.5 * ||x - z @ D||^2 + alpha * ||z||_1        x [d], z [k], D [k, d] with unit rows

Fitting alternates, over shuffled mini-batches read from the activation store, lasso codes
(FISTA, Beck & Teboulle 2009, on a small working set of atoms per sample, warm-started from
the previous epoch, with a check of the full optimality conditions; batched dense FISTA for
samples, or layers, whose codes are too dense for a small working set) and block coordinate descent
on the accumulated sufficient statistics ``A = z^T z [k, k]`` and ``B = z^T x [k, d]`` for the
dictionary (Mairal et al. 2010, online dictionary learning, with forgetting; one sweep is one
triangular solve). Atoms that no sample uses are re-initialised to
the normalised residuals of the worst-reconstructed samples.
"""

from __future__ import annotations

import contextlib
import math
import warnings
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


def _shrink(v: Tensor, thresh: Tensor, positive: bool) -> Tensor:
    """Soft threshold of ``v [n, s]`` by ``thresh [n, 1]`` (and clipping at 0 when ``positive``)."""
    if positive:
        return torch.relu(v - thresh)
    return v - torch.maximum(torch.minimum(v, thresh), -thresh)


def _reduced_fista(
    corr: Tensor, gram: Tensor, alpha: float, z: Tensor, iters: int, tol: float, positive: bool
) -> Tensor:
    """FISTA on each sample's own small lasso: ``corr [n, s]``, ``gram [n, s, s]``, start ``z [n, s]``.

    The step of sample ``i`` is ``1 / L_i`` with ``L_i`` the largest eigenvalue of its ``[s, s]``
    Gram block (power iteration, padded by 10 %, capped by the Gershgorin and Frobenius bounds,
    which are never below it; the block of a few atoms is far better conditioned than ``G``). Stops when
    the largest relative change over the batch is at most ``tol`` (checked every 4th iteration).
    """
    bound = torch.minimum(gram.abs().sum(2).amax(1), gram.flatten(1).norm(dim=1))  # [n], >= lambda_max
    v = torch.ones_like(corr)
    for _ in range(8):  # power iteration: a much closer estimate, padded, never above the bound
        v = torch.bmm(v[:, None, :], gram).squeeze(1)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    estimate = (torch.bmm(v[:, None, :], gram).squeeze(1) * v).sum(1)
    step = torch.minimum(1.1 * estimate, bound).clamp_min(1e-12).reciprocal()[:, None]  # [n, 1]
    thresh = alpha * step
    y, t = z, 1.0
    for it in range(iters):
        grad = torch.bmm(y[:, None, :], gram).squeeze(1) - corr  # y G_i
        z_new = _shrink(torch.addcmul(y, grad, step, value=-1.0), thresh, positive)
        delta = z_new - z
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = z_new + ((t - 1.0) / t_new) * delta
        z, t = z_new, t_new
        if tol > 0 and it % 4 == 3 and bool((delta.norm(dim=1) <= tol * z.norm(dim=1)).all()):
            break
    return z


def lasso_working_set(
    corr: Tensor,
    gram: Tensor,
    alpha: float,
    *,
    positive: bool = False,
    size: int = 32,
    iters: int = 100,
    tol: float = 1e-4,
    rounds: int = 8,
    slack: float = 1e-3,
    grow: int = 16,
    max_size: int = 64,
    warm: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Lasso codes of many samples, each solved on its own small working set of atoms.

    ``argmin_z 0.5 z G z^T - z c^T + alpha ||z||_1`` per sample (``c = x D^T``, ``G = D D^T``).
    Each sample keeps ``s`` atoms (its previous support first, then its largest correlations or
    gradient violations); FISTA runs on the ``[s, s]`` Gram blocks (``n s^2`` work per iteration
    instead of ``n k^2``). Then the full optimality (KKT) conditions are checked with one sparse
    product; samples with an atom outside their set that violates them (``|c_j - (zG)_j| >
    alpha``) get it added (the set grows when full) and are solved again, up to ``rounds`` times.
    The result is the exact lasso solution (to FISTA's ``tol``) whenever no violation is left.

    Args:
        corr: ``c [n, k]``.
        gram: ``G [k, k]``.
        alpha: L1 weight.
        positive: non-negative codes.
        size: first working-set size ``s``.
        iters: most FISTA iterations per round.
        tol: FISTA's relative-change stopping rule.
        rounds: most working-set rounds.
        slack: an atom violates optimality when ``|c_j - (zG)_j| > alpha (1 + slack)``.
        grow: most atoms added to a sample's set per round.
        max_size: the sets grow to at most this many atoms; a sample that needs more (dense
            codes: the working set would cost more than the full problem) is left unresolved.
        warm: ``(atoms [n, s'], codes [n, s'])`` from an earlier solve, a warm start.

    Returns:
        ``atoms [n, s]`` (sorted atom indices per sample), ``codes [n, s]`` (their codes; the
        dense codes are ``zeros(n, k).scatter_(1, atoms, codes)``) and ``unresolved [n]`` (bool:
        samples that still violate optimality after the last round, or need more than
        ``max_size`` atoms; :func:`solve_lasso` finishes them with dense FISTA).
    """
    n, k = corr.shape
    max_size = max(1, min(max_size, k))
    size = max(1, min(size, max_size))
    unresolved = torch.zeros(n, dtype=torch.bool, device=corr.device)
    score = corr.clone() if positive else corr.abs()
    dense = torch.zeros_like(corr)
    if warm is not None:
        dense.scatter_add_(1, warm[0], warm[1].to(corr.dtype))
        score.masked_fill_(dense != 0, math.inf)
    rows = torch.arange(n, device=corr.device)
    atoms_out = torch.zeros(n, size, dtype=torch.long, device=corr.device)
    codes_out = torch.zeros(n, size, dtype=corr.dtype, device=corr.device)
    for round_ in range(rounds):
        atoms = score.topk(size, dim=1, sorted=False).indices.sort(dim=1).values  # [m, s]
        sub_gram = torch.take(gram, atoms[:, :, None] * k + atoms[:, None, :])  # [m, s, s] = G[atoms][:, atoms]
        codes = _reduced_fista(corr.gather(1, atoms), sub_gram, alpha, dense.gather(1, atoms), iters, tol, positive)
        if size > atoms_out.shape[1]:
            grow = size - atoms_out.shape[1]
            atoms_out = torch.cat([atoms_out, atoms_out[:, :1].expand(-1, grow)], 1)
            codes_out = torch.cat([codes_out, codes_out.new_zeros(n, grow)], 1)
        atoms_out[rows], codes_out[rows] = atoms, codes
        if size >= k:
            break
        # KKT: for an atom with zero code, |c_j - (zG)_j| <= alpha (positive: c_j - (zG)_j <= alpha)
        grad = corr - torch.mm(_sparse_rows(atoms, codes, k), gram)
        dense = torch.zeros_like(corr).scatter_add_(1, atoms, codes)
        violation = (grad if positive else grad.abs()) - alpha * (1.0 + slack)
        violation.masked_fill_(dense != 0, -math.inf)
        bad = (violation > 0).any(dim=1)
        if not bool(bad.any()):
            break
        rows, corr, dense, violation = rows[bad], corr[bad], dense[bad], violation[bad]
        needed = (dense != 0).sum(1) + (violation > 0).sum(1).clamp(max=grow)
        too_big = needed > max_size
        if round_ == rounds - 1 or bool(too_big.all()):
            unresolved[rows] = True
            break
        unresolved[rows[too_big]] = True
        keep = ~too_big
        rows, corr, dense, violation = rows[keep], corr[keep], dense[keep], violation[keep]
        score = violation.masked_fill_(dense != 0, math.inf)
        size = min(max_size, max(size, int(needed[keep].max())))
    return atoms_out, codes_out, unresolved


def fista(
    x: Tensor | None,
    dictionary: Tensor | None,
    alpha: float,
    iters: int,
    *,
    positive: bool = False,
    gram: Tensor | None = None,
    lip: float | None = None,
    init: Tensor | None = None,
    corr: Tensor | None = None,
) -> Tensor:
    """Batched dense FISTA for ``argmin_z 0.5 ||x - z D||^2 + alpha ||z||_1``.

    Args:
        x: ``[n, d]`` samples (or None when ``corr`` is given).
        dictionary: ``D [k, d]`` (or None when ``gram`` and ``corr`` are given).
        alpha: L1 weight.
        iters: FISTA iterations.
        positive: constrain codes to be non-negative.
        gram: ``D D^T [k, k]`` when already computed; ``lip`` its largest eigenvalue.
        init: ``[n, k]`` warm start.
        corr: ``x D^T [n, k]`` when already computed.

    Returns:
        codes ``[n, k]``.
    """
    if gram is None:
        gram = dictionary @ dictionary.T
    if lip is None:
        lip = lipschitz(gram)
    step, thresh = 1.0 / lip, alpha / lip
    corr_step = (x @ dictionary.T if corr is None else corr.clone()).mul_(step)  # [n, k]
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


def solve_lasso(
    corr: Tensor,
    gram: Tensor,
    lip: float,
    alpha: float,
    *,
    positive: bool = False,
    size: int = 32,
    max_size: int = 64,
    iters: int = 100,
    dense_iters: int = 100,
    tol: float = 1e-4,
    rounds: int = 8,
    slack: float = 1e-3,
    warm: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Lasso codes by :func:`lasso_working_set`, with dense FISTA for the samples it leaves
    unresolved (codes too dense for a small working set, e.g. a layer's dense activations).

    Args: as :func:`lasso_working_set` (``corr [n, k]``, ``gram [k, k]``), plus ``lip`` (the
    largest eigenvalue of ``gram``) and ``dense_iters`` (FISTA iterations of the dense finish,
    warm-started from the working-set codes).

    Returns:
        ``codes [n, k]``, and the working set's ``atoms, sub_codes [n, s]`` (its solution, a
        warm start for the next solve) and ``unresolved [n]`` (bool: finished densely).
    """
    atoms, sub_codes, unresolved = lasso_working_set(
        corr, gram, alpha, positive=positive, size=size, max_size=max_size, iters=iters, tol=tol,
        rounds=rounds, slack=slack, warm=warm,
    )  # fmt: skip
    codes = torch.zeros_like(corr).scatter_add_(1, atoms, sub_codes)
    if bool(unresolved.any()):
        rows = torch.nonzero(unresolved).flatten()
        codes[rows] = fista(
            None, None, alpha, dense_iters, positive=positive, gram=gram, lip=lip, init=codes[rows], corr=corr[rows]
        )
    return codes, (atoms, sub_codes), unresolved


def objective(x: Tensor, codes: Tensor, dictionary: Tensor, alpha: float) -> Tensor:
    """Per-sample objective ``[n]``: ``0.5 ||x - z D||^2 + alpha ||z||_1``."""
    return 0.5 * ((x - codes @ dictionary) ** 2).sum(1) + alpha * codes.abs().sum(1)


def update_dictionary(dictionary: Tensor, a: Tensor, b: Tensor, passes: int = 1) -> Tensor:
    """Block coordinate descent on ``0.5 tr(D^T A D) - tr(D^T B)`` with unit-norm rows.

    ``dictionary [k, d]``, ``a = z^T z [k, k]``, ``b = z^T x [k, d]``; unused atoms
    (``a_jj == 0``) are left as they are. Updates in place and returns ``dictionary``.

    One sweep of atom-by-atom updates ``d_j <- (b_j - sum_{i != j} a_ji d_i) / a_jj`` is a
    Gauss-Seidel sweep on ``A D = B``, i.e. one triangular solve
    ``(diag(A) + tril(A, -1)) D' = B - triu(A, 1) D``; the rows are then scaled to unit norm.
    (The atom-by-atom loop of Mairal et al. 2010 and scikit-learn normalises each atom before
    the next uses it: ``k`` small steps instead of one solve; the same update when the atoms'
    norms change little.)
    """
    used = torch.diagonal(a) > 1e-10
    if not bool(used.any()):
        return dictionary
    lower = torch.tril(a) * used[:, None]  # unused rows: the identity, so their atoms stay
    lower.diagonal().masked_fill_(~used, 1.0)
    upper = torch.triu(a, diagonal=1) * used[:, None]
    lower = lower.double()  # float64: also the faster triangular solve on the CPU here
    for _ in range(passes):
        rhs = torch.where(used[:, None], b - upper @ dictionary, dictionary)
        solved = torch.linalg.solve_triangular(lower, rhs.double(), upper=False).to(dictionary.dtype)
        dictionary.copy_(torch.where(used[:, None], unit_rows(solved), dictionary))
    return dictionary


def _sparse_rows(atoms: Tensor, codes: Tensor, k: int) -> Tensor:
    """Codes ``z [n, k]`` from working-set ``atoms, codes [n, s]``: sparse CSR on the CPU
    (repeated atoms carry zero codes, which add nothing), dense elsewhere."""
    n, s = atoms.shape
    if atoms.device.type != "cpu":
        return torch.zeros(n, k, dtype=codes.dtype, device=codes.device).scatter_add_(1, atoms, codes)
    crow = torch.arange(0, n * s + 1, s, device=atoms.device)
    return _csr(crow, atoms.flatten(), codes.flatten(), (n, k))


def _csr(crow: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A sparse CSR tensor, without torch's warning that CSR support is in beta."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, check_invariants=False)


def _transposed_sparse(atoms: Tensor, codes: Tensor, k: int) -> Tensor:
    """``z^T [k, n]`` as a sparse CSR tensor from working-set codes ``atoms, codes [n, s]``
    (dense where no sparse product is available)."""
    n = atoms.shape[0]
    keep = codes != 0
    cols = atoms[keep]
    samples = torch.arange(n, device=atoms.device)[:, None].expand_as(atoms)[keep]
    values = codes[keep]
    if atoms.device.type != "cpu":
        return (
            torch.zeros(n, k, dtype=codes.dtype, device=codes.device)
            .index_put_((samples, cols), values, accumulate=True)
            .T
        )
    order = torch.argsort(cols, stable=True)
    crow = torch.zeros(k + 1, dtype=torch.long, device=atoms.device)
    crow[1:] = torch.cumsum(torch.bincount(cols, minlength=k), 0)
    return _csr(crow, samples[order], values[order], (k, n))


@dataclass
class SparseCodingBasis(Basis):
    """A dictionary ``D [k, d]`` (unit rows) read by L1 sparse coding.

    ``encode`` solves the lasso with the fitted ``alpha``: with ``working_set > 0`` by
    :func:`solve_lasso` (FISTA on each sample's working set of atoms, at most ``fista_iters``
    iterations per round, stopping at relative change ``tol``, until no atom outside the set
    violates optimality; samples whose codes need more than ``max_working_set`` atoms by dense
    FISTA); with ``working_set == 0`` (bases saved before it existed) by ``fista_iters``
    iterations of dense batched FISTA. ``decode(codes) = codes @ D``.
    """

    kind: ClassVar[str] = "sparse_coding"
    alpha: float = 0.1
    fista_iters: int = 100
    positive: bool = False
    tol: float = 0.0
    working_set: int = 0
    max_working_set: int = 64
    encode_rounds: ClassVar[int] = 20

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
        if self.working_set <= 0:
            return fista(x, self.directions, self.alpha, self.fista_iters, positive=self.positive, gram=gram, lip=lip)
        codes, _, _ = solve_lasso(
            x @ self.directions.T,
            gram,
            lip,
            self.alpha,
            positive=self.positive,
            size=self.working_set,
            max_size=self.max_working_set,
            iters=self.fista_iters,
            dense_iters=self.fista_iters,
            tol=self.tol,
            rounds=self.encode_rounds,
        )
        return codes

    def encode_with_preactivation(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """``(codes, preactivation)``, both ``[n, k]``. The lasso code is a soft threshold at
        ``alpha`` of ``r = z + (x - z D) D^T`` (each atom's correlation with the residual once its
        own part is added back); the preactivation is that ``r``, written so that the
        code's order is kept exactly: ``z + alpha sign(z)`` where the code is non-zero, ``r``
        clipped to ``[-alpha, alpha]`` (``[.., alpha]`` for positive codes) where it is zero."""
        codes = self.encode(acts)
        x = acts.to(self.directions.dtype)
        gram, _ = self._gram()
        r = codes + x @ self.directions.T - codes @ gram
        a = self.alpha
        inactive = r.clamp(max=a) if self.positive else r.clamp(-a, a)
        return codes, torch.where(codes != 0, codes + a * torch.sign(codes), inactive)

    def decode(self, codes: Tensor) -> Tensor:
        return codes.to(self.directions.dtype) @ self.directions


@dataclass(frozen=True)
class SparseCoding(Method):
    """L1 dictionary learning (online, mini-batch) with unit-norm atoms.

    Codes come from :func:`solve_lasso` (FISTA on each sample's few candidate atoms, then a
    check of the full optimality conditions; dense FISTA where codes are dense). Every epoch reads the same shuffled mini-batches,
    so each sample's codes from the previous epoch warm-start the next solve (kept as
    ``[n, s]`` atom indices and codes, not ``[n, k]``).

    Args:
        n_components: number of atoms ``k`` (else ``expansion * d``, else ``d``).
        expansion: atoms per activation dimension when ``n_components`` is None.
        alpha: L1 weight of the per-sample objective (absolute, as in scikit-learn).
        epochs: passes over the fit activations.
        batch_size: samples per mini-batch.
        fista_iters: most FISTA iterations per working-set round while fitting.
        fit_tol: FISTA's relative-change stopping rule while fitting.
        fit_rounds: most working-set rounds per mini-batch while fitting.
        fit_slack: while fitting, an atom outside a sample's set is added only when it violates
            optimality by more than this fraction of ``alpha``.
        working_set: first working-set size per sample (grows where needed).
        max_working_set: a sample whose codes need more atoms than this is solved by dense
            FISTA instead; once most samples of a batch do (dense activations, e.g. a
            transformer's residual stream), the rest of the fit uses dense FISTA throughout.
        encode_iters: most FISTA iterations per round of the returned basis's ``encode``.
        encode_tol: ``encode``'s relative-change stopping rule.
        warm_start: start each sample's codes from its previous epoch's.
        positive: non-negative codes.
        forget: weight of the newest mini-batch in the running statistics stays at least this
            (older codes, computed with older dictionaries, are forgotten).
        bf16: use bfloat16 autocast for the correlation matmul on CUDA (ignored on CPU).
    """

    n_components: int | None = None
    expansion: float | None = None
    alpha: float = 0.1
    epochs: int = 5
    batch_size: int = 1024
    fista_iters: int = 30
    fit_tol: float = 3e-3
    fit_rounds: int = 3
    fit_slack: float = 0.02
    working_set: int = 32
    max_working_set: int = 64
    encode_iters: int = 100
    encode_tol: float = 1e-4
    warm_start: bool = True
    positive: bool = False
    forget: float = 0.1
    bf16: bool = False
    version: ClassVar[str] = "3"

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
        for name in ("alpha", "fit_tol", "encode_tol"):
            if getattr(self, name) < 0:
                raise UserError(f"{where}: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("working_set", "max_working_set", "fit_rounds"):
            if getattr(self, name) < 1:
                raise UserError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        device = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        dictionary = self._init_dictionary(store, k, seed, gen).to(device)
        a = torch.zeros(k, k, device=device)
        b = torch.zeros(k, store.d, device=device)
        warm: dict[int, tuple[Tensor, Tensor]] = {}
        step = 0
        losses: list[float] = []
        resampled = 0
        dense_mode = False  # set once most samples of a batch need dense codes
        batches = {"working_set": 0, "mixed": 0, "dense": 0}  # solved on working sets / partly densely / densely
        for epoch in range(self.epochs):
            epoch_loss, epoch_n = 0.0, 0
            worst = None
            for batch, x in enumerate(store.batches(self.batch_size, device=device, shuffle=True, seed=seed * 1000)):
                gram = dictionary @ dictionary.T
                lip = lipschitz(gram)
                with self._autocast(device):
                    corr = (x @ dictionary.T).float()
                sparse = None  # (atoms, sub_codes [n, s]) when every sample's codes are on its working set
                if dense_mode:
                    codes = fista(None, None, self.alpha, self.fista_iters, positive=self.positive, gram=gram,
                                  lip=lip, corr=corr)  # fmt: skip
                    batches["dense"] += 1
                else:
                    codes, ws, unresolved = solve_lasso(
                        corr, gram, lip, self.alpha, positive=self.positive, size=self.working_set,
                        max_size=self.max_working_set, iters=self.fista_iters, dense_iters=self.fista_iters,
                        tol=self.fit_tol, rounds=self.fit_rounds, slack=self.fit_slack, warm=warm.get(batch),
                    )  # fmt: skip
                    if self.warm_start and epoch < self.epochs - 1:
                        warm[batch] = ws
                    if not bool(unresolved.any()):
                        sparse = ws
                    batches["mixed" if sparse is None else "working_set"] += 1
                    dense_mode = float(unresolved.float().mean()) > 0.5
                if sparse is not None:  # products with the few non-zero codes only
                    codes_sp = _sparse_rows(*sparse, k)
                    codes_t = _transposed_sparse(*sparse, k)  # z^T [k, n]
                else:
                    codes_sp, codes_t = codes, codes.T
                residual = x - torch.mm(codes_sp, dictionary)
                per_sample = 0.5 * (residual * residual).sum(1) + self.alpha * codes.abs().sum(1)
                epoch_loss += float(per_sample.sum())
                epoch_n += len(x)
                worst = (x, codes)
                step += 1
                beta = min(1.0 - self.forget, 1.0 - 1.0 / step)
                a.mul_(beta).add_(torch.mm(codes_t, codes), alpha=1.0 / len(x))  # A = z^T z
                b.mul_(beta).add_(torch.mm(codes_t, x), alpha=1.0 / len(x))  # B = z^T x
                update_dictionary(dictionary, a, b)
            losses.append(epoch_loss / max(epoch_n, 1))
            if epoch < self.epochs - 1 and worst is not None:
                resampled += self._resample_unused(dictionary, a, b, *worst, gen)
        basis = SparseCodingBasis(
            directions=unit_rows(dictionary).cpu(),
            alpha=float(self.alpha),
            fista_iters=int(self.encode_iters),
            positive=bool(self.positive),
            tol=float(self.encode_tol),
            working_set=int(self.working_set),
            max_working_set=int(self.max_working_set),
        )
        basis.stats.update(
            final_objective=losses[-1], epoch_objectives=losses, resampled_atoms=resampled, solver_batches=batches
        )
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
