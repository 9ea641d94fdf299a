"""Streaming top-n and bottom-n per direction, in O(k x n) memory.

Codes for all probe samples are never held at once: each chunk of codes ``[b, k]`` is merged
into running ``[k, n]`` extremes with one ``torch.topk`` per side.

Samples are ranked, and bands cut, by the basis's dense ``preactivation`` (the code where it is
non-zero, how far from activating where it is zero; :meth:`methods.base.Basis.preactivation`),
so a sparse code's zeros are ordered by real values; the values kept are the codes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from metrics.base import Ranked


def tie_keys(codes: Tensor, jitter: Tensor) -> Tensor:
    """Ranking keys ``[k, b]`` (float64) of ``codes [b, k]`` with ties broken by ``jitter [b]``
    in ``[0, 1)``: each value moves by less than half the float32 spacing at that value, so
    distinct values keep their order and equal values (a dead direction's zeros, a sparse
    code's floor) are ordered by the jitter instead of by their position in the store."""
    vals = codes.T.float()
    spacing = (torch.nextafter(vals, torch.full_like(vals, torch.inf)) - vals).double()
    return vals.double() + (jitter.double()[None, :] - 0.5) * 0.49 * spacing


class StreamingExtremes:
    """Running top-``n`` and bottom-``n`` codes per direction, optionally within a band.

    Equal codes are ranked by a seeded random key per sample (see :func:`tie_keys`), so where a
    direction's extremes are ties (a dead latent, a sparse code with fewer than ``n`` active
    samples) the tied samples are a random draw, never a run of neighbouring samples whose
    shared document or label would look like a coherent concept.

    Args:
        k: number of directions.
        n: how many extremes to keep per side.
        lower, upper: ``[k]`` band limits; codes outside ``[lower, upper]`` are ignored.
    """

    def __init__(
        self,
        k: int,
        n: int,
        lower: Tensor | None = None,
        upper: Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n = n
        self.lower, self.upper = lower, upper
        self.top_key = torch.full((k, 0), -torch.inf, dtype=torch.float64, device=device)
        self.top_val = torch.full((k, 0), -torch.inf, device=device)
        self.top_id = torch.zeros((k, 0), dtype=torch.long, device=device)
        self.bot_key = torch.full((k, 0), torch.inf, dtype=torch.float64, device=device)
        self.bot_val = torch.full((k, 0), torch.inf, device=device)
        self.bot_id = torch.zeros((k, 0), dtype=torch.long, device=device)
        self.count = torch.zeros(k, dtype=torch.long, device=device)

    def update(self, codes: Tensor, ids: Tensor, jitter: Tensor | None = None, rank_by: Tensor | None = None) -> None:
        """Merge a chunk: ``codes [b, k]``, ``ids [b]`` (sample indices), ``jitter [b]`` in
        ``[0, 1)`` (tie-breaking keys; default: a hash of the ids), ``rank_by [b, k]`` the values
        that order samples and place them in the band (default: the codes; the harness passes
        the basis's preactivation). The values kept are ``codes``."""
        if jitter is None:
            jitter = ((ids.double() * 0.6180339887498949) % 1.0).to(codes.device)
        rank_by = codes if rank_by is None else rank_by
        keys = tie_keys(rank_by, jitter)  # [k, b]
        vals = codes.T.float()
        ids_k = ids[None, :].expand_as(vals)
        if self.lower is not None:
            ranked = rank_by.T.float()
            inside = (ranked >= self.lower[:, None]) & (ranked <= self.upper[:, None])
            self.count += inside.sum(dim=1)
            top_in = torch.where(inside, keys, -torch.inf)
            bot_in = torch.where(inside, keys, torch.inf)
        else:
            self.count += vals.shape[1]
            top_in = bot_in = keys
        self.top_key, self.top_val, self.top_id = self._merge(
            self.top_key, self.top_val, self.top_id, top_in, vals, ids_k, largest=True
        )
        self.bot_key, self.bot_val, self.bot_id = self._merge(
            self.bot_key, self.bot_val, self.bot_id, bot_in, vals, ids_k, largest=False
        )

    def _merge(
        self, key: Tensor, val: Tensor, idx: Tensor, new_key: Tensor, new_val: Tensor, new_idx: Tensor, largest: bool
    ):
        k = torch.cat([key, new_key], dim=1)
        v = torch.cat([val, new_val], dim=1)
        i = torch.cat([idx, new_idx], dim=1)
        keep = min(self.n, k.shape[1])
        k, pos = torch.topk(k, keep, dim=1, largest=largest, sorted=True)
        return k, torch.gather(v, 1, pos), torch.gather(i, 1, pos)

    def result(self, quantile: float = 0.0) -> Ranked:
        """The extremes as a :class:`Ranked` (numpy), ``[k, m]`` with ``m <= n``, and each
        direction's number of samples in the band, ``count [k]``.

        ``m`` is as many as the fullest band holds (at most ``n``); a direction whose band holds
        fewer than ``m`` has filler past its ``count``: metrics that read a band check ``count``
        (the psychophysics protocol reports such a band as insufficient).
        """
        keep = min(self.n, int(self.count.max())) if len(self.count) else 0
        return Ranked(
            top_idx=self.top_id[:, :keep].cpu().numpy(),
            top_val=self.top_val[:, :keep].cpu().numpy(),
            bottom_idx=self.bot_id[:, :keep].cpu().numpy(),
            bottom_val=self.bot_val[:, :keep].cpu().numpy(),
            quantile=quantile,
            count=self.count.cpu().numpy(),
        )


#: most code values ``[rows, k]`` held at once (float32: 256 MiB)
_CODES_BUDGET = 1 << 26


def _sample_rows(basis, max_rows: int) -> int:
    """Rows of the probe sample whose codes estimate the band limits: codes ``[rows, k]`` are
    capped at ``_CODES_BUDGET`` values (wide SAEs use fewer rows)."""
    return min(max_rows, max(2048, _CODES_BUDGET // max(basis.k, 1)))


def limits_from_codes(codes: Tensor, quantiles: tuple[float, ...]) -> dict[float, tuple[Tensor, Tensor] | None]:
    """Per-direction ``(lower, upper)`` limits ``[k]`` of each central band of ``codes [m, k]``."""
    limits: dict[float, tuple[Tensor, Tensor] | None] = {0.0: None}
    wanted = [q for q in quantiles if q > 0.0]
    if not wanted:
        return limits
    qs = torch.tensor([x for q in wanted for x in (q, 1 - q)], device=codes.device)
    bounds = torch.quantile(codes.float(), qs, dim=0)  # [2Q, k]
    for i, q in enumerate(wanted):
        limits[q] = (bounds[2 * i], bounds[2 * i + 1])
    return limits


@torch.no_grad()
def band_limits(
    basis,
    store: ActivationStore,
    quantiles: tuple[float, ...],
    *,
    max_rows: int = 50_000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[float, tuple[Tensor, Tensor] | None]:
    """Per-direction ``(lower, upper)`` limits ``[k]`` of each central band of the basis's
    preactivation, estimated from up to ``max_rows`` probe samples (exact when the probe split
    is smaller)."""
    if not any(q > 0.0 for q in quantiles):
        return {0.0: None}
    rows = _sample_rows(basis, max_rows)
    codes = torch.cat([basis.preactivation(x) for x in store.sample_batches(rows, 8192, seed=seed, device=device)])
    return limits_from_codes(codes, quantiles)


@torch.no_grad()
def top_examples(
    basis,
    store: ActivationStore,
    n: int,
    quantiles: tuple[float, ...] = (0.0,),
    *,
    batch_size: int = 8192,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[float, Ranked]:
    """Encode the probe store chunk by chunk and keep the extremes of every band.

    Args:
        basis: a :class:`methods.base.Basis` (``encode [b, d] -> [b, k]``).
        store: probe activations; row ``i`` belongs to sample ``store.ids[i]``.
        n: extremes per side.
        quantiles: bands to compute (0.0 = whole range).

    Samples are ranked and bands cut by ``basis.encode_with_preactivation`` (see the module
    docstring); the values returned are the codes.

    Returns:
        ``{quantile: Ranked}`` with ``[k, n]`` arrays of sample indices and values.
    """
    if n > store.n:
        raise UserError(f"{store.name}: {n} top examples per side requested but the probe split has {store.n} samples")
    basis = basis.to(device)
    # a chunk's codes [b, k] and the merge buffers [k, b + n] grow with k: wide bases take smaller chunks
    batch_size = max(256, min(batch_size, (_CODES_BUDGET // 4) // max(basis.k, 1)))
    quantiles = tuple(quantiles)
    if any(q > 0.0 for q in quantiles) and store.n <= _sample_rows(basis, 50_000):
        # the whole probe split is the band sample: encode it once, not once per pass
        chunks = [basis.encode_with_preactivation(x) for x in store.batches(batch_size, device=device)]
        limits = limits_from_codes(torch.cat([p for _, p in chunks]), quantiles)
    else:
        limits = band_limits(basis, store, quantiles, seed=seed, device=device)
        chunks = None
    trackers = {
        q: StreamingExtremes(basis.k, n, *(lim if lim is not None else (None, None)), device=device)
        for q, lim in limits.items()
    }
    ids = torch.from_numpy(store.ids).to(device)
    jitter = torch.from_numpy(np.random.default_rng([seed, 7_207]).random(store.n)).to(device)  # tie-breaking keys
    row = 0
    for codes, pre in (
        chunks
        if chunks is not None
        else (basis.encode_with_preactivation(x) for x in store.batches(batch_size, device=device))
    ):
        b = len(codes)
        for t in trackers.values():
            t.update(codes, ids[row : row + b], jitter[row : row + b], rank_by=pre)
        row += b
    return {q: t.result(q) for q, t in trackers.items()}


def random_sets(probe_ids: np.ndarray, n_sets: int, n: int, seed: int) -> Ranked:
    """``n_sets`` random "directions", each ``n`` distinct probe samples per side (for chance)."""
    rng = np.random.default_rng(seed)
    size = min(2 * n, len(probe_ids))
    picks = np.stack([rng.choice(probe_ids, size=size, replace=False) for _ in range(n_sets)])
    if size < 2 * n:  # small probe split: sides may overlap
        picks = np.concatenate([picks, np.stack([rng.choice(probe_ids, size=2 * n - size) for _ in range(n_sets)])], 1)
    zeros = np.zeros((n_sets, n), dtype=np.float32)
    return Ranked(top_idx=picks[:, :n], top_val=zeros, bottom_idx=picks[:, n:], bottom_val=zeros)
