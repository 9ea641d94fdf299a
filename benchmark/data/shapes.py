"""``shapes``: procedural images with known generative factors.

Each image shows one shape (circle, triangle, square, hexagon, cross, ring) in one of eight
hues, solid or striped, at one of three sizes and nine positions, rotated, on a black, grey
or white background. Factors are drawn from ``seed``; images are rendered on demand,
vectorised over the batch (numpy), so any index gives the same image every time.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from benchmark.data.base import StimulusSet
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


def _polygon(x: np.ndarray, y: np.ndarray, sides: int) -> np.ndarray:
    """Inside a regular polygon of circumradius 1 (vertex pointing up)."""
    inside = np.ones(x.shape, dtype=bool)
    apothem = np.cos(np.pi / sides)
    for k in range(sides):
        theta = np.pi / 2 + np.pi / sides + 2 * np.pi * k / sides
        inside &= x * np.cos(theta) - y * np.sin(theta) <= apothem
    return inside


def shape_mask(kind: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Masks ``[b, H, W]`` for shape ids ``kind [b]`` at unit-radius coordinates ``x, y [b, H, W]``."""
    r = np.sqrt(x**2 + y**2)
    masks = {
        0: r <= 1.0,
        1: _polygon(x, y, 3),
        2: _polygon(x, y, 4),
        3: _polygon(x, y, 6),
        4: ((np.abs(x) <= 0.33) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.33) & (np.abs(x) <= 1.0)),
        5: (r <= 1.0) & (r >= 0.55),
    }
    out = np.zeros(x.shape, dtype=bool)
    for k, m in masks.items():
        sel = kind == k
        out[sel] = m[sel]
    return out


class Shapes(StimulusSet):
    """Procedural shapes with known factors.

    Args:
        n: number of images.
        size: image side in pixels.
        seed: fixes every factor of every image.
        label_factor: which factor gives :meth:`labels` (one of ``FACTORS``).
    """

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions", "factors"})

    def __init__(self, n: int = 4000, size: int = 64, seed: int = 0, label_factor: str = "shape") -> None:
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

    def __len__(self) -> int:
        return self.n

    def identity(self) -> dict:
        return {"name": "shapes", "n": self.n, "size": self.size, "seed": self.seed, "version": 1}

    def factors(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        idx = np.asarray(idx)
        out = {name: v[idx] for name, v in self._factors.items()}
        out["rotation"] = self._rotation[idx]
        return out

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._factors[self.label_factor][np.asarray(idx)]

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

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """Images ``[m, 3, size, size]`` in [0, 1]."""
        idx = np.asarray(idx, dtype=np.int64)
        f = self.factors(idx)
        s = self.size
        grid = (np.arange(s, dtype=np.float32) + 0.5) / s  # [s]
        cx = (0.25 + 0.25 * f["x"] + self._jitter[idx, 0])[:, None, None]
        cy = (0.25 + 0.25 * f["y"] + self._jitter[idx, 1])[:, None, None]
        radius = np.asarray(_SIZE_RADIUS, dtype=np.float32)[f["size"]][:, None, None]
        dx = (grid[None, None, :] - cx) / radius
        dy = (grid[None, :, None] - cy) / radius
        cos, sin = np.cos(f["rotation"])[:, None, None], np.sin(f["rotation"])[:, None, None]
        x, y = cos * dx + sin * dy, -sin * dx + cos * dy
        mask = shape_mask(f["shape"], x, y)  # [m, s, s]
        fg = HUE_RGB[f["color"]][:, None, None, :]  # [m, 1, 1, 3]
        stripes = (np.sin(x * 9.0) > 0) & (f["texture"] == 1)[:, None, None]
        fg_img = np.where(stripes[..., None], fg * 0.45, fg)
        bg = BACKGROUND_RGB[f["background"]][:, None, None, :]
        img = np.where(mask[..., None], fg_img, bg).astype(np.float32)
        return torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
