"""Content-addressed stage cache.

An entry is a directory ``<root>/<stage>/<key[:2]>/<key>/`` holding the stage's files and a
``MANIFEST.json`` with a checksum of each. The key is the hash of the stage's inputs (their
keys), its parameters, the plugin's ``version`` (a human-readable label) and a ``code`` digest
of the source that computes the stage (:mod:`benchmark.codedigest`: the stage's module and the
plugin's, with every project module they import, minus code that cannot change a stored number
such as reporting, the CLI and this cache), so a code change without a ``version`` bump is a
cache miss, never a stale entry. Entries are written into a temporary directory, fsynced, and
renamed into place, so a killed run never leaves half an entry; a corrupt entry (bytes changed
on disk) is detected on first read, reported and recomputed. Concurrent runs on one cache take
a per-entry file lock. Only npy, safetensors, parquet and JSON are stored: no pickle.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from benchmark.errors import UserError

MANIFEST = "MANIFEST.json"
_CHUNK = 1 << 22


def default_root() -> Path:
    """``$INTERPBENCH_CACHE``, else ``$XDG_CACHE_HOME/interpbench``, else ``~/.cache/interpbench``."""
    env = os.environ.get("INTERPBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "interpbench"


def canonical(obj: Any) -> str:
    """Deterministic JSON for hashing (sorted keys, tuples as lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_key(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class StageRecord:
    stage: str
    key: str
    computed: bool
    seconds: float


@dataclass
class Cache:
    """A stage cache rooted at ``root`` (created on first write)."""

    root: Path = field(default_factory=default_root)
    records: list[StageRecord] = field(default_factory=list)
    _verified: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()

    def key(self, stage: str, parts: dict[str, Any]) -> str:
        return hash_key({"stage": stage, "parts": parts})

    def entry_path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    def _valid(self, path: Path) -> bool:
        if path in self._verified:
            return True
        manifest = path / MANIFEST
        if not manifest.exists():
            return False
        try:
            files = json.loads(manifest.read_text())["files"]
            ok = all(file_digest(path / name) == digest for name, digest in files.items())
        except (OSError, ValueError, KeyError):
            ok = False
        if ok:
            self._verified.add(path)
        return ok

    def lookup(self, stage: str, key: str) -> Path | None:
        """The entry's directory if present and intact; a corrupt entry is removed with a warning."""
        path = self.entry_path(stage, key)
        if not path.exists():
            return None
        if self._valid(path):
            return path
        warnings.warn(f"cache entry {stage}/{key[:12]} is corrupt (checksum mismatch); recomputing it", stacklevel=2)
        shutil.rmtree(path, ignore_errors=True)
        return None

    def get_or_compute(self, stage: str, parts: dict[str, Any], compute: Callable[[Path], None]) -> Path:
        """Return the entry for ``(stage, parts)``, computing it with ``compute(tmp_dir)`` if needed.

        ``compute`` writes its files into the directory it is given; they become the entry.
        """
        key = self.key(stage, parts)
        start = time.perf_counter()
        path = self.lookup(stage, key)
        if path is not None:
            self.records.append(StageRecord(stage, key, False, time.perf_counter() - start))
            return path
        locks = self.root / "locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the cache at {self.root}: {exc}") from exc
        with FileLock(str(locks / f"{key}.lock")):
            path = self.lookup(stage, key)  # another process may have finished it meanwhile
            if path is None:
                path = self._write(stage, key, parts, compute)
                computed = True
            else:
                computed = False
        self.records.append(StageRecord(stage, key, computed, time.perf_counter() - start))
        return path

    def _write(self, stage: str, key: str, parts: dict[str, Any], compute: Callable[[Path], None]) -> Path:
        tmp = self.root / "tmp" / f"{key[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            compute(tmp)
            files = {str(p.relative_to(tmp)): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"stage": stage, "parts": parts, "files": files}, default=str))
            _fsync_tree(tmp)
            final = self.entry_path(stage, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
            self._verified.add(final)
            return final
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(
                    f"disk full: no space left under {self.root} while writing the {stage} entry "
                    f"{key[:12]} ({exc}); nothing partial was kept. Free space there or point "
                    "--cache-dir / $INTERPBENCH_CACHE at a larger disk, then run again to resume"
                ) from exc
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # -- maintenance ------------------------------------------------------------------
    def info(self) -> dict[str, dict[str, float]]:
        """Per stage: number of entries and megabytes on disk."""
        out: dict[str, dict[str, float]] = {}
        if not self.root.exists():
            return out
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in {"locks", "tmp"}):
            entries = [e for sub in stage_dir.iterdir() if sub.is_dir() for e in sub.iterdir() if e.is_dir()]
            size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
            out[stage_dir.name] = {"entries": len(entries), "mb": size / 2**20}
        return out

    def clear(self, stage: str | None = None) -> None:
        """Remove every entry (or one stage's)."""
        target = self.root / stage if stage else self.root
        if target.exists():
            shutil.rmtree(target)


_CURRENT: ContextVar[Cache | None] = ContextVar("interpbench_cache", default=None)


def current_cache() -> Cache:
    """The cache of the run in progress (set by the runner), else one at :func:`default_root`.

    Plugins that train or prepare something expensive (a CNN trained on shapes, a byte-level
    transformer, LPIPS features) store it here with :meth:`Cache.get_or_compute`.
    """
    cache = _CURRENT.get()
    return cache if cache is not None else Cache()


@contextmanager
def using_cache(cache: Cache) -> Iterator[Cache]:
    """Make ``cache`` the :func:`current_cache` inside the ``with`` block."""
    token = _CURRENT.set(cache)
    try:
        yield cache
    finally:
        _CURRENT.reset(token)

