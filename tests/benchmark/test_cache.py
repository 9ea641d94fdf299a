"""The stage cache: atomic entries, checksums, corruption detection, locking."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from benchmark.cache import Cache


def _writer(value: float, calls: list):
    def compute(tmp):
        calls.append(value)
        np.save(tmp / "x.npy", np.full(1000, value))

    return compute


def test_hit_after_miss(tmp_path):
    cache = Cache(tmp_path)
    calls: list = []
    p1 = cache.get_or_compute("stage", {"a": 1}, _writer(1.0, calls))
    p2 = cache.get_or_compute("stage", {"a": 1}, _writer(1.0, calls))
    assert p1 == p2 and calls == [1.0]
    assert np.load(p1 / "x.npy")[0] == 1.0
    assert [r.computed for r in cache.records] == [True, False]
    manifest = json.loads((p1 / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"x.npy"}


def test_different_parts_different_entries(tmp_path):
    cache = Cache(tmp_path)
    calls: list = []
    cache.get_or_compute("stage", {"a": 1}, _writer(1.0, calls))
    cache.get_or_compute("stage", {"a": 2}, _writer(2.0, calls))
    assert calls == [1.0, 2.0]


def test_corrupt_entry_is_detected_and_recomputed(tmp_path):
    calls: list = []
    path = Cache(tmp_path).get_or_compute("stage", {"a": 1}, _writer(3.0, calls))
    f = path / "x.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the payload
    f.write_bytes(bytes(data))
    fresh = Cache(tmp_path)  # a new process: nothing verified yet
    with pytest.warns(UserWarning, match="corrupt"):
        path2 = fresh.get_or_compute("stage", {"a": 1}, _writer(3.0, calls))
    assert calls == [3.0, 3.0]
    assert np.all(np.load(path2 / "x.npy") == 3.0)


def test_failed_compute_leaves_no_entry(tmp_path):
    cache = Cache(tmp_path)

    def boom(tmp):
        np.save(tmp / "half.npy", np.zeros(3))
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("stage", {"a": 1}, boom)
    assert cache.lookup("stage", cache.key("stage", {"a": 1})) is None
    assert not any((tmp_path / "tmp").iterdir())


def test_concurrent_computes_run_once(tmp_path):
    calls: list = []
    lock = threading.Lock()

    def slow(tmp):
        with lock:
            calls.append(1)
        import time

        time.sleep(0.2)
        np.save(tmp / "x.npy", np.ones(3))

    threads = [threading.Thread(target=lambda: Cache(tmp_path).get_or_compute("s", {"k": 0}, slow)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]


def test_info_and_clear(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("stage", {"a": 1}, _writer(1.0, []))
    info = cache.info()
    assert info["stage"]["entries"] == 1 and info["stage"]["mb"] > 0
    cache.clear()
    assert cache.info() == {}
