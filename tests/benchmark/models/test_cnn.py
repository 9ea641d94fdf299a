"""Trained CNNs: train on first use, cached weights with held-out accuracy; untrained controls."""

import gzip
import json

import numpy as np
import pytest
import torch

from benchmark.cache import Cache, using_cache
from benchmark.errors import UserError
from benchmark.models.cnn import FashionCNN, FashionCNNUntrained, ShapesCNN, ShapesCNNUntrained

TINY = dict(width=4, n_train=256, n_test=96, epochs=4, batch_size=32, lr=1e-2)


@pytest.mark.slow
def test_shapes_cnn_learns_a_planted_factor_and_caches_it(tmp_path):
    """Background color is trivially visible: a tiny net must learn it; the second load trains nothing."""
    cache = Cache(tmp_path / "cache")
    with using_cache(cache):
        model = ShapesCNN(target="background", image_size=16, **TINY)
        again = ShapesCNN(target="background", image_size=16, **TINY)
    trained = [(r.stage, r.computed) for r in cache.records if r.stage == "model"]  # (the data's hygiene is cached too)
    assert trained == [("model", True), ("model", False)]
    assert model.heldout_accuracy > 0.9
    assert again.heldout_accuracy == model.heldout_accuracy
    assert model.identity() == again.identity() and model.identity()["heldout_accuracy"] > 0.9
    for (k, a), b in zip(model.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), k
    entry = next((tmp_path / "cache" / "model").rglob("train.json"))
    record = json.loads(entry.read_text())
    assert record["heldout_accuracy"] == model.heldout_accuracy and record["train"]["n_train"] == 256
    assert (entry.parent / "weights.safetensors").is_file()
    assert model.n_classes == 3 and model.input_size == 16


def test_other_training_parameters_are_another_cache_entry(tmp_path):
    cache = Cache(tmp_path / "cache")
    with using_cache(cache):
        a = ShapesCNN(target="background", image_size=16, **TINY)
        b = ShapesCNN(target="background", image_size=16, **{**TINY, "epochs": 1})
    assert [r.computed for r in cache.records if r.stage == "model"] == [True, True]
    assert a.identity()["weights"] != b.identity()["weights"]


def test_untrained_controls_share_the_architecture(tmp_path):
    with using_cache(Cache(tmp_path / "cache")):
        trained = ShapesCNN(image_size=16, **{**TINY, "width": 16, "epochs": 1, "n_train": 32})
    control = ShapesCNNUntrained()
    shapes = {k: v.shape for k, v in control.net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in trained.net.state_dict().items()}
    assert control.layers() == trained.layers()
    x = torch.rand(2, 3, 64, 64)
    assert control.predict(x).shape == (2, 6)
    assert FashionCNNUntrained().predict(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow
def test_fashion_cnn_trains_on_local_idx_files(tmp_path):
    """Fake Fashion-MNIST whose brightness encodes the class: learnable by a tiny net."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 400), ("t10k", 120)):
        labels = rng.integers(0, 10, size=n)
        images = np.clip(labels[:, None, None] * 25 + rng.integers(0, 8, size=(n, 28, 28)), 0, 255)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    with using_cache(Cache(tmp_path / "cache")):
        model = FashionCNN(root=str(tmp_path), **{**TINY, "n_train": 384, "n_test": 120, "epochs": 6})
    assert model.heldout_accuracy > 0.6  # chance is 0.1
    assert model.channels == 1 and model.predict(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_bad_parameters(tmp_path):
    with using_cache(Cache(tmp_path / "cache")):
        with pytest.raises(UserError, match="target"):
            ShapesCNN(target="hue")
        with pytest.raises(UserError, match="n_train"):
            ShapesCNN(n_train=4, batch_size=64)
        with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
            FashionCNN(root=str(tmp_path / "absent"))
