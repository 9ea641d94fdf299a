"""shapes: deterministic factors, captions, masks that match the reference geometry, the uint8 cache."""

import numpy as np
import pytest

from benchmark.data.shapes import BACKGROUND_RGB, FACTORS, HUES, SHAPES, Shapes, shape_mask
from benchmark.errors import UserError


def test_same_seed_same_images_and_factors():
    a, b = Shapes(n=64, size=32, seed=3), Shapes(n=64, size=32, seed=3, cache_mb=0)
    idx = np.array([5, 0, 63, 5])
    assert np.array_equal(a.images_uint8(idx), b.images_uint8(idx))  # cached == rendered on demand
    assert np.array_equal(a.images_uint8(idx), a.images_uint8(idx))  # second read from the cache
    for k, v in a.factors(idx).items():
        assert np.array_equal(v, b.factors(idx)[k])
    assert not np.array_equal(Shapes(n=64, size=32, seed=4).images_uint8(idx), a.images_uint8(idx))


def test_images_are_float_in_unit_range_with_shape():
    s = Shapes(n=10, size=24)
    x = s.images(np.arange(10))
    assert x.shape == (10, 3, 24, 24) and x.dtype.is_floating_point
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_factors_cover_every_value_and_labels_follow_label_factor():
    s = Shapes(n=2000, label_factor="color")
    f = s.factors(np.arange(len(s)))
    for name, values in FACTORS.items():
        assert set(np.unique(f[name])) == set(range(len(values))), name
    assert np.array_equal(s.labels(np.arange(len(s))), f["color"])
    assert s.label_names == list(HUES)
    assert s.identity() != Shapes(n=2000).identity()  # labels differ, so the identity must too


def test_caption_names_the_factors():
    s = Shapes(n=50, seed=1)
    f = s.factors(np.arange(len(s)))
    for i, cap in enumerate(s.captions(np.arange(len(s)))):
        assert SHAPES[f["shape"][i]] in cap and HUES[f["color"][i]] in cap
        assert ("striped" in cap) == (f["texture"][i] == 1)


def test_rendered_mask_matches_reference_geometry():
    """Foreground pixels equal the reference mask computed from rotated coordinates."""
    s = Shapes(n=300, size=48, seed=7)
    idx = np.arange(len(s))
    f = s.factors(idx)
    img = s.images_uint8(idx).astype(int)
    bg = np.round(BACKGROUND_RGB[f["background"]] * 255).astype(int)[:, :, None, None]
    drawn = (img != bg).any(axis=1)  # [m, s, s]
    grid = (np.arange(48) + 0.5) / 48
    cx = (0.25 + 0.25 * f["x"] + s._jitter[s._keep[idx], 0])[:, None, None]
    cy = (0.25 + 0.25 * f["y"] + s._jitter[s._keep[idx], 1])[:, None, None]
    radius = np.array([0.14, 0.22, 0.30])[f["size"]][:, None, None]
    dx, dy = (grid[None, None, :] - cx) / radius, (grid[None, :, None] - cy) / radius
    c, sn = np.cos(f["rotation"])[:, None, None], np.sin(f["rotation"])[:, None, None]
    ref = shape_mask(f["shape"], c * dx + sn * dy, -sn * dx + c * dy)
    # float32 vs float64 rounding may flip pixels exactly on an edge; nothing else
    assert (drawn != ref).mean() < 1e-3
    assert ref.any(axis=(1, 2)).all()


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"size": 4}, {"label_factor": "hue"}])
def test_bad_parameters_are_user_errors(kwargs):
    with pytest.raises(UserError):
        Shapes(**kwargs)


def test_out_of_range_index_is_an_error():
    with pytest.raises(UserError, match="out of range"):
        Shapes(n=5).images(np.array([len(Shapes(n=5))]))
