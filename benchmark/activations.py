"""Activations on disk: chunked extraction into ``.npy`` memory maps, and batched reading.

A store is a directory with ``acts.npy`` (``[n, d]``, float16 or float32), ``ids.npy``
(``[n]`` int64: the sample index of each row in the task's sample set) and ``meta.json``.
Nothing here holds more than one batch of activations in RAM: on-disk stores are read
through a short-lived memory map per chunk (so pages of a store larger than RAM never pile up
in the process's resident set) and written with plain file writes into a preallocated file
(so a full disk is an ``OSError`` at the start, not a ``SIGBUS`` in the middle).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap

from benchmark.errors import UserError


class ActivationStore:
    """Read access to ``[n, d]`` activations, from a store directory or an in-memory array.

    Args:
        acts: the ``[n, d]`` array (a memory map for on-disk stores).
        ids: ``[n]`` sample indices of the rows (default ``arange(n)``).
        name: what the activations are (model/layer/split), used in error messages.
    """

    def __init__(self, acts: np.ndarray, ids: np.ndarray | None = None, name: str = "activations") -> None:
        if acts.ndim != 2:
            raise UserError(f"{name}: activations must be 2-D [n, d], got shape {acts.shape}")
        self.acts = acts
        self.ids = np.arange(len(acts), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        self.name = name
        #: ``(acts.npy path, data offset)`` when the rows live in a file (set by :meth:`open`)
        self._file: tuple[Path, int] | None = None

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open a store directory as memory maps."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        acts = np.load(path / "acts.npy", mmap_mode="r")
        ids = np.load(path / "ids.npy")
        store = cls(acts, ids, name=meta.get("name", str(path)))
        store._file = (path / "acts.npy", int(acts.offset))
        return store

    @classmethod
    def wrap(cls, acts: ActivationStore | np.ndarray | torch.Tensor, name: str = "activations") -> ActivationStore:
        """Accept a store, a numpy array or a tensor (for tests and the Python API)."""
        if isinstance(acts, ActivationStore):
            return acts
        if isinstance(acts, torch.Tensor):
            acts = acts.detach().cpu().float().numpy()
        return cls(np.asarray(acts), name=name)

    @property
    def n(self) -> int:
        return self.acts.shape[0]

    @property
    def d(self) -> int:
        return self.acts.shape[1]

    def __len__(self) -> int:
        return self.n

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a fresh array in the stored dtype.

        For on-disk stores the rows are read through a memory map of just that range, dropped
        right after the copy, so resident memory stays one chunk however large the file is.
        """
        start, stop = max(0, start), min(stop, self.n)
        if self._file is None or stop <= start:
            return np.array(self.acts[start:stop])
        path, offset = self._file
        row_bytes = self.d * self.acts.dtype.itemsize
        view = np.memmap(
            path, dtype=self.acts.dtype, mode="r", offset=offset + start * row_bytes, shape=(stop - start, self.d)
        )
        try:
            return np.array(view)
        finally:
            del view

    def _take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (sorted indices) as a fresh array.

        On-disk rows are read with ``pread``, one call per run of consecutive rows: a memory
        map would fault in whole neighbourhoods of pages around each scattered row.
        """
        if self._file is None:
            return np.asarray(self.acts[idx])
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), self.d), dtype=self.acts.dtype)
        if not len(idx):
            return out
        path, offset = self._file
        row_bytes = self.d * self.acts.dtype.itemsize
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(idx)]])
        flat = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(path, os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), stops.tolist()):
                want = (b - a) * row_bytes
                got = os.preadv(fd, [flat[a * row_bytes : b * row_bytes]], offset + int(idx[a]) * row_bytes)
                if got != want:
                    raise OSError(errno.EIO, f"short read from {path}: {got} of {want} bytes")
        finally:
            os.close(fd)
        return out

    def rows(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``[stop - start, d]`` as float32 on ``device``.

        On a GPU the rows travel in the stored dtype (half the bytes for float16) and are
        converted there.
        """
        return _to_float32(self._read(start, stop), device)

    def batches(
        self,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
    ) -> Iterator[torch.Tensor]:
        """Yield float32 ``[b, d]`` batches covering every row once.

        With ``shuffle``, contiguous blocks are read in random order and shuffled within a
        block, so a memory map is still read sequentially in large pieces.
        """
        if not shuffle:
            for start in range(0, self.n, batch_size):
                yield self.rows(start, min(start + batch_size, self.n), device)
            return
        rng = np.random.default_rng(seed)
        block = max(batch_size * 16, 1)
        starts = rng.permutation(np.arange(0, self.n, block))
        for bstart in starts:
            chunk = self._read(bstart, min(bstart + block, self.n))
            order = rng.permutation(len(chunk))  # gathered per batch: no second copy of the block
            for s in range(0, len(chunk), batch_size):
                yield _to_float32(chunk[order[s : s + batch_size]], device)

    def load(self, max_rows: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        """All rows (or a seeded random sample of ``max_rows``) as one float32 tensor ``[m, d]``."""
        if max_rows is None or max_rows >= self.n:
            return self.rows(0, self.n, device)
        idx = np.sort(np.random.default_rng(seed).choice(self.n, size=max_rows, replace=False))
        return _to_float32(self._take(idx), device)

    def sample_batches(
        self, max_rows: int | None, batch_size: int, *, seed: int = 0, device: torch.device | str = "cpu"
    ) -> Iterator[torch.Tensor]:
        """The rows :meth:`load` returns (all, or ``max_rows`` drawn with ``seed``), in the same
        order, as float32 ``[b, d]`` batches: the sample is never in memory all at once."""
        if max_rows is None or max_rows >= self.n:
            yield from self.batches(batch_size, device=device)
            return
        idx = np.sort(np.random.default_rng(seed).choice(self.n, size=max_rows, replace=False))
        for start in range(0, len(idx), batch_size):
            yield _to_float32(self._take(idx[start : start + batch_size]), device)

    def check_finite(self, where: str) -> None:
        """Raise a :class:`UserError` naming ``where`` if any value is NaN or infinite."""
        step = max(1, (1 << 23) // max(1, self.d * self.acts.dtype.itemsize))  # ~8 MiB per read
        for start in range(0, self.n, step):
            block = self._read(start, start + step)
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise UserError(f"{where}: {self.name} has NaN or Inf values (first in row {bad})")


def _to_float32(rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``[b, d]`` numpy rows -> float32 tensor on ``device`` (converted on the GPU when there)."""
    if torch.device(device).type == "cuda":
        return torch.from_numpy(np.ascontiguousarray(rows)).to(device, non_blocking=False).float()
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))


def _preallocate(fd: int, size: int, path: Path) -> None:
    """Reserve ``size`` bytes for ``fd`` so that a full disk fails now with ``ENOSPC``."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(exc.errno, f"{os.strerror(exc.errno)}: {size / 2**20:.0f} MiB needed for {path}") from exc
        # file systems without fallocate (EOPNOTSUPP, EINVAL): the writes themselves will tell
    except AttributeError:  # pragma: no cover - platforms without posix_fallocate
        pass


def write_store(
    path: Path,
    chunks: Iterator[torch.Tensor],
    ids: np.ndarray,
    *,
    dtype: str = "float32",
    name: str = "activations",
    progress=None,
) -> ActivationStore:
    """Write ``[b, d]`` chunks (together ``len(ids)`` rows) into a store at ``path``.

    The ``.npy`` file is created on the first chunk with its final size (preallocated, so a
    full disk raises ``OSError(ENOSPC)`` before any work is lost) and filled chunk by chunk with
    file writes, so memory is bounded by one chunk.
    """
    path.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    out = None
    row = 0
    try:
        for chunk in chunks:
            arr = chunk.detach().to("cpu", torch.float32).numpy().astype(np.dtype(dtype), copy=False)
            if out is None:
                out = _open_rows_file(path / "acts.npy", np.dtype(dtype), n, arr.shape[1])
            if row + len(arr) > n:
                raise RuntimeError(f"{name}: model yielded more rows than samples ({n})")
            _write_rows(out, np.ascontiguousarray(arr))
            row += len(arr)
            if progress is not None:
                progress(len(arr))
        if out is None:
            raise UserError(f"{name}: no samples to extract (empty split)")
        if row != n:
            raise RuntimeError(f"{name}: model yielded {row} rows for {n} samples")
        out.flush()
    finally:
        if out is not None:
            out.close()
    np.save(path / "ids.npy", np.asarray(ids, dtype=np.int64))
    (path / "meta.json").write_text(json.dumps({"name": name, "n": n, "dtype": dtype}))
    return ActivationStore.open(path)


def _open_rows_file(path: Path, dtype: np.dtype, n: int, d: int):
    """Create ``path`` as an ``[n, d]`` ``.npy`` (header written, data preallocated) and
    return a binary file positioned at the first row."""
    header = open_memmap(path, mode="w+", dtype=dtype, shape=(n, d))
    offset = int(header.offset)
    del header
    f = open(path, "r+b")
    try:
        _preallocate(f.fileno(), offset + n * d * dtype.itemsize, path)
        f.seek(offset)
    except BaseException:
        f.close()
        raise
    return f


def _write_rows(f, rows: np.ndarray) -> None:
    """Append ``rows`` (C-contiguous, stored dtype) at the file's position."""
    f.write(memoryview(rows).cast("B"))
