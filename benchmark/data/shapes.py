"""``shapes``: procedural images with known generative factors.

Each image shows one shape (circle, triangle, square, hexagon, cross, ring) in one of eight
hues, solid or striped, at one of three sizes and nine positions, rotated by any angle, on a
black, grey or white background. Factors are drawn from ``seed``; images are rendered on
demand, vectorised over the batch (numpy, every pixel test written as a sum of a row term and a
column term so only one full-size operation is needed per half-plane), quantised to uint8 and
kept in an in-memory cache, so any index gives the same image every time. Draws that come out
as near-duplicates of an earlier draw (same factors, nearly the same rotation and position) are
removed and counted (:attr:`Shapes.hygiene`, see :mod:`benchmark.data.hygiene`), so ``len(s)``
can be a little below ``n``.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from benchmark.codedigest import code_digest
from benchmark.data.base import StimulusSet
from benchmark.data.hygiene import clean_cached, image_manifest
from benchmark.data.images import to_float
from benchmark.errors import UserError

SHAPES = ("circle", "triangle", "square", "hexagon", "cross", "ring")
HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
_HUE_DEGREES = (0, 30, 55, 120, 180, 225, 275, 320)
HUE_RGB = np.array([colorsys.hsv_to_rgb(h / 360, 0.9, 0.95) for h in _HUE_DEGREES], dtype=np.float32)
BACKGROUNDS = ("black", "grey", "white")
BACKGROUND_RGB = np.array([[0.05] * 3, [0.5] * 3, [0.97] * 3], dtype=np.float32)
SIZES = ("small", "medium", "large")
_SIZE_RADIUS = (0.14, 0.22, 0.30)  # fraction of the image side
XPOS = ("left", "center", "right")
YPOS = ("top", "middle", "bottom")
TEXTURES = ("solid", "striped")
FACTORS = {
    "shape": SHAPES,
    "color": HUES,
    "background": BACKGROUNDS,
    "size": SIZES,
    "x": XPOS,
    "y": YPOS,
    "texture": TEXTURES,
}
#: stripes darken the foreground to this fraction of its color
STRIPE_SHADE = 0.45
#: stripe frequency: ``sin(STRIPE_FREQ * x) > 0`` in shape-radius units
STRIPE_FREQ = 9.0
_FG_U8 = np.round(HUE_RGB * 255).astype(np.uint8)  # [8, 3]
_FG_DARK_U8 = np.round(HUE_RGB * STRIPE_SHADE * 255).astype(np.uint8)  # [8, 3]
_BG_U8 = np.round(BACKGROUND_RGB * 255).astype(np.uint8)  # [3, 3]


def _linear(a: np.ndarray, b: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``a * dx + b * dy`` as ``[m, s, s]``: ``a, b [m]``, ``dx [m, 1, s]``, ``dy [m, s, 1]``."""
    return (a[:, None, None] * dx) + (b[:, None, None] * dy)


def _polygon(dx: np.ndarray, dy: np.ndarray, rot: np.ndarray, sides: int) -> np.ndarray:
    """Inside a regular polygon of circumradius 1 (vertex up before rotation by ``rot [m]``)."""
    cos, sin = np.cos(rot), np.sin(rot)
    apothem = np.cos(np.pi / sides)
    inside = None
    for k in range(sides):
        theta = np.pi / 2 + np.pi / sides + 2 * np.pi * k / sides
        # x cos(theta) - y sin(theta) with (x, y) the coordinates rotated by rot
        a = cos * np.cos(theta) + sin * np.sin(theta)
        b = sin * np.cos(theta) - cos * np.sin(theta)
        half = _linear(a, b, dx, dy) <= apothem
        inside = half if inside is None else inside & half
    return inside


