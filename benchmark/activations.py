"""Activations on disk: chunked extraction into ``.npy`` memory maps, and batched reading.

A store is a directory with ``acts.npy`` (``[n, d]``, float16 or float32), ``ids.npy``
(``[n]`` int64: the sample index of each row in the task's sample set) and ``meta.json``.
Nothing here holds more than one batch of activations in RAM.
"""

from __future__ import annotations

import json
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

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open a store directory as memory maps."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        acts = np.load(path / "acts.npy", mmap_mode="r")
        ids = np.load(path / "ids.npy")
        return cls(acts, ids, name=meta.get("name", str(path)))

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

    def rows(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``[stop - start, d]`` as float32 on ``device``."""
        return torch.from_numpy(np.asarray(self.acts[start:stop], dtype=np.float32)).to(device)

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
            chunk = np.asarray(self.acts[bstart : min(bstart + block, self.n)], dtype=np.float32)
            chunk = chunk[rng.permutation(len(chunk))]
            t = torch.from_numpy(chunk)
            for s in range(0, len(t), batch_size):
                yield t[s : s + batch_size].to(device)

    def load(self, max_rows: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        """All rows (or a seeded random sample of ``max_rows``) as one float32 tensor ``[m, d]``."""
        if max_rows is None or max_rows >= self.n:
            return self.rows(0, self.n, device)
        idx = np.sort(np.random.default_rng(seed).choice(self.n, size=max_rows, replace=False))
        return torch.from_numpy(np.asarray(self.acts[idx], dtype=np.float32)).to(device)

    def check_finite(self, where: str) -> None:
        """Raise a :class:`UserError` naming ``where`` if any value is NaN or infinite."""
        for start in range(0, self.n, 65536):
            block = np.asarray(self.acts[start : start + 65536], dtype=np.float32)
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise UserError(f"{where}: {self.name} has NaN or Inf values (first in row {bad})")


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

    The ``.npy`` file is created on the first chunk with its final size and filled chunk by
    chunk, so memory is bounded by one chunk.
    """
    path.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    out = None
    row = 0
    for chunk in chunks:
        arr = chunk.detach().to("cpu", torch.float32).numpy()
        if out is None:
            out = open_memmap(path / "acts.npy", mode="w+", dtype=np.dtype(dtype), shape=(n, arr.shape[1]))
        if row + len(arr) > n:
            raise RuntimeError(f"{name}: model yielded more rows than samples ({n})")
        out[row : row + len(arr)] = arr
        row += len(arr)
        if progress is not None:
            progress(len(arr))
    if out is None:
        raise UserError(f"{name}: no samples to extract (empty split)")
    if row != n:
        raise RuntimeError(f"{name}: model yielded {row} rows for {n} samples")
    out.flush()
    del out
    np.save(path / "ids.npy", np.asarray(ids, dtype=np.int64))
    (path / "meta.json").write_text(json.dumps({"name": name, "n": n, "dtype": dtype}))
    return ActivationStore.open(path)
