"""Perceptual consistency (LPIPS-style "baseline" distance on a registered model's features):
values against a direct computation from hooked feature maps, default layers, skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import rank_codes

from benchmark.data.shapes import Shapes
from benchmark.errors import UserError
from benchmark.registry import MODELS
from metrics.base import TopExamples
from metrics.features import FEATURES
from metrics.perceptual import PerceptualConsistency


def direct_distances(model_name: str, layers: list[str], images: torch.Tensor) -> np.ndarray:
    """sum_l mean_hw sum_c (f/|f| (x) - f/|f| (y))^2, from scratch with forward hooks."""
    adapter = MODELS.get(model_name)()
    modules = dict(adapter.net.named_modules())
    maps: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: maps.__setitem__(n, o.clone())) for n in layers]
    with torch.no_grad():
        adapter.net(adapter.preprocess(images))
    for h in hooks:
        h.remove()
    m = len(images)
    out = np.zeros((m, m))
    for n in layers:
        f = maps[n].double()
        f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        for i in range(m):
            for j in range(m):
                out[i, j] += float(((f[i] - f[j]) ** 2).sum(0).mean())
    return out


def test_values_equal_direct_computation_and_default_layers():
    stimuli = Shapes(n=30, size=32, seed=2)
    metric = PerceptualConsistency(model="shapes_cnn_untrained", device="cpu")
    assert metric.skip_reason(stimuli) is None
    assert metric.resolved_layers(stimuli) == ("conv1", "conv2", "conv3", "conv4")
    emb = metric.gather(stimuli, np.arange(10)[None])
    ours = -metric.pairwise(emb, emb)[0].double().numpy()
    expected = direct_distances(
        "shapes_cnn_untrained", ["conv1", "conv2", "conv3", "conv4"], stimuli.images(np.arange(10))
    )
    print(f"perceptual: max |ours - direct| = {np.abs(ours - expected).max():.2e}")
    np.testing.assert_allclose(ours, expected, atol=1e-5)

    # through the protocol (Gram path) the same values come back
    FEATURES.clear()
    codes = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    examples = TopExamples(stimuli, rank_codes(codes, 5))
    score = PerceptualConsistency(model="shapes_cnn_untrained", layers=("conv2", "conv4"), n=5).score(examples)
    full = direct_distances("shapes_cnn_untrained", ["conv2", "conv4"], stimuli.images(np.arange(30)))
    off = ~np.eye(5, dtype=bool)
    expected = [-full[np.ix_(t, t)][off].mean() for t in examples.top_idx[:, :5]]
    np.testing.assert_allclose(score, expected, atol=1e-5)


def test_unknown_model_is_an_error_and_bad_layer_a_skip():
    with pytest.raises(UserError, match="unknown model"):
        PerceptualConsistency(model="efficientnet_lite9")
    reason = PerceptualConsistency(model="shapes_cnn_untrained", layers=("conv9",)).skip_reason(Shapes(n=4, size=32))
    assert reason is not None and "conv9" in reason


def test_default_model_is_skipped_with_a_reason_or_runs():
    stimuli = Shapes(n=40, size=32, seed=1)
    metric = PerceptualConsistency()
    assert metric.model == "efficientnet_lite0"
    reason = metric.skip_reason(stimuli)
    if reason is not None:
        print(f"perceptual_consistency default: skipped: {reason}")
        assert "efficientnet_lite0" in reason
        return
    codes = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    score = metric.score(TopExamples(stimuli, rank_codes(codes, 8)))
    assert np.isfinite(score).all() and (score <= 0).all()


def test_small_grayscale_images_are_upsampled_for_a_deep_model():
    """A 28-px grayscale set (Fashion-MNIST size) is upsampled to the model's min_input_size
    (EfficientNet: 64) instead of failing on a kernel larger than its feature map; models that
    declare no minimum, and large enough images, are left alone."""
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    metric = PerceptualConsistency()
    if metric.skip_reason(Shapes(n=4, size=32)) is not None:
        pytest.skip("EfficientNet-Lite0 weights not installed")
    least = metric.adapter().min_input_size
    big = torch.nn.functional.interpolate(images, size=(least, least), mode="bilinear", align_corners=False)
    assert torch.equal(metric._large_enough(images), big)
    assert torch.equal(metric._large_enough(big), big)
    assert sum(len(b) for b in metric.raw_batches(_Gray28(), np.arange(3))) == 3
    assert torch.equal(PerceptualConsistency(model="shapes_cnn_untrained")._large_enough(images), images)


class _Gray28(Shapes):
    """Three grayscale 28-px images."""

    def __init__(self) -> None:
        super().__init__(n=3, size=28)
        self.provides = frozenset({"images", "labels"})

    def images(self, idx):
        return super().images(idx).mean(dim=1, keepdim=True)


def test_a_network_never_judges_its_own_directions(tmp_path):
    """A task on the metric's own backbone is skipped with the reason; another network, or the
    same architecture with other settings (another network), is judged."""
    from benchmark.cache import Cache
    from benchmark.config import parse_config
    from benchmark.runner import Runner

    metric = PerceptualConsistency()
    assert "would judge its own directions" in metric.model_skip_reason("efficientnet_lite0", {})
    assert metric.model_skip_reason("shapes_cnn", {}) is None
    assert metric.model_skip_reason("efficientnet_lite0", {"spatial": "max"}) is None
    grid = """
name = "own"
seeds = [0]
chance_sets = 4

[[tasks]]
model = "shapes_cnn_untrained"
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 300, size = 32 }

[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 300, size = 32 }

[[methods]]
name = "pca"
params = { n_components = 4 }

[[metrics]]
name = "perceptual_consistency"
params = { model = "shapes_cnn_untrained", layers = ["conv1", "conv3"] }
"""
    runner = Runner(parse_config(grid, "own.toml"), Cache(tmp_path / "c"), results_dir=tmp_path / "r", progress=False)
    status = runner.run().scores["status"].astype(str)
    own = status.str.startswith("skipped: the analysed network shapes_cnn_untrained would judge its own directions")
    # the default network's 4 directions are skipped; the width-8 network's are judged
    assert own.sum() == 4 and (status[~own] == "ok").sum() == 4