def _mask_of(kind: int, dx: np.ndarray, dy: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Mask ``[m, s, s]`` of shape ``kind`` for images whose unit-radius offsets are ``dx, dy``."""
    if kind in (0, 5):
        r2 = (dx * dx) + (dy * dy)
        return r2 <= 1.0 if kind == 0 else (r2 <= 1.0) & (r2 >= 0.55**2)
    if kind in (1, 2, 3):
        return _polygon(dx, dy, rot, {1: 3, 2: 4, 3: 6}[kind])
    if kind == 4:
        cos, sin = np.cos(rot), np.sin(rot)
        ax = np.abs(_linear(cos, sin, dx, dy))
        ay = np.abs(_linear(-sin, cos, dx, dy))
        return (np.minimum(ax, ay) <= 0.33) & (np.maximum(ax, ay) <= 1.0)
    raise ValueError(f"unknown shape id {kind}")


def shape_mask(kind: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Masks ``[b, H, W]`` for shape ids ``kind [b]`` at unit-radius coordinates ``x, y [b, H, W]``
    (already rotated); the reference form of the masks :func:`render` draws."""
    r = np.sqrt(x**2 + y**2)
    out = np.zeros(x.shape, dtype=bool)
    for k in range(len(SHAPES)):
        sel = kind == k
        if not sel.any():
            continue
        xs, ys, rs = x[sel], y[sel], r[sel]
        if k == 0:
            m = rs <= 1.0
        elif k == 5:
            m = (rs <= 1.0) & (rs >= 0.55)
        elif k == 4:
            ax, ay = np.abs(xs), np.abs(ys)
            m = ((ax <= 0.33) & (ay <= 1.0)) | ((ay <= 0.33) & (ax <= 1.0))
        else:
            sides = {1: 3, 2: 4, 3: 6}[k]
            m = np.ones(xs.shape, dtype=bool)
            for j in range(sides):
                theta = np.pi / 2 + np.pi / sides + 2 * np.pi * j / sides
                m &= xs * np.cos(theta) - ys * np.sin(theta) <= np.cos(np.pi / sides)
        out[sel] = m
    return out


def render(factors: dict[str, np.ndarray], jitter: np.ndarray, size: int) -> np.ndarray:
    """Draw images ``[m, 3, size, size]`` uint8 from factor ids ``[m]``, ``rotation [m]`` (radians)
    and centre ``jitter [m, 2]`` (fractions of the side)."""
    m = len(factors["shape"])
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # [s]
    cx = 0.25 + 0.25 * factors["x"].astype(np.float32) + jitter[:, 0]
    cy = 0.25 + 0.25 * factors["y"].astype(np.float32) + jitter[:, 1]
    radius = np.asarray(_SIZE_RADIUS, dtype=np.float32)[factors["size"]]
    dx_all = ((grid[None, :] - cx[:, None]) / radius[:, None])[:, None, :]  # [m, 1, s]
    dy_all = ((grid[None, :] - cy[:, None]) / radius[:, None])[:, :, None]  # [m, s, 1]
    rot = factors["rotation"].astype(np.float32)
    out = np.empty((m, 3, size, size), dtype=np.uint8)
    for kind in np.unique(factors["shape"]):
        sel = np.flatnonzero(factors["shape"] == kind)
        dx, dy, r = dx_all[sel], dy_all[sel], rot[sel]
        mask = _mask_of(int(kind), dx, dy, r)[:, None]  # [j, 1, s, s]
        fg = _FG_U8[factors["color"][sel]][:, :, None, None]  # [j, 3, 1, 1]
        bg = _BG_U8[factors["background"][sel]][:, :, None, None]
        img = np.where(mask, fg, bg)  # [j, 3, s, s]
        striped = factors["texture"][sel] == 1
        if striped.any():
            st = np.flatnonzero(striped)
            cos, sin = np.cos(r[st]), np.sin(r[st])
            scale = np.float32(STRIPE_FREQ / np.pi)
            u = _linear(cos * scale, sin * scale, dx[st], dy[st])  # rotated x, in half-periods
            dark = (mask[st, 0] & ((np.floor(u).astype(np.int64) & 1) == 0))[:, None]  # sin(pi u) > 0
            fg_dark = _FG_DARK_U8[factors["color"][sel][st]][:, :, None, None]
            img[st] = np.where(dark, fg_dark, img[st])
        out[sel] = img
    return out


#: bumped when :func:`render` draws different pixels (part of the hygiene cache key)
_RENDER_VERSION = 2


class _Rendered:
    """All ``n`` drawn images of a :class:`Shapes` as a read-only uint8 array ``[n, 3, s, s]``
    that renders on indexing (what :func:`benchmark.data.hygiene.clean_images` reads)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes
        self.shape = (shapes.n, 3, shapes.size, shapes.size)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rows = np.arange(self.shape[0])[key]
        return self.shapes._render_rows(np.atleast_1d(rows)).reshape(*np.shape(rows), *self.shape[1:])


class Shapes(StimulusSet):
    """Procedural shapes with known factors.

    Args:
        n: number of images.
        size: image side in pixels.
        seed: fixes every factor of every image.
        label_factor: which factor gives :meth:`labels` (one of ``FACTORS``).
        cache_mb: rendered images are kept as uint8 up to this many megabytes (0: none).
    """

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions", "factors"})

    def __init__(
        self, n: int = 4000, size: int = 64, seed: int = 0, label_factor: str = "shape", cache_mb: int = 512
    ) -> None:
        if n < 1:
            raise UserError(f"shapes: n must be >= 1, got {n}")
        if size < 8:
            raise UserError(f"shapes: size must be >= 8 pixels, got {size}")
        if label_factor not in FACTORS:
            raise UserError(f"shapes: unknown label_factor {label_factor!r} (valid: {', '.join(FACTORS)})")
        self.n, self.size, self.seed, self.label_factor = n, size, seed, label_factor
        rng = np.random.default_rng(seed)
        self._factors = {name: rng.integers(0, len(values), size=n) for name, values in FACTORS.items()}
        self._rotation = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
        self._jitter = rng.uniform(-0.04, 0.04, size=(n, 2)).astype(np.float32)
        self.label_names = list(FACTORS[label_factor])
        self._cacheable = n * 3 * size * size <= cache_mb * 2**20
        self._cache: np.ndarray | None = None  # [n, 3, s, s] uint8, allocated on first use
        self._rendered: np.ndarray | None = None  # [n] bool
        labels = self._factors[label_factor]
        parts = {"dataset": "shapes", "n": n, "size": size, "seed": seed, "render": _RENDER_VERSION,
                 "code": code_digest(__name__)}  # fmt: skip
        self._keep, _, self.hygiene = clean_cached(_Rendered(self), labels, self.label_names, parts)

    def __len__(self) -> int:
        return len(self._keep)

    def identity(self) -> dict:
        return {
            "name": "shapes",
            "n": self.n,
            "size": self.size,
            "seed": self.seed,
            "label_factor": self.label_factor,
            "version": 3,  # 3: stimulus hygiene (near-duplicate draws removed)
        }

    def manifest(self) -> dict:
        """Counts per label and what stimulus hygiene removed (the run's ``datasets.json``)."""
        return image_manifest(self)

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        """Drawn-image ids of set indices ``idx`` (survivors of hygiene), range-checked."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self._keep)):
            raise UserError(f"shapes: index out of range [0, {len(self._keep)}) (got {idx.min()}..{idx.max()})")
        return self._keep[idx]

    def factors(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Factor ids ``[m]`` (index into ``FACTORS[name]``) and ``rotation [m]`` in radians."""
        return self._drawn_factors(self._rows(idx))

    def _drawn_factors(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: v[rows] for name, v in self._factors.items()}
        out["rotation"] = self._rotation[rows]
        return out

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._factors[self.label_factor][self._rows(idx)]

    def captions(self, idx: np.ndarray) -> list[str]:
        f = self.factors(idx)
        out = []
        for i in range(len(np.asarray(idx))):
            size, color, shape = SIZES[f["size"][i]], HUES[f["color"][i]], SHAPES[f["shape"][i]]
            texture = "striped " if f["texture"][i] == 1 else ""
            ypos, xpos = YPOS[f["y"][i]], XPOS[f["x"][i]]
            where = "in the center" if (xpos, ypos) == ("center", "middle") else f"at the {ypos} {xpos}"
            out.append(f"a {size} {color} {texture}{shape} {where} on a {BACKGROUNDS[f['background'][i]]} background")
        return out

    def images_uint8(self, idx: np.ndarray) -> np.ndarray:
        """Images ``[m, 3, size, size]`` uint8, from the cache where already rendered."""
        return self._render_rows(self._rows(idx))

    def _render_rows(self, rows: np.ndarray) -> np.ndarray:
        """Drawn images ``rows [m]`` (ids in ``range(n)``) as ``[m, 3, size, size]`` uint8."""
        if not self._cacheable:
            return render(self._drawn_factors(rows), self._jitter[rows], self.size)
        if self._cache is None:
            self._cache = np.empty((self.n, 3, self.size, self.size), dtype=np.uint8)
            self._rendered = np.zeros(self.n, dtype=bool)
        todo = np.unique(rows[~self._rendered[rows]])
        if len(todo):
            self._cache[todo] = render(self._drawn_factors(todo), self._jitter[todo], self.size)
            self._rendered[todo] = True
        return self._cache[rows]

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """Images ``[m, 3, size, size]`` float32 in [0, 1]."""
        return to_float(self.images_uint8(idx))
