"""Sparse autoencoders: the shared :class:`SAEBasis`, ``sae_l1`` and ``sae_topk``.

:class:`SAEBasis` is the one format every SAE in the suite is read into (trained here, or
loaded from SAELens / dictionary_learning / overcomplete checkpoints)::

    encode(x [n, d]) = act((x - b_dec) @ W_enc.T + b_enc)      -> [n, k]
    decode(z [n, k]) = z @ W_dec + b_dec                        -> [n, d]
    directions       = unit rows of W_dec                       [k, d]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, Method, checked_sample, resolve_k, unit_rows

ACTIVATIONS = ("relu", "topk", "jumprelu")
RESAMPLE_POOL = 8192  # training rows kept to draw resampling targets from
DUPLICATE_COSINE = 0.9  # decoder rows closer than this count as one latent twice


@dataclass
class SAEBasis(Basis):
    """A sparse autoencoder as a basis.

    Attributes:
        W_enc: ``[k, d]`` encoder weights (one row per latent).
        b_enc: ``[k]`` encoder bias.
        W_dec: ``[k, d]`` decoder weights (one row per latent).
        b_dec: ``[d]`` decoder bias, also subtracted before encoding.
        activation: ``"relu"``, ``"topk"`` (keep the ``topk`` largest ReLU pre-activations per
            row) or ``"jumprelu"`` (``z * (z > threshold)``).
        topk: active latents per sample for ``"topk"``.
        threshold: ``[k]`` thresholds for ``"jumprelu"``.
        directions: ``[k, d]`` unit rows of ``W_dec`` (derived when not given).
    """

    kind: ClassVar[str] = "sae"
    directions: Tensor | None = None
    W_enc: Tensor | None = None
    b_enc: Tensor | None = None
    W_dec: Tensor | None = None
    b_dec: Tensor | None = None
    activation: str = "relu"
    topk: int | None = None
    threshold: Tensor | None = None

    def __post_init__(self) -> None:
        if self.W_enc is None or self.W_dec is None:
            raise UserError("SAEBasis needs W_enc [k, d] and W_dec [k, d]")
        k, d = self.W_dec.shape
        if tuple(self.W_enc.shape) != (k, d):
            raise UserError(f"SAEBasis: W_enc has shape {tuple(self.W_enc.shape)}, W_dec {(k, d)}; they must match")
        if self.b_enc is None:
            self.b_enc = torch.zeros(k, dtype=self.W_enc.dtype, device=self.W_enc.device)
        if self.b_dec is None:
            self.b_dec = torch.zeros(d, dtype=self.W_dec.dtype, device=self.W_dec.device)
        if self.activation not in ACTIVATIONS:
            raise UserError(f"SAEBasis: unknown activation {self.activation!r} (valid: {', '.join(ACTIVATIONS)})")
        if self.activation == "topk" and (self.topk is None or not 1 <= int(self.topk) <= k):
            raise UserError(f"SAEBasis: activation 'topk' needs 1 <= topk <= {k}, got {self.topk}")
        if self.activation == "jumprelu" and self.threshold is None:
            raise UserError("SAEBasis: activation 'jumprelu' needs threshold [k]")
        if self.directions is None:
            self.directions = unit_rows(self.W_dec.detach().float())

    def pre_activations(self, acts: Tensor) -> Tensor:
        """``(acts - b_dec) @ W_enc.T + b_enc``: ``[n, k]`` for ``acts [n, d]``."""
        x = acts.to(self.W_enc.dtype)
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.T)

    def encode(self, acts: Tensor) -> Tensor:
        """Non-negative codes ``[n, k]`` for ``acts [n, d]``."""
        return self._activate(self.pre_activations(acts))[0]

    def _activate(self, pre: Tensor) -> tuple[Tensor, Tensor | float]:
        """Codes ``[n, k]`` from pre-activations ``pre [n, k]``, and the gate each pre-activation
        must pass (0 for ReLU, the thresholds ``[k]`` for JumpReLU, per row for TopK ``[n, 1]``:
        the row's ``topk``-th largest pre-activation, at least 0)."""
        if self.activation == "relu":
            return torch.relu(pre), 0.0
        if self.activation == "topk":
            vals, idx = pre.topk(int(self.topk), dim=1)
            codes = torch.zeros_like(pre).scatter_(1, idx, torch.relu(vals))
            return codes, vals[:, -1:].clamp_min(0)
        return pre * (pre > self.threshold), self.threshold

    def encode_with_preactivation(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """``(codes, preactivation)``, both ``[n, k]``: the preactivation is the code where it is
        non-zero and ``min(pre - gate, 0)`` where it is zero (how far the pre-activation is
        below what would activate it). For ReLU that is the pre-activation itself."""
        pre = self.pre_activations(acts)
        codes, gate = self._activate(pre)
        return codes, torch.where(codes != 0, codes, (pre - gate).clamp_max(0))

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[n, d]`` from ``codes [n, k]``."""
        return codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec


# -- sparse kernels for TopK training ---------------------------------------------------------


def _by_latent(idx: Tensor, n_latents: int) -> tuple[Tensor, Tensor, Tensor]:
    """Group the entries of ``idx [n, m]`` by latent: CSR row pointers ``[k + 1]``, the sample of
    each entry in latent order ``[n * m]`` and the order itself ``[n * m]``."""
    flat = idx.reshape(-1)
    if flat.device.type == "cpu":  # numpy's stable sort of small ints is a radix sort
        small = flat.numpy().astype(np.int16 if n_latents <= 32767 else np.int32)
        order = torch.from_numpy(np.argsort(small, kind="stable"))
    else:
        order = torch.argsort(flat)
    counts = torch.bincount(flat, minlength=n_latents)
    crow = torch.zeros(n_latents + 1, dtype=torch.int64, device=flat.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow, torch.div(order, idx.shape[1], rounding_mode="floor"), order


def _latent_matmul(groups: tuple[Tensor, Tensor, Tensor], values: Tensor, dense: Tensor) -> Tensor:
    """``S^T @ dense`` -> ``[k, d]`` where ``S [n, k]`` holds ``values [n, m]`` at the grouped indices."""
    crow, cols, order = groups
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        sparse = torch.sparse_csr_tensor(
            crow,
            cols,
            values.reshape(-1)[order].to(dense.dtype),
            (crow.shape[0] - 1, dense.shape[0]),
            check_invariants=False,
        )
        return sparse @ dense


def sparse_decode(vals: Tensor, idx: Tensor, w_dec: Tensor) -> Tensor:
    """``sum_j vals[:, j] * W_dec[idx[:, j]]``: ``[n, d]`` from ``vals, idx [n, m]``, ``W_dec [k, d]``."""
    return torch.nn.functional.embedding_bag(idx, w_dec, per_sample_weights=vals.to(w_dec.dtype), mode="sum")


def sparse_decode_with_grad(vals: Tensor, idx: Tensor, w_dec: Tensor) -> tuple[Tensor, Any]:
    """Like :func:`sparse_decode`, plus a function mapping ``d loss / d recon [n, d]`` to
    ``d loss / d vals [n, m]`` (a gathered dot product per entry; nothing ``[n, m, d]`` is formed)."""
    with torch.enable_grad():
        leaf = vals.detach().to(w_dec.dtype).requires_grad_(True)
        recon = torch.nn.functional.embedding_bag(idx, w_dec.detach(), per_sample_weights=leaf, mode="sum")

    def grad_vals(grad_recon: Tensor) -> Tensor:
        return torch.autograd.grad(recon, leaf, grad_recon)[0]

    return recon.detach(), grad_vals


def _project_out_parallel(grad: Tensor, w_dec: Tensor) -> Tensor:
    """Remove from ``grad [k, d]`` the component parallel to each unit row of ``w_dec [k, d]``."""
    return grad - (grad * w_dec).sum(dim=1, keepdim=True) * w_dec


def geometric_median(x: Tensor, iters: int = 20) -> Tensor:
    """Weiszfeld's geometric median of the rows of ``x [n, d]`` -> ``[d]``."""
    median = x.mean(dim=0)
    for _ in range(iters):
        weights = 1.0 / (x - median).norm(dim=1).clamp_min(1e-8)
        median = (weights[:, None] * x).sum(dim=0) / weights.sum()
    return median


# -- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SAEMethod(Method):
    """What both SAEs share: width, optimiser, data scaling, streaming loop, export to :class:`SAEBasis`.

    Activations are scaled by one constant so that ``E ||x||^2 = d`` while training (so that
    coefficients and learning rates carry over between layers); the scale is folded back into
    the returned weights, so the basis reads raw activations.
    """

    n_latents: int | None = None
    expansion: float = 4.0
    lr: float = 1e-3
    batch_size: int = 4096
    epochs: int = 10
    n_tokens: int | None = None
    lr_decay_fraction: float = 0.2
    bf16: bool = False
    resample_until: float = 0.5
    weak_fraction: float = 0.0

    def _check(self, store, where: str) -> None:
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"{where}: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.resample_until <= 1.0:
            raise UserError(f"{where}: resample_until must be in [0, 1], got {self.resample_until}")
        if not 0.0 <= self.weak_fraction < 1.0:
            raise UserError(f"{where}: weak_fraction must be in [0, 1), got {self.weak_fraction}")

    def _weak(self, energy: Tensor) -> Tensor:
        """``[k]`` mask of the latents to resample as dead: whose summed squared activation since
        the last check ``energy [k]`` is at most ``weak_fraction`` x the median latent's (with
        ``weak_fraction`` 0: the latents that never fired)."""
        return energy <= self.weak_fraction * energy.median()

    def _setup(self, acts, seed: int, device):
        store = self.prepare(acts)
        where = f"method {type(self).__name__} on {store.name}"
        self._check(store, where)
        try:
            k = resolve_k(self.n_latents, store.d, self.expansion)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        sample = checked_sample(store, where, seed)
        scale = math.sqrt(store.d / float((sample**2).sum(1).mean()))
        gen = torch.Generator().manual_seed(seed)
        w_dec = unit_rows(torch.randn(k, store.d, generator=gen))
        b_dec = geometric_median(sample * scale)
        params = {
            "W_enc": w_dec.clone(),
            "b_enc": torch.zeros(k),
            "W_dec": w_dec,
            "b_dec": b_dec,
        }
        params = {n: p.to(device).requires_grad_(True) for n, p in params.items()}
        steps_per_epoch = math.ceil(store.n / self.batch_size)
        total = self.epochs * steps_per_epoch
        if self.n_tokens is not None:
            total = max(1, math.ceil(self.n_tokens / self.batch_size))
        pool = (sample[:RESAMPLE_POOL] * scale).to(device)
        return store, where, k, scale, gen, params, total, pool

    def _batches(self, store, seed: int, device, total: int):
        """Shuffled batches, epoch after epoch, until ``total`` steps."""
        step = 0
        epoch = 0
        while step < total:
            for x in store.batches(self.batch_size, device=device, shuffle=True, seed=seed * 1000 + epoch):
                if step >= total:
                    return
                yield step, x
                step += 1
            epoch += 1

    def _lr_at(self, step: int, total: int) -> float:
        """Constant, then linear decay to 0 over the last ``lr_decay_fraction`` of training."""
        decay_steps = int(total * self.lr_decay_fraction)
        if decay_steps <= 0 or step < total - decay_steps:
            return self.lr
        return self.lr * (total - step) / decay_steps

    def _encoder_pre(self, x_c: Tensor, w_enc: Tensor, b_enc: Tensor, device) -> Tensor:
        if self.bf16 and torch.device(device).type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return torch.addmm(b_enc, x_c, w_enc.T).float()
        return torch.addmm(b_enc, x_c, w_enc.T)

    @staticmethod
    def _finish_step(opt: torch.optim.Optimizer, w_dec: Tensor) -> None:
        """Adam step with the decoder gradient's parallel component removed, then unit rows again."""
        with torch.no_grad():
            w_dec.grad = _project_out_parallel(w_dec.grad, w_dec)
            opt.step()
            w_dec.div_(w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def _reconstruct(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The SAE's reconstruction ``[n, d]`` of ``x [n, d]`` (training scale)."""
        raise NotImplementedError

    @torch.no_grad()
    def _residual_targets(self, params: dict[str, Tensor], pool: Tensor, count: int, gen) -> Tensor:
        """``[count, d]`` unit residuals ``x - x_hat`` of distinct rows of ``pool [m, d]``, drawn with
        probability proportional to the squared loss (as Towards Monosemanticity draws inputs).

        A residual points at what the dictionary misses: where a sample holds one feature that no
        latent has learned, its residual is that feature (its input mixes it with ~L0 others)."""
        errs = torch.cat([x - self._reconstruct(x, params) for x in pool.split(4096)])
        losses = (errs**2).sum(dim=1)
        probs = (losses**2).double().cpu()
        if float(probs.sum()) <= 0:
            probs = torch.ones_like(probs)
        distinct = count <= int((probs > 0).sum())
        pick = torch.multinomial(probs, count, replacement=not distinct, generator=gen).to(pool.device)
        return unit_rows(errs[pick])

    @staticmethod
    @torch.no_grad()
    def _reinit_rows(opt, params: dict[str, Tensor], rows: Tensor, targets: Tensor, enc_factor: float) -> None:
        """Point latents ``rows`` at unit ``targets [len(rows), d]``: decoder row = target, encoder row =
        target x ``enc_factor`` x the mean encoder norm of the other latents, ``b_enc`` 0, Adam state reset."""
        others = torch.ones(params["W_enc"].shape[0], dtype=torch.bool, device=rows.device)
        others[rows] = False
        enc_norm = float(params["W_enc"][others].norm(dim=1).mean()) if bool(others.any()) else 1.0
        params["W_dec"][rows] = targets
        params["W_enc"][rows] = targets * (enc_factor * enc_norm)
        params["b_enc"][rows] = 0.0
        for name in ("W_enc", "W_dec", "b_enc"):
            _reset_adam_rows(opt, params[name], rows)

    @staticmethod
    @torch.no_grad()
    def _duplicates(w_dec: Tensor, fire_counts: Tensor, threshold: float = DUPLICATE_COSINE) -> Tensor:
        """``[k]`` mask: the less active latent of every pair whose unit decoder rows have
        ``|cosine| > threshold`` (ties: the higher index)."""
        cos = (w_dec @ w_dec.T).abs().fill_diagonal_(0.0)
        k = len(fire_counts)
        index = torch.arange(k, device=w_dec.device)
        more_active = (fire_counts[None, :] > fire_counts[:, None]) | (
            (fire_counts[None, :] == fire_counts[:, None]) & (index[None, :] < index[:, None])
        )
        return ((cos > threshold) & more_active).any(dim=1)

    @staticmethod
    def _export(params: dict[str, Tensor], scale: float, **kwargs: Any) -> SAEBasis:
        """Fold the training scale back: the basis reads raw activations."""
        p = {n: t.detach().float().cpu() for n, t in params.items()}
        return SAEBasis(
            W_enc=p["W_enc"] * scale,
            b_enc=p["b_enc"],
            W_dec=p["W_dec"] / scale,
            b_dec=p["b_dec"] / scale,
            **kwargs,
        )


def _reset_adam_rows(opt: torch.optim.Optimizer, param: Tensor, rows: Tensor) -> None:
    """Zero Adam's moment estimates of ``param`` at ``rows`` (first dimension)."""
    state = opt.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][rows] = 0.0


@dataclass(frozen=True)
class L1SAE(_SAEMethod):
    """ReLU sparse autoencoder with an L1 penalty (Bricken et al. 2023, Towards Monosemanticity).

    ``f = relu((x - b_dec) W_enc^T + b_enc)``, ``x_hat = f W_dec + b_dec``; loss
    ``||x - x_hat||^2 + l1_coefficient * sum_j |f_j| ||W_dec_j||`` (mean over the batch; the decoder
    rows are kept at unit norm, so the weighting by their norm is the plain L1). The decoder
    gradient's component parallel to each row is removed before each Adam step and the rows are
    renormalised after it. Every ``resample_every`` steps during the first half of training,
    latents that did not fire since the last check are re-initialised toward inputs drawn with
    probability proportional to their squared loss (encoder row: 0.2 x the mean alive encoder
    norm), with their Adam state reset.

    Args:
        l1_coefficient: weight of the L1 term with activations scaled to ``E ||x||^2 = d``.
        resample_every: steps between dead-latent checks (0: never resample).
        resample_duplicates: also resample the less active latent of any pair whose decoder rows
            have ``|cosine| > 0.9`` (an extension of the paper's scheme: duplicates are alive, so
            they are otherwise never freed for features the dictionary misses).
        resample_target: ``"input"`` (the paper: the drawn input minus ``b_dec``) or
            ``"residual"`` (the drawn sample's reconstruction error, over a pool of training rows).
        resample_until: fraction of training during which resampling happens.
        weak_fraction: latents whose summed squared activation since the last check is at most
            this fraction of the median latent's are resampled as dead (0: only those that never
            fired, as in the paper).
    """

    l1_coefficient: float = 1.0
    resample_every: int = 500
    resample_duplicates: bool = False
    resample_target: str = "input"
    version: ClassVar[str] = "2"  # 2: duplicate ties broken by index

    def _check(self, store, where: str) -> None:
        super()._check(store, where)
        if self.resample_target not in ("input", "residual"):
            raise UserError(f"{where}: resample_target must be 'input' or 'residual', got {self.resample_target!r}")

    def fit(self, acts, *, seed: int, device="cpu") -> SAEBasis:
        store, where, k, scale, gen, params, total, pool = self._setup(acts, seed, device)
        w_dec = params["W_dec"]
        opt = torch.optim.Adam(list(params.values()), lr=self.lr)
        fired = torch.zeros(k, dtype=torch.int64, device=device)
        energy = torch.zeros(k, device=device)
        resampled = 0
        loss_value = mse_value = math.nan
        for step, x in self._batches(store, seed, device, total):
            for group in opt.param_groups:
                group["lr"] = self._lr_at(step, total)
            x = x * scale
            loss_value, mse_value, per_sample, fired_now, energy_now = self._step(x, params, device)
            self._finish_step(opt, w_dec)
            fired += fired_now
            energy += energy_now
            if self.resample_every > 0 and (step + 1) % self.resample_every == 0:
                if step < total * self.resample_until:
                    mask = self._to_resample(fired, w_dec, energy)
                    if self.resample_target == "residual":
                        rows = torch.nonzero(mask).flatten()
                        if len(rows):
                            self._reinit_rows(
                                opt, params, rows, self._residual_targets(params, pool, len(rows), gen), 0.2
                            )
                        resampled += len(rows)
                    else:
                        resampled += self._resample(opt, params, mask, x, per_sample, gen)
                fired.zero_()
                energy.zero_()
        var = float(((x - x.mean(0)) ** 2).sum(1).mean())
        basis = self._export(params, scale, activation="relu")
        basis.stats.update(
            final_loss=loss_value, final_train_fvu=mse_value / max(var, 1e-30), resampled_latents=resampled
        )
        return basis

    @torch.no_grad()
    def _step(self, x: Tensor, params: dict[str, Tensor], device):
        """Forward and hand-written backward for one batch ``x [n, d]`` (five dense matmuls: the
        input gradient is never formed, ``b_dec`` gets its encoder share as ``-g_b_enc @ W_enc``).
        Sets ``.grad`` of every parameter; returns ``(loss, mse, per-sample loss [n], activations per
        latent [k], summed squared activation per latent [k])``."""
        w_enc, b_enc, w_dec, b_dec = (params[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
        n = len(x)
        x_c = x - b_dec
        pre = self._encoder_pre(x_c, w_enc, b_enc, device)  # [n, k]
        codes = torch.relu(pre)
        err = torch.addmm(b_dec, codes, w_dec).sub_(x)  # [n, d]
        per_sample = (err**2).sum(dim=1)
        mse = float(per_sample.sum()) / n
        l1 = float(codes.sum()) / n
        grad_recon = err.mul_(2.0 / n)
        grad_pre = (grad_recon @ w_dec.T).add_(self.l1_coefficient / n).mul_(pre > 0)  # [n, k]
        w_dec.grad = codes.T @ grad_recon
        w_enc.grad = grad_pre.T @ x_c
        b_enc.grad = grad_pre.sum(dim=0)
        b_dec.grad = grad_recon.sum(dim=0) - b_enc.grad @ w_enc
        return mse + self.l1_coefficient * l1, mse, per_sample, (codes > 0).sum(dim=0), (codes**2).sum(dim=0)

    @torch.no_grad()
    def _to_resample(self, fire_counts: Tensor, w_dec: Tensor, energy: Tensor | None = None) -> Tensor:
        """``[k]`` mask: latents that never fired (or are weak, see ``weak_fraction``, given the
        summed squared activations ``energy [k]``), and (with ``resample_duplicates``) the less
        active of two latents whose decoder rows nearly coincide."""
        mask = fire_counts == 0
        if energy is not None:
            mask |= self._weak(energy)
        if self.resample_duplicates:
            mask |= self._duplicates(w_dec, fire_counts)
        return mask

    def _reconstruct(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        pre = torch.addmm(params["b_enc"], x - params["b_dec"], params["W_enc"].T)
        return torch.addmm(params["b_dec"], torch.relu(pre), params["W_dec"])

    @torch.no_grad()
    def _resample(self, opt, params, dead: Tensor, x: Tensor, losses: Tensor, gen) -> int:
        """Towards Monosemanticity resampling of the ``dead [k]`` latents toward high-loss inputs."""
        dead_idx = torch.nonzero(dead).flatten()
        if len(dead_idx) == 0:
            return 0
        probs = (losses**2).double().cpu()
        if float(probs.sum()) <= 0:
            return 0
        pick = torch.multinomial(probs, len(dead_idx), replacement=True, generator=gen).to(x.device)
        inputs = unit_rows(x[pick] - params["b_dec"])
        alive = ~dead
        enc_norm = float(params["W_enc"][alive].norm(dim=1).mean()) if bool(alive.any()) else 1.0
        params["W_dec"][dead_idx] = inputs
        params["W_enc"][dead_idx] = inputs * (0.2 * enc_norm)
        params["b_enc"][dead_idx] = 0.0
        for name in ("W_enc", "W_dec", "b_enc"):
            _reset_adam_rows(opt, params[name], dead_idx)
        return len(dead_idx)


@dataclass(frozen=True)
class TopKSAE(_SAEMethod):
    """TopK sparse autoencoder with the AuxK loss (Gao et al. 2024).

    ``z = topk(relu((x - b_dec) W_enc^T + b_enc), k)``, ``x_hat = z W_dec + b_dec``; loss
    ``||x - x_hat||^2 + auxk_coefficient * ||e - e_hat||^2`` where ``e = x - x_hat`` and
    ``e_hat`` is the reconstruction from the ``aux_k`` largest pre-activations among dead latents
    (no activation during the last ``dead_tokens`` tokens). ``W_enc`` starts as the decoder's
    transpose; decoder rows stay at unit norm (parallel gradient removed).

    Only the encoder is a dense matmul. The decoder is an embedding bag over the ``k`` active rows
    and all gradients are written out by hand: the weight gradients are sparse ``[latents, n] @
    [n, d]`` products over the active entries, so a step costs about one dense matmul.

    Args:
        k: active latents per sample.
        auxk_coefficient: weight of the AuxK loss.
        aux_k: latents in the AuxK reconstruction (default ``d / 2``).
        dead_tokens: tokens without activation after which a latent counts as dead (default: a
            tenth of the training tokens, at least one batch and at most Gao et al.'s 10M).
        resample_every: steps between checks (0, the default, as in Gao et al.: never) at which
            latents that did not fire since the last check, and (with ``resample_duplicates``)
            the less active of two latents whose decoder rows have ``|cosine| > 0.9``, are
            pointed at the reconstruction errors of high-loss training rows (during the first
            ``resample_until`` of training).
        resample_duplicates: see ``resample_every``.
        weak_fraction: at a check, latents whose summed squared activation since the last check
            is at most this fraction of the median latent's are resampled too (0: only those that
            never fired). Rarely firing, weak partial copies of frequent features are what a TopK
            SAE wastes latents on.
    """

    k: int = 32
    auxk_coefficient: float = 1.0 / 32.0
    aux_k: int | None = None
    dead_tokens: int | None = None
    resample_every: int = 0
    resample_duplicates: bool = True
    version: ClassVar[str] = "1"

    def _check(self, store, where: str) -> None:
        super()._check(store, where)
        try:
            width = resolve_k(self.n_latents, store.d, self.expansion)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        if not 1 <= self.k <= width:
            raise UserError(f"{where}: k must be between 1 and the number of latents ({width}), got {self.k}")

    def fit(self, acts, *, seed: int, device="cpu") -> SAEBasis:
        store, where, width, scale, gen, params, total, pool = self._setup(acts, seed, device)
        opt = torch.optim.Adam(list(params.values()), lr=self.lr)
        fired = torch.zeros(width, dtype=torch.int64, device=device)
        energy = torch.zeros(width, device=device)
        resampled = 0
        aux_k = self.aux_k if self.aux_k is not None else max(1, store.d // 2)
        last_fired = torch.zeros(width, dtype=torch.int64, device=device)
        window = self.dead_tokens
        if window is None:
            window = min(10_000_000, max(self.batch_size, total * self.batch_size // 10))
        tokens = 0
        loss_value = mse_value = math.nan
        for step, x in self._batches(store, seed, device, total):
            for group in opt.param_groups:
                group["lr"] = self._lr_at(step, total)
            tokens += len(x)
            dead = (tokens - last_fired) > window
            mse, aux, idx, acts = self._step(x * scale, params, dead, aux_k, device)
            self._finish_step(opt, params["W_dec"])
            last_fired[idx[acts > 0]] = tokens
            loss_value, mse_value = mse + self.auxk_coefficient * aux, mse
            if self.resample_every > 0:
                fired.index_add_(0, idx.reshape(-1), (acts > 0).reshape(-1).to(fired.dtype))
                energy.index_add_(0, idx.reshape(-1), acts.reshape(-1) ** 2)
                if (step + 1) % self.resample_every == 0:
                    if step < total * self.resample_until:
                        mask = self._weak(energy)
                        if self.resample_duplicates:
                            mask |= self._duplicates(params["W_dec"], fired)
                        rows = torch.nonzero(mask).flatten()
                        if len(rows):
                            self._reinit_rows(
                                opt, params, rows, self._residual_targets(params, pool, len(rows), gen), 1.0
                            )
                            last_fired[rows] = tokens
                        resampled += len(rows)
                    fired.zero_()
                    energy.zero_()
        dead_now = int(((tokens - last_fired) > window).sum())
        basis = self._export(params, scale, activation="topk", topk=int(self.k))
        basis.stats.update(
            final_loss=loss_value, final_train_mse=mse_value, dead_latents_at_end=dead_now, resampled_latents=resampled
        )
        return basis

    @torch.no_grad()
    def _step(self, x: Tensor, params: dict[str, Tensor], dead: Tensor, aux_k: int, device):
        """Forward and hand-written backward for one batch ``x [n, d]``; sets ``.grad`` of every
        parameter and returns ``(mse, aux_loss, active latents idx [n, k], their activations [n, k])``."""
        w_enc, b_enc, w_dec, b_dec = (params[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
        n, width = len(x), w_enc.shape[0]
        x_c = x - b_dec
        pre = self._encoder_pre(x_c, w_enc, b_enc, device)  # [n, width]: the one dense matmul
        vals, idx = pre.topk(self.k, dim=1)
        acts = torch.relu(vals)
        recon, grad_acts_of = sparse_decode_with_grad(acts, idx, w_dec)
        err = recon + b_dec - x  # [n, d]
        mse = float((err**2).sum() / n)
        grad_recon = err * (2.0 / n)
        g_w_enc, g_b_enc, g_w_dec = self._latent_grads(
            idx, vals, acts, grad_acts_of(grad_recon), grad_recon, x_c, width
        )
        g_b_dec = grad_recon.sum(0)
        aux = 0.0
        n_dead = int(dead.sum())
        if n_dead > 0 and self.auxk_coefficient > 0:
            dead_idx = torch.nonzero(dead).flatten()
            a_vals, a_pos = pre[:, dead_idx].topk(min(aux_k, n_dead), dim=1)
            a_idx = dead_idx[a_pos]
            a_acts = torch.relu(a_vals)
            a_recon, a_grad_of = sparse_decode_with_grad(a_acts, a_idx, w_dec)
            a_err = a_recon + err  # e_hat - e, with e = x - x_hat = -err (held fixed)
            aux = float((a_err**2).sum() / n)
            a_grad = a_err * (2.0 * self.auxk_coefficient / n)
            a_w_enc, a_b_enc, a_w_dec = self._latent_grads(a_idx, a_vals, a_acts, a_grad_of(a_grad), a_grad, x_c, width)
            g_w_enc += a_w_enc
            g_b_enc += a_b_enc
            g_w_dec += a_w_dec
        g_b_dec -= g_b_enc @ w_enc  # through x_c = x - b_dec
        w_enc.grad, b_enc.grad, w_dec.grad, b_dec.grad = g_w_enc, g_b_enc, g_w_dec, g_b_dec
        return mse, aux, idx, acts

    def _reconstruct(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        pre = torch.addmm(params["b_enc"], x - params["b_dec"], params["W_enc"].T)
        vals, idx = pre.topk(self.k, dim=1)
        return sparse_decode(torch.relu(vals), idx, params["W_dec"]) + params["b_dec"]

    @staticmethod
    def _latent_grads(idx, vals, acts, grad_acts, grad_recon, x_c, width: int):
        """Gradients of ``W_enc``, ``b_enc``, ``W_dec [width, ...]`` from the active entries ``idx [n, m]``."""
        grad_pre = grad_acts * (vals > 0)
        groups = _by_latent(idx, width)
        g_w_enc = _latent_matmul(groups, grad_pre, x_c)
        g_w_dec = _latent_matmul(groups, acts, grad_recon)
        g_b_enc = torch.zeros(width, dtype=grad_pre.dtype, device=grad_pre.device)
        g_b_enc.index_add_(0, idx.reshape(-1), grad_pre.reshape(-1))
        return g_w_enc, g_b_enc, g_w_dec
