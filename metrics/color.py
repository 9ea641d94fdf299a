"""Color consistency: two images are similar when their mean colors are close.

The similarity is the negative Euclidean distance between per-image mean colors, as in the
color metric of Klindt et al. (2023): mean RGB in [0, 1] by default (distances in
``[0, sqrt(3)]``), or the mean CIELAB color (D65 white, sRGB companding; ``L`` in [0, 100]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from metrics.base import SimilarityMetric
from metrics.features import CachedGather, cached_rows, image_batches

_SPACES = ("rgb", "lab")
# linear sRGB -> CIE XYZ (D65), and the D65 reference white
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def rgb_to_lab(images: Tensor) -> Tensor:
    """CIELAB ``[b, 3, H, W]`` (L, a, b) of sRGB images ``[b, 3, H, W]`` in [0, 1] (D65, 2 degree observer)."""
    rgb = images.double().clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ, linear) / _WHITE_D65[None, :, None, None]
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    lightness = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness, a, b], dim=1)


@dataclass(frozen=True)
class ColorConsistency(CachedGather, SimilarityMetric):
    """Closeness of mean image colors under a protocol.

    Settings:
        space: ``"rgb"`` (mean RGB, as in Klindt et al.) or ``"lab"`` (mean per-pixel CIELAB).
    """

    space: str = "rgb"
    modalities: ClassVar[frozenset[str]] = frozenset({"vision"})
    requires: ClassVar[frozenset[str]] = frozenset({"rgb_images"})
    version: ClassVar[str] = "2"  # 2: psychophysics bands with 4 T (R + 1) samples or fewer are "insufficient"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.space not in _SPACES:
            raise UserError(f"ColorConsistency: unknown space {self.space!r} (valid: {', '.join(_SPACES)})")

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        reason = super().skip_reason(stimuli)
        if reason is not None and "rgb_images" in reason:
            return "grayscale stimuli (no rgb_images): mean color is undefined"
        return reason

    def mean_colors(self, images: Tensor) -> Tensor:
        """Mean color ``[b, 3]`` of images ``[b, 3, H, W]`` in [0, 1]."""
        if self.space == "lab":
            return rgb_to_lab(images).mean(dim=(2, 3)).float()
        return images.double().mean(dim=(2, 3)).float()

    def embed(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        def compute(missing: np.ndarray) -> Tensor:
            return torch.cat([self.mean_colors(b) for b in image_batches(stimuli, missing, 256)])

        return cached_rows(f"color:{self.space}", stimuli, idx, compute)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return -torch.cdist(a.double(), b.double()).float()
