"""Perceptual consistency: an LPIPS-style feature distance on any registered vision model.

This is the unweighted ("baseline") variant of the LPIPS construction (Zhang et al. 2018):
feature maps of a few layers, each unit-normalised across channels at every position, squared
differences summed over channels, averaged over positions and summed over layers::

    d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} |f_l,hw(x) - f_l,hw(y)|^2

It is *not* LPIPS (no calibrated channel weights, not AlexNet): by default it runs the
pretrained EfficientNet-Lite0 that ships with the ``models`` extra, so the offline benchmark
has a real perceptual similarity. As with LPIPS, the features run once per stimulus image and
are cached; pairwise distances are Gram products (:mod:`metrics.features`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from benchmark.registry import MODELS
from metrics.base import SimilarityMetric, own_network_reason
from metrics.features import GramSimilarity, image_batches, into_one_buffer

_MAX_DEFAULT_LAYERS = 5


def build_adapter(model: str) -> Any:
    """The registered model adapter ``model`` (``"prefix:NAME"`` passes ``name=NAME``)."""
    name, _, rest = model.partition(":")
    cls = MODELS.get(name)
    return cls(name=rest) if rest else cls()


#: stage outputs read by default, for models whose adapter names no ``perceptual_layers``
KNOWN_LAYERS = {
    # the last block of the stages at 1/2, 1/4, 1/8, 1/16 and 1/32 resolution
    "efficientnet_lite0": ("_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_blocks.15"),
}


@functools.lru_cache(maxsize=4)
def _adapter(model: str, image_size: int | None) -> Any:
    """A private adapter instance (so its ``input_size`` may be set here)."""
    adapter = build_adapter(model)
    if hasattr(adapter, "input_size"):
        adapter.input_size = image_size
    if hasattr(adapter, "net"):
        # channels-last runs depthwise convolutions (EfficientNet) ~1.7x faster on CPU
        adapter.net.to(memory_format=torch.channels_last)
    return adapter


@functools.lru_cache(maxsize=4)
def _adapter_key(model: str, image_size: int | None) -> str:
    """A short hash of the adapter's identity (name, weights, input size): computed once per process."""
    from benchmark.cache import hash_key

    return hash_key(_adapter(model, image_size).identity())[:16]


_LAYERS: dict[tuple[str, str, str], tuple[str, ...]] = {}


def _copy(out: Any) -> Any:
    """A hooked output, copied so that a later in-place op (``ReLU(inplace=True)``) cannot change it."""
    if isinstance(out, tuple | list):
        out = out[0]
    return out.clone() if isinstance(out, Tensor) else out


