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

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """The splitmix64 output function of int64 states ``x [...]`` (Steele et al. 2014): integer
    arithmetic with wrap-around, so the same bits on every machine and device."""
    x = x + _signed(_GOLDEN)
    x = (x ^ _shr(x, 30)) * _signed(_MIX1)
    x = (x ^ _shr(x, 27)) * _signed(_MIX2)
    return x ^ _shr(x, 31)


def direction_streams(seed: int, k: int, device: torch.device | str = "cpu") -> Tensor:
    """Per direction, the int64 state ``[k]`` its tie-breaking stream starts from: a hash of
    ``(seed, direction)``."""
    start = splitmix64(torch.tensor([seed], dtype=torch.long, device=device))
    return splitmix64(start + torch.arange(k, dtype=torch.long, device=device))


def tie_jitter(streams: Tensor, ids: Tensor) -> Tensor:
    """Tie-breaking keys ``[k, b]`` in ``[0, 1)`` of samples ``ids [b]`` for directions whose
    streams are ``streams [k]``: ``splitmix64(stream_j + id_i)``, top 53 bits. Each direction draws
    its own order of any tied samples; no ``[k, n]`` table is stored."""
    h = splitmix64(streams[:, None] + ids.to(streams.device, torch.long)[None, :])
    return _shr(h, 11).double() * 2.0**-53


def tie_keys(codes: Tensor, jitter: Tensor) -> Tensor:
    """Ranking keys ``[k, b]`` (float64) of ``codes [b, k]`` with ties broken by ``jitter [k, b]``
    in ``[0, 1)``: each value moves by less than half the float32 spacing at that value, so
    distinct values keep their order (and read back exactly as float32), and equal values (a
    dead direction's zeros, a sparse code's floor) are ordered by the jitter instead of by their
    position in the store."""
    vals = codes.T.float()
    spacing = (torch.nextafter(vals, torch.full_like(vals, torch.inf)) - vals).double()
    return vals.double() + (jitter.double() - 0.5) * 0.49 * spacing


class StreamingExtremes:
    """Running top-``n`` and bottom-``n`` codes per direction, optionally within a band.

    Equal codes are ranked by a seeded random key per (direction, sample) (see
    :func:`tie_jitter`), so where a direction's extremes are ties (a dead latent, a sparse code
    with fewer than ``n`` active samples) the tied samples are a random draw of that direction's
    own, never a run of neighbouring samples whose shared document or label would look like a
    coherent concept, and never the same draw as another direction's.

    One extreme more than ``n`` is kept per side, so :meth:`result` can tell whether the value
    at rank ``n`` ties with the next one (``Ranked.top_next``): whether the top set is decided
    by values or by tie-breaking.

    Args:
        k: number of directions.
        n: how many extremes to keep per side.
        lower, upper: ``[k]`` band limits; codes outside ``[lower, upper]`` are ignored.
        seed: seeds the tie-breaking keys.
    """

    def __init__(
        self,
        k: int,
        n: int,
        lower: Tensor | None = None,
        upper: Tensor | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.n = n
        self.lower, self.upper = lower, upper
        self.streams = direction_streams(seed, k, device)
        self.top_key = torch.full((k, 0), -torch.inf, dtype=torch.float64, device=device)
        self.top_val = torch.full((k, 0), -torch.inf, device=device)
        self.top_id = torch.zeros((k, 0), dtype=torch.long, device=device)
        self.bot_key = torch.full((k, 0), torch.inf, dtype=torch.float64, device=device)
        self.bot_val = torch.full((k, 0), torch.inf, device=device)
        self.bot_id = torch.zeros((k, 0), dtype=torch.long, device=device)
        self.count = torch.zeros(k, dtype=torch.long, device=device)

    def update(self, codes: Tensor, ids: Tensor, rank_by: Tensor | None = None) -> None:
        """Merge a chunk: ``codes [b, k]``, ``ids [b]`` (sample indices, which with the seed and
        the direction key the tie-breaking), ``rank_by [b, k]`` the values that order samples and
        place them in the band (default: the codes; the harness passes the basis's
        preactivation). The values kept are ``codes``; the ranking values stay readable from the
        keys (:func:`tie_keys` moves a value by less than half its float32 spacing)."""
        keys = tie_keys(codes if rank_by is None else rank_by, tie_jitter(self.streams, ids))  # [k, b]
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
        keep = min(self.n + 1, k.shape[1])  # one more than n: the first value not kept
        k, pos = torch.topk(k, keep, dim=1, largest=largest, sorted=True)
        return k, torch.gather(v, 1, pos), torch.gather(i, 1, pos)

    @staticmethod
    def _next(key: Tensor, val: Tensor, keep: int, empty: float) -> Tensor:
        """``[k]``: the value at rank ``keep`` (the first not kept), ``empty`` where the band
        holds no such sample."""
        if key.shape[1] <= keep:
            return torch.full((key.shape[0],), empty, device=key.device)
        return torch.where(torch.isfinite(key[:, keep]), val[:, keep], empty)

    def result(self, quantile: float = 0.0) -> Ranked:
        """The extremes as a :class:`Ranked` (numpy), ``[k, m]``, with per side the next value
        past them (``top_next``, ``bottom_next``, ``[k]``), the ranking values of both
        (``top_rank``, ``top_rank_next``, ...) and each direction's number of samples in the band,
        ``count [k]``.

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
            top_next=self._next(self.top_key, self.top_val, keep, -np.inf).cpu().numpy(),
            bottom_next=self._next(self.bot_key, self.bot_val, keep, np.inf).cpu().numpy(),
            top_rank=self.top_key[:, :keep].float().cpu().numpy(),
            bottom_rank=self.bot_key[:, :keep].float().cpu().numpy(),
            top_rank_next=self._next(self.top_key, self.top_key.float(), keep, -np.inf).cpu().numpy(),
            bottom_rank_next=self._next(self.bot_key, self.bot_key.float(), keep, np.inf).cpu().numpy(),
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
        q: StreamingExtremes(basis.k, n, *(lim if lim is not None else (None, None)), device=device, seed=seed)
        for q, lim in limits.items()
    }
    ids = torch.from_numpy(store.ids).to(device)
    row = 0
    for codes, pre in (
        chunks
        if chunks is not None
        else (basis.encode_with_preactivation(x) for x in store.batches(batch_size, device=device))
    ):
        b = len(codes)
        for t in trackers.values():
            t.update(codes, ids[row : row + b], rank_by=pre)
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
