"""Extraction through a model adapter into a store: memory bounded by the batch, rows in sample order."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.activations import ActivationStore, write_store
from benchmark.data.base import StimulusSet
from benchmark.models.base import TorchImageModel


class NoiseImages(StimulusSet):
    """``n`` 3x8x8 images, each a function of its index alone (nothing is stored)."""

    provides = frozenset({"images"})

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def identity(self) -> dict:
        return {"name": "noise", "n": self.n}

    def images(self, idx):
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.float32)
        base = torch.linspace(0, 1, 192).view(1, 3, 8, 8)
        return (base * (1 + idx.view(-1, 1, 1, 1) % 97) / 98).clamp(0, 1)


class WideModel(TorchImageModel):
    """Flatten + Linear(192 -> 4096): a wide layer, so the whole store is large."""

    name = "wide"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(192, 4096)).eval()

    def layers(self):
        return ["1"]


def _rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for resident memory")
def test_extraction_memory_is_bounded_by_the_batch(tmp_path):
    n, batch = 16384, 256  # store: 16384 x 4096 float32 = 256 MiB; one batch: 4 MiB
    model, data = WideModel(), NoiseImages(n)
    idx = np.arange(n)[::-1].copy()  # any order: rows follow idx
    store_mib = n * 4096 * 4 / 2**20
    start = _rss_anon_mib()
    peak = [start]

    def progress(_rows: int) -> None:
        peak[0] = max(peak[0], _rss_anon_mib())

    tracemalloc.start()
    chunks = model.activations(data, idx, "1", batch_size=batch, device=torch.device("cpu"))
    write_store(tmp_path / "store", chunks, idx, progress=progress, name="wide")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    growth = peak[0] - start
    assert store_mib == 256
    assert growth < 48, f"anonymous memory grew {growth:.0f} MiB while writing a {store_mib:.0f} MiB store"
    assert traced_peak / 2**20 < 48, f"numpy/python allocations peaked at {traced_peak / 2**20:.0f} MiB"

    reopened = ActivationStore.open(tmp_path / "store")
    assert reopened.n == n and reopened.d == 4096
    assert np.array_equal(reopened.ids, idx)
    for row in (0, 1, n // 2, n - 1):  # each row is the activation of sample ids[row]
        with torch.inference_mode():
            expected = model.net(data.images([reopened.ids[row]]))[0]
        assert torch.allclose(reopened.rows(row, row + 1)[0], expected, atol=1e-5)


def test_float16_store_and_unknown_layer(tmp_path):
    model, data = WideModel(), NoiseImages(300)
    idx = np.arange(300)
    store = write_store(
        tmp_path / "s", model.activations(data, idx, "1", batch_size=128, device="cpu"), idx, dtype="float16"
    )
    assert store.acts.dtype == np.float16 and store.n == 300
    with pytest.raises(Exception, match=r"no layer '2'.*valid: 1"):
        list(model.activations(data, idx, "2", batch_size=8, device="cpu"))
