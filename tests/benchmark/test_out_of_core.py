"""Activation stores larger than the memory a process may use: chunked reads keep the resident
set flat, and a full disk is a clear error that leaves the cache consistent."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore, write_store
from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.runner import LocalExecutor, Runner

TINY = """
name = "tiny_disk"
seeds = [0]
chance_sets = 8

[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 200, size = 16 }

[[methods]]
name = "pca"

[[metrics]]
name = "label_consistency"
sweep = { protocol = ["consistency"] }
"""


def _runner(tmp_path: Path) -> Runner:
    return Runner(parse_config(TINY, "tiny.toml"), Cache(tmp_path / "cache"), progress=False, executor=LocalExecutor())


def _entries(root: Path, stage: str) -> list[Path]:
    return sorted(p.parent for p in (root / stage).rglob("MANIFEST.json")) if (root / stage).exists() else []


def _leftovers(root: Path) -> list[Path]:
    tmp = root / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["rows", "preallocation"])
def test_full_disk_while_extracting_is_clear_and_leaves_no_partial_entry(tmp_path, monkeypatch, where):
    import benchmark.activations as activations

    if where == "rows":  # the space reserved is gone by the time rows are written
        monkeypatch.setattr(activations, "_write_rows", _disk_full)
    else:  # not even room for the store: fails before any extraction work
        monkeypatch.setattr(os, "posix_fallocate", _disk_full)
    runner = _runner(tmp_path)
    task = runner.tasks()[0]
    root = tmp_path / "cache"
    with pytest.raises(UserError, match=rf"disk full: no space left under {root} while writing the activations entry"):
        runner.activations(task, "fit")
    assert _entries(root, "activations") == []
    assert _leftovers(root) == []
    monkeypatch.undo()  # space freed: the same call now succeeds and the entry is intact
    path, _ = _runner(tmp_path).activations(task, "fit")
    assert _entries(root, "activations") == [path]
    assert ActivationStore.open(path).n == 100


def test_full_disk_in_any_stage_keeps_the_cache_consistent(tmp_path):
    cache = Cache(tmp_path / "cache")

    def compute(tmp: Path) -> None:
        np.save(tmp / "half.npy", np.zeros(10))
        _disk_full()

    with pytest.raises(UserError, match="disk full.*basis entry.*nothing partial was kept"):
        cache.get_or_compute("basis", {"x": 1}, compute)
    assert _entries(cache.root, "basis") == [] and _leftovers(cache.root) == []
    path = cache.get_or_compute("basis", {"x": 1}, lambda tmp: np.save(tmp / "ok.npy", np.ones(3)))
    assert np.load(path / "ok.npy").tolist() == [1.0, 1.0, 1.0]


def test_chunked_reads_equal_the_array(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5000, 12)).astype(np.float32)
    store = write_store(tmp_path / "s", iter(torch.from_numpy(x).split(700)), np.arange(5000), dtype="float32")
    np.testing.assert_array_equal(torch.cat(list(store.batches(999))).numpy(), x)
    np.testing.assert_array_equal(store.rows(1234, 4321).numpy(), x[1234:4321])
    shuffled = torch.cat(list(store.batches(64, shuffle=True, seed=3))).numpy()
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(x, axis=0))
    sample = store.load(max_rows=777, seed=5).numpy()
    np.testing.assert_array_equal(torch.cat(list(store.sample_batches(777, 100, seed=5))).numpy(), sample)
    assert set(map(tuple, sample)) <= set(map(tuple, x))


# The measurement runs in a fresh process so that its peak resident set is its own; the peak
# is reset (/proc/self/clear_refs) before each phase and read back from VmHWM.
PROBE = textwrap.dedent(
    """
    import json, sys, numpy as np, torch
    from pathlib import Path
    from benchmark.activations import ActivationStore, write_store
    from benchmark.topk import top_examples
    from methods.base import LinearBasis
    from methods.pca import PCA

    torch.set_num_threads(1)
    path, n, d = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    def reset():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return kib("VmRSS")

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    def chunks():  # non-negative, sparse-ish float activations, generated chunk by chunk
        rng = np.random.default_rng(0)
        for start in range(0, n, 16384):
            b = min(16384, n - start)
            yield torch.from_numpy(np.maximum(rng.random((b, d), dtype=np.float32) - 0.7, 0))

    out = {}
    base = reset()
    store = write_store(path, chunks(), np.arange(n), dtype="float16")
    out["write"] = kib("VmHWM") - base
    base = reset()
    for _ in store.batches(8192):
        pass
    out["scan"] = kib("VmHWM") - base
    base = reset()
    basis = PCA(n_components=64, solver="covariance").fit(store, seed=0)
    out["fit_pca"] = kib("VmHWM") - base
    base = reset()
    bands = top_examples(basis, store, 16, (0.0, 0.1))
    out["top_k"] = kib("VmHWM") - base
    out["top_shape"] = list(bands[0.0].top_idx.shape)
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak RSS")
def test_resident_memory_stays_far_below_the_store_size(tmp_path):
    n, d = 2_000_000, 128  # float16 on disk: 2e6 x 128 x 2 bytes = 488 MiB
    store_kib = n * d * 2 // 1024
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "store"), str(n), str(d)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = json.loads(proc.stdout.strip().splitlines()[-1])
    assert growth.pop("top_shape") == [64, 16]
    assert (tmp_path / "store" / "acts.npy").stat().st_size >= store_kib * 1024
    budget = store_kib // 4  # a quarter of the store: what a machine with less RAM than data allows
    for phase, kib in growth.items():
        assert kib < budget, f"{phase}: peak RSS grew by {kib / 1024:.0f} MiB for a {store_kib / 1024:.0f} MiB store"
