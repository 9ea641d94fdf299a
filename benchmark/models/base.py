"""The model-adapter contract and the hook machinery shared by torch models.

An adapter wraps a network and answers three questions: which layers it has
(:meth:`ModelAdapter.layers`), what a *sample* is for a stimulus set
(:meth:`ModelAdapter.samples`: one per image for vision models, one per token for language
models), and what a layer's activations are for a batch of samples
(:meth:`ModelAdapter.activations`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError


class ModelAdapter:
    """Base class of every model plugin."""

    modality: ClassVar[str] = "vision"
    #: how conv feature maps ``[b, c, h, w]`` become vectors: "mean" or "max" over space
    spatial: str = "mean"

    def layers(self) -> list[str]:
        """The names of the layers whose activations can be read."""
        raise NotImplementedError

    def identity(self) -> dict:
        """JSON-able identity (name, parameters, weights hash) for cache keys."""
        raise NotImplementedError

    def samples(self, stimuli: StimulusSet) -> StimulusSet:
        """The samples whose activations are extracted (default: one per stimulus)."""
        return stimuli

    def activations(
        self, samples: StimulusSet, idx: np.ndarray, layer: str, *, batch_size: int, device: torch.device
    ) -> Iterator[torch.Tensor]:
        """Yield ``[b, d]`` float tensors for ``idx`` in order, ``b <= batch_size`` each."""
        raise NotImplementedError

    # Optional: ``fidelity(basis, layer, samples, idx, *, device) -> dict[str, float]``.
    # When an adapter defines it, the runner calls it for every basis with a decoder and
    # stores the result in the fit statistics (e.g. ``accuracy_recovered``, ``loss_recovered``).

    def check_layer(self, layer: str) -> None:
        valid = self.layers()
        if layer not in valid:
            import difflib

            close = difflib.get_close_matches(layer, valid, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise UserError(
                f"model {self.identity().get('name', type(self).__name__)!r} has no layer {layer!r}{hint} "
                f"(valid: {', '.join(valid)})"
            )


def weights_hash(module: nn.Module) -> str:
    """A short content hash of a module's parameters and buffers."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pool_spatial(x: torch.Tensor, how: str) -> torch.Tensor:
    """``[b, c, h, w] -> [b, c]`` by spatial mean or max; ``[b, t, d]`` tokens -> mean; ``[b, d]`` as is."""
    if x.dim() == 2:
        return x
    if x.dim() == 4:
        return x.amax(dim=(2, 3)) if how == "max" else x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.amax(dim=1) if how == "max" else x.mean(dim=1)
    raise ValueError(f"cannot pool activations of shape {tuple(x.shape)}")


class _LayerReached(Exception):
    """Raised by an extraction hook once its layer's output is captured: stops the forward."""


class TorchImageModel(ModelAdapter):
    """Adapter for an ``nn.Module`` classifier of images, reading any named submodule by hook.

    Subclasses set ``self.net`` (eval mode), ``self.name``, and may override :meth:`preprocess`
    (``[b, C, H, W]`` in [0, 1] -> network input) and :meth:`layers`.
    """

    modality = "vision"
    net: nn.Module
    name: str
    input_size: int | None = None  # resize to this square size when set
    channels: int = 3

    def layers(self) -> list[str]:
        return [n for n, m in self.net.named_modules() if n and not isinstance(m, nn.Sequential | nn.ModuleList)]

    def identity(self) -> dict[str, Any]:
        # the weights are fixed once the adapter is built: hash them once
        if "_weights_hash" not in self.__dict__:
            self._weights_hash = weights_hash(self.net)
        return {"name": self.name, "spatial": self.spatial, "weights": self._weights_hash}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:
            if self.channels == 3 and images.shape[1] == 1:
                images = images.expand(-1, 3, -1, -1)
            elif self.channels == 1 and images.shape[1] == 3:
                images = images.mean(dim=1, keepdim=True)
        if self.input_size is not None and images.shape[-1] != self.input_size:
            images = torch.nn.functional.interpolate(
                images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False
            )
        return images

    @torch.inference_mode()
    def activations(self, samples, idx, layer, *, batch_size, device):
        self.check_layer(layer)
        module = dict(self.net.named_modules())[layer]
        self.net.to(device)
        captured: list[torch.Tensor] = []

        def capture(_m, _i, out):
            captured.append(out)
            raise _LayerReached  # the layers after this one are not needed

        handle = module.register_forward_hook(capture)
        try:
            for start in range(0, len(idx), batch_size):
                x = self.preprocess(samples.images(idx[start : start + batch_size]).to(device))
                step = self.forward_step(x, device)
                pooled = []
                for s in range(0, len(x), step):
                    captured.clear()
                    try:
                        self.net(x[s : s + step])
                    except _LayerReached:
                        pass
                    pooled.append(pool_spatial(captured[0], self.spatial).float())
                yield pooled[0] if len(pooled) == 1 else torch.cat(pooled)
        finally:
            handle.remove()

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Logits ``[b, classes]`` for images ``[b, C, H, W]`` in [0, 1]."""
        self.net.to(device)
        return self.net(self.preprocess(images.to(device)))

    #: on CPU, a forward pass takes at most this many input pixels (batch x H x W): large
    #: batches of large images are slower there (memory traffic), see docs/performance/vision.md
    cpu_pixels_per_forward: int = 4 * 224 * 224

    def forward_step(self, x: torch.Tensor, device) -> int:
        """How many images of ``x [b, C, H, W]`` go through the network at once on ``device``."""
        if torch.device(device).type != "cpu":
            return len(x)
        return max(1, self.cpu_pixels_per_forward // (x.shape[-1] * x.shape[-2]))

    #: held-out images used by :meth:`fidelity` (at most)
    fidelity_samples: int = 512

    def fidelity(self, basis, layer: str, samples: StimulusSet, idx: np.ndarray, *, device) -> dict[str, float]:
        """Downstream fidelity of ``basis`` at ``layer`` (classifiers; ``{}`` otherwise): the top-1
        agreement with the unmodified model when the reconstruction is spliced back in
        (conv layers: as a shift of the spatial mean); see :mod:`benchmark.models.fidelity`."""
        from benchmark.models.fidelity import splice_fidelity

        return splice_fidelity(self, basis, layer, samples, idx, device=device, max_samples=self.fidelity_samples)
