"""LPIPS consistency: negative LPIPS distance (AlexNet trunk, the ``lpips`` package's v0.1 weights).

LPIPS (Zhang et al. 2018) between images ``x`` and ``y`` is, with ``f_l`` the channel-normalised
AlexNet features of layer ``l`` (``[C_l, H_l, W_l]``) and ``w_l >= 0`` the calibrated channel
weights::

    d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} sum_c w_lc (f_lchw(x) - f_lchw(y))^2

so with the per-image embedding ``g(x) = concat_l sqrt(w_l) f_l(x) / sqrt(H_l W_l)`` (flattened),
``d(x, y) = |g(x) - g(y)|^2`` exactly. The backbone therefore runs once per stimulus image; the
embedding is kept in the process-wide feature cache (:mod:`metrics.features`) and every pairwise
matrix is one batched Gram product (rows stored centred, with their squared norms). Values equal ``lpips.LPIPS(net="alex")(x, y, normalize=True)``.

Weights: the AlexNet ImageNet file ``alexnet-owt-7be5be79.pth`` is read from the torch hub cache
(``torch.hub.get_dir()/checkpoints``) or from the ``weights`` setting (``.pth`` or
``.safetensors``); without it the metric is skipped with a reason. The linear weights ship
inside the ``lpips`` package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from metrics.base import SimilarityMetric, own_network_reason
from metrics.features import GramSimilarity, image_batches, into_one_buffer

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
#: indices of the ReLUs in torchvision's ``alexnet().features`` that LPIPS reads (relu1..relu5)
_TAPS = (1, 4, 7, 9, 11)
_SHIFT = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
_SCALE = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]
_MIN_SIZE = 32  # smaller inputs leave AlexNet's later layers empty


def alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` up to relu5 (the trunk LPIPS uses), randomly initialised."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def default_weights_path() -> Path:
    """Where torchvision keeps the AlexNet ImageNet weights: ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def load_state(path: Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a torch file (loaded with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def lpips_linear_weights(version: str = "0.1") -> list[Tensor]:
    """The ``lpips`` package's calibrated AlexNet channel weights, one ``[C_l]`` tensor per layer."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / f"v{version}" / "alex.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"].reshape(-1).float() for i in range(len(_TAPS))]


class LPIPSEmbedding(nn.Module):
    """Images ``[b, 3, H, W]`` in [0, 1] -> LPIPS embeddings ``[b, D]`` (``|g(x) - g(y)|^2`` = LPIPS).

    Args:
        features: the AlexNet trunk (:func:`alexnet_features`, weights loaded).
        channel_weights: one ``[C_l]`` non-negative tensor per tapped layer (ones = "baseline" LPIPS).
    """

    def __init__(self, features: nn.Sequential, channel_weights: list[Tensor]) -> None:
        super().__init__()
        self.features = features.eval()
        for i, w in enumerate(channel_weights):
            if (w < 0).any():
                raise ValueError("LPIPS channel weights must be non-negative")
            self.register_buffer(f"sqrt_w{i}", w.float().sqrt())

    @torch.inference_mode()
    def forward(self, images: Tensor, out: Tensor | None = None) -> Tensor:
        """``[b, 3, H, W]`` in [0, 1] -> ``[b, D]`` (written into ``out`` when given)."""
        # [0, 1] -> the package's scaling layer (2x - 1 - shift) / scale, in one op; the trunk's
        # weights are channels-last, so every map is (AlexNet runs ~15% faster so on CPU, and
        # the channel norms read contiguous memory)
        x = images.float()
        x = torch.addcmul((-1 - _SHIFT.to(x.device)) / _SCALE.to(x.device), x, 2 / _SCALE.to(x.device))
        maps = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in _TAPS:
                maps.append(x)
        return normalized_flat(maps, [getattr(self, f"sqrt_w{i}") for i in range(len(maps))], out)


def normalized_flat(maps: list[Tensor], sqrt_w: list[Tensor | None], out: Tensor | None = None) -> Tensor:
    """LPIPS embedding ``[b, sum_l H_l W_l C_l]`` of feature maps ``[b, C_l, H_l, W_l]`` (any
    memory format): per position, the channel vector divided by its norm (+ 1e-10, as
    ``lpips.normalize_tensor``), times ``sqrt(w_c)`` (None: unit weights), divided by
    ``sqrt(H_l W_l)``; written into one tensor position-major (``h, w, c``: a channels-last
    map's own order, so every step reads contiguous memory; the order of the features
    changes no distance); into ``out [b, D]`` when given."""
    b = maps[0].shape[0]
    if out is None:
        out = torch.empty((b, sum(m[0].numel() for m in maps)), dtype=torch.float32, device=maps[0].device)
    start = 0
    for fmap, w in zip(maps, sqrt_w):
        _, c, h, wd = fmap.shape
        hwc = fmap.float().permute(0, 2, 3, 1).contiguous()  # [b, h, w, c]: a view of a channels-last map
        view = out[:, start : start + c * h * wd].view(b, h, wd, c)
        inv = (torch.linalg.vector_norm(hwc, dim=-1, keepdim=True) + 1e-10).reciprocal_()
        torch.mul(hwc, inv, out=view)
        view.mul_(1 / np.sqrt(h * wd) if w is None else (w.float() / np.sqrt(h * wd)).to(view.device))
        start += c * h * wd
    return out


@functools.lru_cache(maxsize=4)
def _embedding_for(path: str, mtime: float) -> LPIPSEmbedding:
    state = load_state(Path(path))
    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    trunk = alexnet_features()
    try:
        trunk.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path}: not AlexNet weights in torchvision's layout ({exc})") from None
    return LPIPSEmbedding(trunk.to(memory_format=torch.channels_last), lpips_linear_weights())


@dataclass(frozen=True)
class LPIPSConsistency(GramSimilarity, SimilarityMetric):
    """Negative LPIPS distance (AlexNet, v0.1) between stimulus images, under a protocol.

    Settings:
        weights: path to the AlexNet ImageNet weights (torchvision layout, ``.pth`` or
            ``.safetensors``); default ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``.
        image_size: resize images to this square size first (None: native size, at least 32).
        device: where the backbone runs (``"auto"``: CUDA when present).
    """

    weights: str | None = None
    image_size: int | None = None
    device: str = "auto"
    modalities: ClassVar[frozenset[str]] = frozenset({"vision"})
    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    version: ClassVar[str] = "3"  # 2: channels-last backbone, position-major features; 3: psychophysics band rule

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size is not None and self.image_size < _MIN_SIZE:
            raise UserError(f"LPIPSConsistency: image_size must be >= {_MIN_SIZE}, got {self.image_size}")

    def weights_path(self) -> Path:
        return Path(self.weights).expanduser() if self.weights else default_weights_path()

    def model_skip_reason(self, model: str, model_params: dict[str, Any]) -> str | None:
        return own_network_reason("torchvision:alexnet", model, model_params)

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        reason = super().skip_reason(stimuli)
        if reason is not None:
            return reason
        try:
            import lpips  # noqa: F401
        except ImportError:
            return "the lpips package is not installed (pip install lpips): it ships the LPIPS v0.1 weights"
        path = self.weights_path()
        if not path.is_file():
            where = f"put {ALEXNET_FILE} into {default_weights_path().parent}/" if not self.weights else f"{path}"
            return f"AlexNet ImageNet weights not found: {where} (or set the metric's weights = PATH)"
        return None

    def model(self) -> LPIPSEmbedding:
        path = self.weights_path()
        if not path.is_file():
            raise UserError(f"lpips_consistency: AlexNet weights not found at {path}")
        return _embedding_for(str(path.resolve()), path.stat().st_mtime)

    def _device(self) -> torch.device:
        from benchmark.env import resolve_device

        return resolve_device(self.device)

    def feature_namespace(self, stimuli: StimulusSet) -> str:
        path = self.weights_path()
        return f"lpips:{path.resolve()}:{path.stat().st_mtime}:{self.image_size}"

    def raw_batches(self, stimuli: StimulusSet, idx: np.ndarray) -> Iterator[Tensor]:
        """LPIPS embeddings ``[b, D]`` of stimuli ``idx``, in order, batch by batch (the backbone
        runs here, in batches of ~4M pixels; each batch reuses the previous one's memory)."""
        model = self.model()
        device = self._device()
        model.to(device)
        images = (
            resize_images(b, self.image_size, "lpips_consistency").to(device) for b in image_batches(stimuli, idx)
        )
        yield from into_one_buffer(model, images)


def resize_images(images: Tensor, size: int | None, who: str) -> Tensor:
    """Bilinear (antialiased) resize of ``[b, 3, H, W]`` to ``size``; checks the minimum side."""
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    if min(images.shape[-2:]) < _MIN_SIZE:
        raise UserError(
            f"{who}: images are {tuple(images.shape[-2:])} pixels; AlexNet needs at least {_MIN_SIZE}: "
            f"set the metric's image_size = {_MIN_SIZE} or more"
        )
    return images
