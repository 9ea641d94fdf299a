"""LPIPS consistency against the lpips package itself (same random AlexNet trunk, v0.1 linear
weights): cached Gram-form distances equal ``lpips.LPIPS`` to 1e-5; skips without weights."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from metrics.base import Ranked, TopExamples
from metrics.features import FEATURES, image_batches
from metrics.lpips import ALEXNET_FILE, LPIPSConsistency

lpips = pytest.importorskip("lpips")


class Noise(StimulusSet):
    """Smooth random RGB images of a given size (fixed by seed)."""

    provides = frozenset({"images", "rgb_images"})

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 8, 8, generator=g)
        self.data = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear").clamp(0, 1)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.data)

    def identity(self) -> dict:
        return {"name": "noise", "n": len(self), "size": self.data.shape[-1], "seed": self.seed}

    def images(self, idx):
        return self.data[torch.as_tensor(np.asarray(idx))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``(lpips.LPIPS with a random trunk, path of that trunk in torchvision's layout)``."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    state = {f"features.{k.split('.', 1)[1]}": v.contiguous() for k, v in ref.net.state_dict().items()}
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-random.safetensors"
    save_file(state, str(path))
    return ref, path


def package_distances(ref, images: torch.Tensor) -> np.ndarray:
    m = len(images)
    a = images[:, None].expand(-1, m, -1, -1, -1).reshape(-1, *images.shape[1:])
    b = images[None].expand(m, -1, -1, -1, -1).reshape(-1, *images.shape[1:])
    with torch.no_grad():
        return ref(a, b, normalize=True).reshape(m, m).double().numpy()


@pytest.mark.parametrize("size", [32, 64, 224])
def test_cached_distances_equal_the_package(reference, size):
    ref, path = reference
    stimuli = Noise(5 if size == 224 else 8, size, seed=size)
    metric = LPIPSConsistency(weights=str(path), device="cpu")
    assert metric.skip_reason(stimuli) is None
    emb = metric.gather(stimuli, np.arange(len(stimuli))[None])
    ours = -metric.pairwise(emb, emb)[0].double().numpy()
    expected = package_distances(ref, stimuli.images(np.arange(len(stimuli))))
    diff = np.abs(ours - expected).max()
    print(f"LPIPS {size}x{size}: max |cached - lpips.LPIPS| = {diff:.2e} (values up to {expected.max():.3f})")
    assert diff < 1e-5


@pytest.mark.slow
def test_protocols_use_the_package_values_and_run_the_backbone_once_per_image(reference):
    ref, path = reference
    stimuli = Noise(24, 64, seed=7)
    rng = np.random.default_rng(0)
    top = np.stack([rng.choice(24, 6, replace=False) for _ in range(12)])
    ranked = Ranked(top, np.zeros(top.shape), top[:, ::-1].copy(), np.zeros(top.shape))
    examples = TopExamples(stimuli, {0.0: ranked})
    FEATURES.clear()
    score = LPIPSConsistency(weights=str(path), n=6, device="cpu").score(examples)
    assert FEATURES.misses == len(stimuli)  # the pool (all stimuli here) once; + 16 centring images outside the table
    FEATURES.misses = 0
    psych = LPIPSConsistency(
        weights=str(path), device="cpu", protocol="psychophysics", n_trials=2, n_references=2, quantiles=(0.0,)
    )
    assert np.isfinite(psych.score_all(examples)[""]).all()
    assert FEATURES.misses == 0  # other protocols and bases reuse the features
    full = package_distances(ref, stimuli.images(np.arange(24)))
    off = ~np.eye(6, dtype=bool)
    expected = np.array([-full[np.ix_(t, t)][off].mean() for t in top])
    np.testing.assert_allclose(score, expected, atol=1e-5)
    # the gather path (no Gram matrix) gives the same values
    FEATURES.clear()
    metric = LPIPSConsistency(weights=str(path), n=6, device="cpu")
    emb = metric.gather(stimuli, top)
    sim = metric.pairwise(emb, emb).double().numpy()
    np.testing.assert_allclose(sim[:, off].mean(axis=1), expected, atol=1e-5)
    # and so does the route large pools take: each set's sum of rows (no pairwise products)
    np.testing.assert_allclose(metric.mean_pairwise_similarity(stimuli, top), expected, atol=1e-5)


def test_embeddings_in_several_batches_equal_one_batch(reference, monkeypatch):
    """Batches share one output buffer: rows embedded 3 at a time equal rows embedded at once."""
    _, path = reference
    stimuli = Noise(10, 64, seed=5)
    metric = LPIPSConsistency(weights=str(path), device="cpu")
    FEATURES.clear()
    at_once = metric.embed(stimuli, np.arange(10))
    FEATURES.clear()
    monkeypatch.setattr("metrics.lpips.image_batches", functools.partial(image_batches, batch_size=3))
    in_threes = metric.embed(stimuli, np.arange(10))
    torch.testing.assert_close(in_threes, at_once, rtol=0, atol=1e-6)
    FEATURES.clear()


def test_scores_do_not_depend_on_call_order(reference):
    _, path = reference
    stimuli = Noise(30, 32, seed=3)
    rng = np.random.default_rng(2)
    sets = [np.stack([rng.choice(30, 5, replace=False) for _ in range(k)]) for k in (40, 3)]
    examples = [TopExamples(stimuli, {0.0: Ranked(t, np.zeros(t.shape), t, np.zeros(t.shape))}) for t in sets]
    metric = LPIPSConsistency(weights=str(path), n=5, device="cpu")
    FEATURES.clear()
    first = [metric.score(e) for e in examples]
    FEATURES.clear()
    second = [metric.score(e) for e in examples[::-1]][::-1]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_skip_without_weights_names_the_file_and_where(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reason = LPIPSConsistency().skip_reason(Noise(2, 32))
    assert reason is not None and ALEXNET_FILE in reason and str(tmp_path / "hub" / "checkpoints") in reason
    assert "\n" not in reason
    reason = LPIPSConsistency(weights=str(tmp_path / "missing.pth")).skip_reason(Noise(2, 32))
    assert reason is not None and "missing.pth" in reason


def test_small_images_need_image_size(reference):
    _, path = reference
    with pytest.raises(UserError, match="image_size"):
        LPIPSConsistency(weights=str(path), device="cpu").embed(Noise(3, 16, seed=1), np.arange(3))
    emb = LPIPSConsistency(weights=str(path), image_size=32, device="cpu").embed(Noise(3, 16, seed=1), np.arange(3))
    assert emb.shape[0] == 3
    with pytest.raises(UserError, match="image_size"):
        LPIPSConsistency(image_size=16)