def feature_maps(adapter: Any, images: Tensor, layers: tuple[str, ...]) -> list[Tensor]:
    """Outputs of ``layers`` for ``images [b, 3, H, W]`` in [0, 1], each as ``[b, C, H', W']``.

    Vectors ``[b, C]`` become ``[b, C, 1, 1]``; token maps ``[b, T, C]`` become ``[b, C, T, 1]``.
    """
    modules = dict(adapter.net.named_modules())
    captured: dict[str, Tensor] = {}
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, _copy(out)))
        for name in layers
    ]
    try:
        with torch.inference_mode():
            x = adapter.preprocess(images)
            adapter.net(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
    finally:
        for h in handles:
            h.remove()
    maps = []
    for name in layers:
        x = captured[name]
        if x.dim() == 2:
            x = x[:, :, None, None]
        elif x.dim() == 3:
            x = x.transpose(1, 2)[..., None]
        maps.append(x.float())
    return maps


def default_layers(adapter: Any, probe: Tensor) -> tuple[str, ...]:
    """The adapter's ``perceptual_layers`` when it names them (or :data:`KNOWN_LAYERS`), else up
    to five evenly spaced layers (in the adapter's order) whose outputs on ``probe`` are spatial maps."""
    named = getattr(adapter, "perceptual_layers", None) or KNOWN_LAYERS.get(getattr(adapter, "name", ""))
    if named:
        return tuple(named)
    candidates = list(adapter.layers())
    maps = feature_maps(adapter, probe, tuple(candidates))
    spatial = [n for n, m in zip(candidates, maps) if m.shape[2] * m.shape[3] > 1]
    if not spatial:
        raise UserError(f"perceptual_consistency: model {adapter.name!r} has no layer with spatial feature maps")
    if len(spatial) <= _MAX_DEFAULT_LAYERS:
        return tuple(spatial)
    pick = np.linspace(0, len(spatial) - 1, _MAX_DEFAULT_LAYERS).round().astype(int)
    return tuple(spatial[i] for i in pick)


def perceptual_embedding(maps: list[Tensor], out: Tensor | None = None) -> Tensor:
    """``[b, D]`` with ``|e(x) - e(y)|^2 = d(x, y)``: per layer, unit channel norm per position
    (eps 1e-10, as LPIPS), divided by ``sqrt(H W)``, flattened; layers concatenated."""
    from metrics.lpips import normalized_flat

    return normalized_flat(maps, [None] * len(maps), out)


@dataclass(frozen=True)
class PerceptualConsistency(GramSimilarity, SimilarityMetric):
    """LPIPS-style distance with unit channel weights on a registered vision model's features.

    Settings:
        model: a registered vision model (``"efficientnet_lite0"``, ``"shapes_cnn"``,
            ``"torchvision:resnet18"``, ...).
        layers: the layers read (empty: the model's ``perceptual_layers``, else up to five
            evenly spaced layers with spatial outputs).
        image_size: the square size images are resized to before the model (None: their own
            size, as LPIPS does; the model's preprocessing otherwise applies).
        device: where the model runs (``"auto"``: CUDA when present).
    """

    model: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ()
    image_size: int | None = None
    device: str = "auto"
    modalities: ClassVar[frozenset[str]] = frozenset({"vision"})
    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    version: ClassVar[str] = "3"  # 2: position-major features (lpips.normalized_flat); 3: psychophysics band rule

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "layers", tuple(self.layers))
        name = self.model.partition(":")[0]
        if name not in MODELS:
            raise UserError("perceptual_consistency: " + MODELS.unknown_message(name))

    def code_roots(self) -> tuple[Any, ...]:
        """The backbone adapter's class: its code decides the features, but no import links it
        here (the cache keys on it; see :mod:`benchmark.codedigest`)."""
        return (MODELS.get(self.model.partition(":")[0]),)

    def adapter(self) -> Any:
        """The model adapter (built once per process); raises UserError when it cannot load."""
        adapter = _adapter(self.model, self.image_size)
        if getattr(adapter, "modality", "vision") != "vision" or not hasattr(adapter, "net"):
            raise UserError(f"perceptual_consistency: model {self.model!r} is not a torch vision model")
        if self.layers:
            valid = set(adapter.layers()) | {n for n, _ in adapter.net.named_modules()}
            bad = [layer for layer in self.layers if layer not in valid]
            if bad:
                raise UserError(
                    f"perceptual_consistency: model {self.model!r} has no layer {bad[0]!r} "
                    f"(valid: {', '.join(adapter.layers())})"
                )
        return adapter

    def model_skip_reason(self, model: str, model_params: dict[str, Any]) -> str | None:
        return own_network_reason(self.model, model, model_params)

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        reason = super().skip_reason(stimuli)
        if reason is not None:
            return reason
        try:
            self.adapter()
        except (UserError, ImportError, OSError, RuntimeError) as exc:
            return f"model {self.model!r} unavailable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return None

    def _device(self) -> torch.device:
        from benchmark.env import resolve_device

        return resolve_device(self.device)

    def resolved_layers(self, stimuli: StimulusSet) -> tuple[str, ...]:
        if self.layers:
            return self.layers
        from metrics.features import stimuli_key

        key = (self.model, str(self.image_size), stimuli_key(stimuli))
        if key not in _LAYERS:
            # the adapter is shared by every instance in this process: another one may have left
            # its network on another device, so the probe runs where this one puts it
            adapter, device = self.adapter(), self._device()
            adapter.net.to(device)
            probe = next(image_batches(stimuli, np.arange(1), 1)).to(device)
            _LAYERS[key] = default_layers(adapter, probe)
        return _LAYERS[key]

    def feature_namespace(self, stimuli: StimulusSet) -> str:
        layers = self.resolved_layers(stimuli)
        return f"perceptual:{self.model}:{_adapter_key(self.model, self.image_size)}:{','.join(layers)}"

    def raw_batches(self, stimuli: StimulusSet, idx: np.ndarray) -> Iterator[Tensor]:
        """Embeddings ``[b, D]`` of stimuli ``idx``, in order, batch by batch (the model runs
        here, in batches of ~4M pixels; each batch reuses the previous one's memory)."""
        adapter = self.adapter()
        layers = self.resolved_layers(stimuli)
        device = self._device()
        adapter.net.to(device)
        images = (self._large_enough(b).to(device) for b in image_batches(stimuli, idx))
        yield from into_one_buffer(lambda x, out: perceptual_embedding(feature_maps(adapter, x, layers), out), images)

    def _large_enough(self, images: Tensor) -> Tensor:
        """Images ``[b, C, h, w]`` upsampled to the model's ``min_input_size`` (when it declares one)
        if they run at their own size: a 28-px Fashion-MNIST image would shrink below
        EfficientNet's 5x5 kernels."""
        least = getattr(self.adapter(), "min_input_size", 0)
        if self.image_size is not None or min(images.shape[-2:]) >= least:
            return images
        return torch.nn.functional.interpolate(images, size=(least, least), mode="bilinear", align_corners=False)
