"""Downstream fidelity: exact reconstructions recover everything; a mean reconstruction equals mean ablation."""

import json

import numpy as np
import pytest
import torch

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.data.shapes import Shapes
from benchmark.models.cnn import ShapesCNNUntrained
from benchmark.models.fidelity import _shifted, probe_subset, splice_fidelity
from benchmark.runner import Runner
from methods.base import LinearBasis


@pytest.fixture(scope="module")
def setup():
    model = ShapesCNNUntrained(width=8)
    data = Shapes(n=160, size=24, seed=5)
    return model, data, np.arange(0, 160, 2)


def pooled(model, data, idx, layer):
    return torch.cat(list(model.activations(data, idx, layer, batch_size=64, device="cpu")))


@pytest.mark.parametrize("layer", ["conv2", "conv4", "pool", "head"])
def test_exact_reconstruction_recovers_all(setup, layer):
    model, data, idx = setup
    d = pooled(model, data, idx[:2], layer).shape[1]
    eye = torch.eye(d)
    basis = LinearBasis(directions=eye, encoder=eye, decoder=eye)
    out = splice_fidelity(model, basis, layer, data, idx, batch_size=32)
    assert out["accuracy_recovered"] == 1.0 and out["fidelity_n"] == len(idx)


def test_mean_reconstruction_equals_mean_ablation(setup):
    _, data, idx = setup
    model = ShapesCNNUntrained(width=8, seed=1)
    with torch.no_grad():
        model.net.head.weight.mul_(50.0)  # make predictions depend on the image
    logits = torch.cat([model.predict(data.images(idx[s : s + 64])) for s in range(0, len(idx), 64)])
    pred = logits.argmax(1)
    assert len(pred.unique()) > 1
    mean = logits.mean(dim=0)
    basis = LinearBasis(directions=torch.eye(2, 6), bias=mean, decoder=torch.zeros(2, 6))
    out = splice_fidelity(model, basis, "head", data, idx)
    expected = float((pred == mean.argmax()).float().mean())  # every spliced answer is argmax(mean)
    assert out["accuracy_recovered"] == pytest.approx(expected)
    assert out["accuracy_recovered_mean_ablation"] == pytest.approx(expected)
    assert expected < 1.0


def test_conv_shift_moves_the_spatial_mean_and_keeps_the_pattern():
    out = torch.randn(2, 3, 5, 5)
    pooled_mean = out.mean(dim=(2, 3))
    target = torch.randn(2, 3)
    new = _shifted(out, pooled_mean, target)
    assert torch.allclose(new.mean(dim=(2, 3)), target, atol=1e-6)
    assert torch.allclose(new - new.mean(dim=(2, 3), keepdim=True), out - out.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    tokens = torch.randn(2, 4, 3)
    assert torch.allclose(_shifted(tokens, tokens.mean(1), target).mean(1), target, atol=1e-6)


def test_probe_subset_is_seeded_and_bounded():
    idx = np.arange(1000)
    a, b = probe_subset(idx, 100), probe_subset(idx, 100)
    assert len(a) == 100 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert np.array_equal(probe_subset(idx[:50], 100), idx[:50])


def test_runner_reports_accuracy_recovered_beside_fvu(tmp_path):
    text = """
name = "fid"
chance_sets = 4
[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv3"]
dataset = "shapes"
dataset_params = { n = 300, size = 16 }
[[methods]]
name = "pca"
params = { n_components = 8 }
[[methods]]
name = "neurons"
[[metrics]]
name = "label_consistency"
sweep = { protocol = ["consistency"] }
"""
    runner = Runner(parse_config(text, "fid.toml"), Cache(tmp_path / "c"), results_dir=tmp_path / "r", progress=False)
    fits = runner.run().fits
    extra = {row.method: json.loads(row.extra) for row in fits.itertuples()}
    pca = extra["pca"]
    assert 0.0 <= pca["accuracy_recovered"] <= 1.0 and pca["fidelity_n"] == 150
    assert pca["accuracy_recovered"] >= pca["accuracy_recovered_mean_ablation"]
