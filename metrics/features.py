"""Shared helpers for similarities computed from per-stimulus features.

* :class:`FeatureCache`: an in-process cache of per-stimulus feature rows, so that a backbone
  (AlexNet for LPIPS, a registered model for the perceptual similarity) runs once per stimulus
  image per process, across directions, protocols, chance sets and grid cells. It is keyed by a
  namespace (what computed the features) and the stimulus set's identity, and bounded in bytes
  (``$INTERPBENCH_FEATURE_CACHE_MB``, default 2048): whole namespaces are evicted oldest first,
  and a namespace larger than the budget stops growing (rows are then recomputed on demand).
* :func:`cached_rows`: embed ``idx`` through the cache, computing only the missing rows;
  :class:`CachedGather` lets a similarity gather straight from the cache.
* :func:`squared_distances`: batched squared Euclidean distances in the Gram form
  ``|a|^2 + |b|^2 - 2 <a, b>``, the form that makes cached LPIPS exact and fast;
  :func:`centred_rows` stores each row's squared norm beside it (:func:`squared_norms`) so it
  is summed once.
* :func:`image_batches`: images of a stimulus set in chunks, as RGB ``[b, 3, H, W]``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from benchmark.cache import hash_key
from benchmark.data.base import StimulusSet

_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stimuli_key(stimuli: StimulusSet) -> str:
    """A content hash of ``stimuli.identity()``, computed once per stimulus-set object."""
    try:
        return _IDENTITIES[stimuli]
    except (KeyError, TypeError):
        key = hash_key(stimuli.identity())
        try:
            _IDENTITIES[stimuli] = key
        except TypeError:
            pass
        return key


class _Table:
    """Rows of one namespace over one stimulus set: a contiguous ``[capacity, ...]`` tensor and
    ``slot[i]``, the row of stimulus ``i`` (-1 when not cached)."""

    def __init__(self, n_stimuli: int) -> None:
        self.slot = np.full(n_stimuli, -1, dtype=np.int64)
        self.data: Tensor | None = None
        self.used = 0
        #: per pool (by hash): ``(position [n_stimuli] in the pool or -1, Gram matrix [P, P])``
        self.grams: dict[str, tuple[np.ndarray, Tensor]] = {}

    @property
    def nbytes(self) -> int:
        grams = sum(g.numel() * g.element_size() for _, g in self.grams.values())
        return grams + (0 if self.data is None else self.data.numel() * self.data.element_size())

    def pool_gram(self, pool: np.ndarray) -> tuple[np.ndarray, Tensor]:
        """The Gram matrix of the pool's rows (feature columns only), computed in one product
        over exactly these rows in pool order, so its values depend on the pool alone."""
        key = hash_key(pool.tolist())
        if key not in self.grams:
            feats = self.data[torch.from_numpy(self.slot[pool])][:, :-1]
            gram = chunked_products(feats, feats).float()  # [P, P]
            position = np.full(len(self.slot), -1, dtype=np.int64)
            position[pool] = np.arange(len(pool))
            self.grams[key] = (position, gram)
        return self.grams[key]

    def bytes_for(self, rows: Tensor, capacity: int) -> int:
        return capacity * (rows[0].numel() * rows.element_size())

    def add(self, idx: np.ndarray, rows: Tensor, capacity: int) -> None:
        if self.data is None and capacity == len(rows) and rows.is_contiguous():
            self.data = rows  # the first rows fill the table: keep them, no copy (GBs at 224 pixels)
        elif self.data is None or capacity > len(self.data):
            grown = torch.empty((capacity, *rows.shape[1:]), dtype=rows.dtype)
            if self.data is not None:
                grown[: self.used] = self.data[: self.used]
            self.data = grown
        if self.data is not rows:
            self.data[self.used : self.used + len(idx)] = rows
        self.slot[idx] = np.arange(self.used, self.used + len(idx))
        self.used += len(idx)


def feature_cache_mb() -> float:
    """The feature-cache budget in MiB: ``$INTERPBENCH_FEATURE_CACHE_MB``, default 2048."""
    return float(os.environ.get("INTERPBENCH_FEATURE_CACHE_MB", "2048"))


class FeatureCache:
    """Per-stimulus feature rows for ``(namespace, stimulus set)`` pairs, bounded in bytes.

    Rows of one namespace live in one contiguous tensor, so a lookup is one indexing copy.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            max_bytes = int(feature_cache_mb() * 2**20)
        self.max_bytes = max_bytes
        self._tables: OrderedDict[tuple[str, str], _Table] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tables.values())

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self.hits = self.misses = 0

    def rows(
        self,
        namespace: str,
        stimuli: StimulusSet,
        idx: np.ndarray,
        compute: Callable[[np.ndarray], Tensor],
        gather: bool = True,
    ) -> Tensor | None:
        """Feature rows ``[m, ...]`` of stimuli ``idx [m]`` (any order, repeats allowed);
        ``compute(missing [j]) -> [j, ...]`` fills the gaps, each missing stimulus once (a fresh
        tensor: the first rows of a table are kept as they are, not copied).
        With ``gather=False`` the rows are only made present (None is returned when they are)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        key = (namespace, stimuli_key(stimuli))
        with self._lock:
            table = self._tables.get(key)
            if table is None:
                table = self._tables[key] = _Table(len(stimuli))
            self._tables.move_to_end(key)
            slots = table.slot[idx]
            missing = np.unique(idx[slots < 0])
            self.hits += int((slots >= 0).sum())
            self.misses += len(missing)
            if len(missing):
                computed = compute(missing)
                if not self._store(key, table, missing, computed):
                    return self._assemble(table, idx, missing, computed)
            if not gather:
                return None
            return table.data[torch.from_numpy(table.slot[idx])]  # (faster than index_select on CPU)

    def table(self, namespace: str, stimuli: StimulusSet) -> _Table | None:
        return self._tables.get((namespace, stimuli_key(stimuli)))

    def _store(self, key: tuple[str, str], table: _Table, idx: np.ndarray, rows: Tensor) -> bool:
        need = table.used + len(idx)
        if table.data is not None and need <= len(table.data):
            table.add(idx, rows, len(table.data))
            return True
        old = 0 if table.data is None else len(table.data)
        for capacity in (min(len(table.slot), max(2 * old, need)), need):
            size = table.bytes_for(rows, capacity)
            if size > self.max_bytes:
                continue
            others = [k for k in self._tables if k != key]  # oldest first
            while self.nbytes - table.nbytes + size > self.max_bytes and others:
                del self._tables[others.pop(0)]
            table.add(idx, rows, capacity)
            return True
        return False  # this namespace alone is over budget: the rest is computed on demand

    @staticmethod
    def _assemble(table: _Table, idx: np.ndarray, missing: np.ndarray, computed: Tensor) -> Tensor:
        out = torch.empty((len(idx), *computed.shape[1:]), dtype=computed.dtype)
        slots = table.slot[idx]
        have = slots >= 0
        if have.any():
            out[torch.from_numpy(have)] = table.data[torch.from_numpy(slots[have])]
        pos = np.searchsorted(missing, idx[~have])
        out[torch.from_numpy(~have)] = computed[torch.from_numpy(pos)]
        return out


#: the process-wide cache every metric uses
FEATURES = FeatureCache()


def cached_rows(
    namespace: str,
    stimuli: StimulusSet,
    idx: np.ndarray,
    compute: Callable[[np.ndarray], Tensor],
    gather: bool = True,
) -> Tensor | None:
    """Rows ``[m, ...]`` for ``idx`` from :data:`FEATURES`, computing only the missing ones."""
    return FEATURES.rows(namespace, stimuli, idx, compute, gather)


class CachedGather:
    """Mixin for :class:`metrics.base.SimilarityMetric` subclasses whose ``embed`` reads
    :data:`FEATURES`: ``gather`` then costs one indexing copy (no second copy)."""

    def gather(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        idx = np.asarray(idx)
        emb = self.embed(stimuli, idx.reshape(-1))  # type: ignore[attr-defined]
        return emb.reshape(*idx.shape, *emb.shape[1:])


#: largest probe pool whose Gram matrix is kept (rows); 8192 rows of float32 take 256 MiB
MAX_GRAM_ROWS = 8192
#: a float moved by a gather costs about this many multiply-adds (memory- vs compute-bound; the
#: Gram matrix is also reused by later calls: chance sets, other bases, other protocols)
_GATHER_COST = 256


class GramSimilarity(CachedGather):
    """Mixin for similarities that are a function of a squared Euclidean distance between cached
    embeddings made by :func:`centred_rows` (LPIPS, the perceptual distance).

    Subclasses implement ``feature_namespace(stimuli) -> str`` and
    ``raw_batches(stimuli, idx [j]) -> Iterator[[b, D]]`` (the embeddings of ``idx`` in order,
    batch by batch; a batch may be overwritten by the next, as :func:`into_one_buffer` does, so
    consumers copy it first), and may override ``from_squared(d2)`` (default ``-d2``).

    Protocols call :meth:`similarity_lookup` with every index they will pair up and the probe
    pool. The whole pool is embedded first, in pool order and fixed batches, so every feature
    row is the same whatever order directions, bases and chance sets come in. When the pool's
    Gram matrix costs less than gathering this call's rows (or the pool is small), it is
    computed once, kept, and similarities are read from it (``G_ii + G_jj - 2 G_ij``);
    otherwise rows are gathered per batch of directions. The choice depends only on the call's
    sizes, so a resumed run computes every score the same way.
    """

    def feature_namespace(self, stimuli: StimulusSet) -> str:
        raise NotImplementedError

    def raw_batches(self, stimuli: StimulusSet, idx: np.ndarray) -> Iterator[Tensor]:
        raise NotImplementedError

    def from_squared(self, d2: Tensor) -> Tensor:
        return -d2

    def embed(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        """Centred embeddings with their squared norms, ``[m, D + 1]`` (float32, CPU)."""
        return centred_rows(
            self.feature_namespace(stimuli), stimuli, idx, lambda missing: self.raw_batches(stimuli, missing)
        )

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return self.from_squared(distances_from_norm_column(a, b))

    def pool_table(self, stimuli: StimulusSet, pool: np.ndarray) -> _Table | None:
        """Embed the pool (sorted unique indices, :func:`pool_indices`) in pool order and fixed
        batches, so every feature row is the same whatever order calls come in; its cache
        table, or None when the pool is over the cache budget."""
        namespace = self.feature_namespace(stimuli)
        centred_rows(namespace, stimuli, pool, lambda missing: self.raw_batches(stimuli, missing), gather=False)
        table = FEATURES.table(namespace, stimuli)
        if table is None or table.data is None or (table.slot[pool] < 0).any():
            return None
        return table

    def similarity_lookup(
        self, stimuli: StimulusSet, idx: np.ndarray, pool: np.ndarray | None = None
    ) -> Callable[[np.ndarray, np.ndarray], Tensor] | None:
        """Embed the pool (default: every stimulus) and return ``lookup(a_idx [B, m], b_idx
        [B, p]) -> [B, m, p]`` reading the pool's Gram matrix, or None to gather rows instead."""
        uses = np.asarray(idx).size
        pool = pool_indices(stimuli, pool)
        table = self.pool_table(stimuli, pool)
        if table is None:
            return None  # the pool is over the cache budget: gather per batch
        P = len(pool)
        if P > MAX_GRAM_ROWS or P * P > _GATHER_COST * uses:
            return None
        position, gram = table.pool_gram(pool)
        diag = gram.diagonal()

        def lookup(a_idx: np.ndarray, b_idx: np.ndarray) -> Tensor:
            pa, pb = position[np.asarray(a_idx)], position[np.asarray(b_idx)]
            if (pa < 0).any() or (pb < 0).any():
                raise ValueError("similarity_lookup: an index outside the pool it was prepared for")
            ta, tb = torch.from_numpy(pa), torch.from_numpy(pb)
            cross = gram[ta[:, :, None], tb[:, None, :]]
            return self.from_squared((diag[ta][:, :, None] + diag[tb][:, None, :] - 2 * cross).clamp_min_(0))

        return lookup

    def mean_pairwise_similarity(
        self, stimuli: StimulusSet, sets: np.ndarray, pool: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Mean similarity over the pairs of each set of stimuli ``sets [k, m]`` -> ``[k]``, from
        each set's sum of rows: ``sum_{i<j} |g_i - g_j|^2 = m sum_i |g_i|^2 - |sum_i g_i|^2``, so
        each row is read once (one ``embedding_bag`` sum per set) and no ``[m, m]`` products are
        formed. Exact for the default similarity ``-d2``; None when a subclass overrides
        :meth:`from_squared` or the pool is over the cache budget."""
        if type(self).from_squared is not GramSimilarity.from_squared:
            return None
        table = self.pool_table(stimuli, pool_indices(stimuli, pool))
        sets = np.asarray(sets, dtype=np.int64)
        if table is None or (table.slot[sets] < 0).any():
            return None
        k, m = sets.shape
        slots = torch.from_numpy(table.slot[sets])
        norms = table.data[:, -1].double()[slots].sum(dim=1)  # [k]: sum_i |g_i|^2
        step = max(1, _SUM_BYTES // (table.data.shape[1] * table.data.element_size()))
        sums_sq = torch.cat(  # [k]: |sum_i g_i|^2
            [
                squared_norms(torch.nn.functional.embedding_bag(slots[s : s + step], table.data, mode="sum")[:, :-1])
                for s in range(0, k, step)
            ]
        )
        mean_d2 = (m * norms - sums_sq).clamp_min_(0) / (m * (m - 1) / 2)
        return self.from_squared(mean_d2).numpy()


def pool_indices(stimuli: StimulusSet, pool: np.ndarray | None) -> np.ndarray:
    """The probe pool as sorted unique indices ``[P]`` (None: every stimulus)."""
    return np.unique(np.arange(len(stimuli)) if pool is None else np.asarray(pool, dtype=np.int64))


#: bytes of row sums formed at once by :meth:`GramSimilarity.mean_pairwise_similarity`
_SUM_BYTES = 16 * 2**20


_CENTRES: dict[tuple[str, str], Tensor] = {}
_N_CENTRE = 16


def centred_rows(
    namespace: str,
    stimuli: StimulusSet,
    idx: np.ndarray,
    raw: Callable[[np.ndarray], Iterator[Tensor]],
    gather: bool = True,
) -> Tensor | None:
    """Cached embeddings for a squared-Euclidean similarity: ``[m, D + 1]``, each centred row
    followed by its squared norm (:func:`squared_norms`).

    ``raw(idx) -> Iterator[[b, D]]`` computes embeddings batch by batch, in order (a batch may
    share memory with the next: :func:`into_one_buffer`); each is
    stored minus a centre (the mean raw embedding of the set's first 16 stimuli, so fixed by the
    set, not by call order), which changes no distance and keeps the Gram-form error of float32
    near 1e-7 of a distance. The batches are written into one ``[j, D + 1]`` tensor as they come
    (a 224-pixel LPIPS pool is 3.9 GB: no concatenated copies).
    """
    key = (namespace, stimuli_key(stimuli))
    if key not in _CENTRES:
        first = np.arange(min(_N_CENTRE, len(stimuli)))
        _CENTRES[key] = torch.cat([batch.double() for batch in raw(first)]).mean(dim=0)
    centre32 = _CENTRES[key].float()

    def compute(missing: np.ndarray) -> Tensor:
        out: Tensor | None = None
        pos = 0
        for batch in raw(missing):
            if out is None:
                out = torch.empty((len(missing), batch.shape[1] + 1), dtype=torch.float32)
            rows = out[pos : pos + len(batch)]
            torch.sub(batch, centre32, out=rows[:, :-1])
            rows[:, -1] = squared_norms(rows[:, :-1])
            pos += len(batch)
        if out is None or pos != len(missing):
            raise RuntimeError(f"{namespace}: embeddings of {pos} stimuli for {len(missing)}")
        return out

    return cached_rows(namespace, stimuli, idx, compute, gather)


def squared_distances(a: Tensor, b: Tensor, sq_a: Tensor | None = None, sq_b: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances ``[B, m, p]`` between rows of ``a [B, m, D]`` and ``b [B, p, D]``.

    Gram form: ``|a_i|^2 + |b_j|^2 - 2 <a_i, b_j>``, clamped at 0 (one batched matmul).
    ``sq_a [B, m]`` and ``sq_b [B, p]`` are the squared row norms when already known. The
    float32 cancellation error grows with the norms: centre the rows first (any common vector
    may be subtracted without changing a distance), as the LPIPS embedding does.
    """
    if sq_a is None:
        sq_a = (a.double() ** 2).sum(-1)
    if sq_b is None:
        sq_b = (b.double() ** 2).sum(-1)
    gram = chunked_products(a, b)  # [B, m, p], float64
    return (sq_a.double()[:, :, None] + sq_b.double()[:, None, :] - 2 * gram).clamp_min_(0).to(a.dtype)


#: feature columns per float32 matrix product; the partial products are summed in float64
_CHUNK_COLUMNS = 16384


def chunked_products(a: Tensor, b: Tensor) -> Tensor:
    """Inner products ``a @ b^T`` (``[m, D] x [p, D] -> [m, p]``, or batched ``[B, m, D] x
    [B, p, D] -> [B, m, p]``) as float32 products over column chunks summed in float64: as fast
    as one float32 product, with the accuracy of float64 accumulation (1e-7 of a distance at
    the 485k LPIPS features of a 224-pixel image, where one float32 product errs by 1e-5)."""
    out = None
    for start in range(0, a.shape[-1], _CHUNK_COLUMNS):
        part = a[..., start : start + _CHUNK_COLUMNS] @ b[..., start : start + _CHUNK_COLUMNS].transpose(-1, -2)
        out = part.double() if out is None else out.add_(part)
    return out


def squared_norms(rows: Tensor) -> Tensor:
    """``[m, D] -> [m]`` float64: squared row norms, as float32 norms of column chunks (the
    chunks of :func:`chunked_products`) squared and summed in float64 (float64 norms of whole
    rows are 30x slower on CPU)."""
    out = None
    for start in range(0, rows.shape[-1], _CHUNK_COLUMNS):
        part = torch.linalg.vector_norm(rows[:, start : start + _CHUNK_COLUMNS], dim=1).double().square_()
        out = part if out is None else out.add_(part)
    return out


def distances_from_norm_column(a: Tensor, b: Tensor) -> Tensor:
    """:func:`squared_distances` for ``[B, m, D + 1]`` and ``[B, p, D + 1]`` rows made by :func:`centred_rows`."""
    return squared_distances(a[..., :-1], b[..., :-1], a[..., -1], b[..., -1])


def image_batches(
    stimuli: StimulusSet, idx: np.ndarray, batch_size: int | None = None, pixels: int = 4_000_000
) -> Iterator[Tensor]:
    """Images of ``idx`` in order, ``[b, 3, H, W]`` float in [0, 1] (grayscale repeated to RGB).

    ``batch_size`` None: as many images as fit in ``pixels`` (CPU convolutions run up to twice
    as fast per image in batches of 512 small images than of 64), between 8 and 512.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if not len(idx):
        return
    start = 0
    if batch_size is None:
        first = _as_rgb(stimuli.images(idx[:1]))
        batch_size = int(np.clip(pixels // (first.shape[-1] * first.shape[-2]), 8, 512))
    for s in range(start, len(idx), batch_size):
        yield _as_rgb(stimuli.images(idx[s : s + batch_size]))


def into_one_buffer(embed: Callable[[Tensor, Tensor | None], Tensor], batches: Iterable[Tensor]) -> Iterator[Tensor]:
    """``embed(x, out)`` of each input batch ``x [b, ...]``, written into one CPU buffer
    ``[b_max, D]`` that every batch reuses: each yielded ``[b, D]`` is overwritten by the next,
    so copy it before asking for the next. Writing fresh memory costs page faults on CPU (5x
    the cost of writing memory already touched, for the 64 MB to 150 MB batches of LPIPS).
    ``embed(x, None)`` allocates its result; on an accelerator the result is copied into the
    buffer."""
    buffer: Tensor | None = None
    for x in batches:
        if buffer is None or len(x) > len(buffer):
            buffer = embed(x, None).cpu()
            yield buffer
        elif x.device.type == "cpu":
            yield embed(x, buffer[: len(x)])
        else:
            yield buffer[: len(x)].copy_(embed(x, None))


def _as_rgb(images) -> Tensor:
    images = torch.as_tensor(images).float()
    if images.dim() == 3:
        images = images[:, None]
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images
