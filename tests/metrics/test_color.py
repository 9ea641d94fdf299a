"""Color consistency: values by hand, CIELAB against scikit-image, skips, planted directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import auc, oracle_codes, rank_codes

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from metrics.base import TopExamples
from metrics.color import ColorConsistency, rgb_to_lab


class Gray(StimulusSet):
    provides = frozenset({"images", "labels"})

    def __len__(self) -> int:
        return 10

    def identity(self) -> dict:
        return {"name": "gray"}

    def images(self, idx):
        return torch.zeros(len(idx), 1, 8, 8)


def test_rgb_to_lab_matches_scikit_image():
    skcolor = pytest.importorskip("skimage.color")
    rgb = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    ours = rgb_to_lab(rgb).permute(0, 2, 3, 1).numpy()
    ref = skcolor.rgb2lab(rgb.permute(0, 2, 3, 1).numpy().astype(np.float64))
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_pairwise_is_negative_distance_of_mean_colors():
    metric = ColorConsistency()
    images = torch.zeros(2, 3, 4, 4)
    images[0, 0] = 1.0  # pure red
    images[1, :, :2] = 1.0  # top half white: mean (0.5, 0.5, 0.5)
    colors = metric.mean_colors(images)
    np.testing.assert_allclose(colors.numpy(), [[1, 0, 0], [0.5, 0.5, 0.5]], atol=1e-7)
    sim = metric.pairwise(colors[None], colors[None])[0]
    assert float(sim[0, 1]) == pytest.approx(-np.sqrt(0.25 + 0.25 + 0.25), abs=1e-6)
    assert float(sim[0, 0]) == 0.0


def test_grayscale_sets_are_skipped_and_bad_space_is_an_error():
    reason = ColorConsistency().skip_reason(Gray())
    assert reason is not None and "grayscale" in reason
    with pytest.raises(UserError, match="space"):
        ColorConsistency(space="hsv")


def _image_color_codes(stimuli, n_random=24, seed=0):
    """Directions that fix the whole image's colors: background, and hue x background."""
    rng = np.random.default_rng(seed)
    f = stimuli.factors(np.arange(len(stimuli)))
    cols = [(f["background"] == b) * 1.0 for b in range(3)]
    cols += [((f["color"] == c) & (f["background"] == b)) * 1.0 for c in range(8) for b in range(3)]
    cols = [c + 0.05 * rng.standard_normal(len(stimuli)) for c in cols]
    planted = np.stack(cols, axis=1)
    return np.concatenate([planted, rng.standard_normal((len(stimuli), n_random))], axis=1), planted.shape[1]


@pytest.mark.parametrize("space", ["rgb", "lab"])
def test_color_directions_beat_random_directions(shapes_small, space):
    codes, k = _image_color_codes(shapes_small)
    planted = np.arange(codes.shape[1]) < k
    examples = TopExamples(shapes_small, rank_codes(codes, 16))
    score = ColorConsistency(space=space).score(examples)
    a = auc(score, planted)
    # foreground hue alone barely moves the mean color (the shape covers 6-28% of the image)
    hue_codes, tags = oracle_codes(shapes_small, ("color",), 24)
    hue = ColorConsistency(space=space).score(TopExamples(shapes_small, rank_codes(hue_codes, 16)))
    a_hue = auc(hue, np.array(tags) != "random")
    print(f"color_consistency[{space}, consistency]: AUC {a:.3f} (background, hue x background); hue alone {a_hue:.3f}")
    assert a >= 0.9


def test_color_psychophysics_separates_background_directions(oracle):
    examples, tags = oracle(("background",))
    for space in ("rgb", "lab"):
        out = ColorConsistency(space=space, protocol="psychophysics").score_all(examples)
        a = auc(out[""], tags != "random")
        print(
            f"color_consistency[{space}, psychophysics]: AUC {a:.3f}; chance-level mean {out[''][tags == 'random'].mean():.3f}"
        )
        assert a >= 0.9
        assert abs(out[""][tags == "random"].mean() - 0.5) < 0.05
