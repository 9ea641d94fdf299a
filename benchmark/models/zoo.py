"""Adapters for models from torchvision, timm and open_clip: ``torchvision:NAME``, ``timm:NAME``,
``open_clip:NAME``.

Each takes ``name`` (the part after the colon; the runner passes it), ``weights`` and
``input_size``. ``weights``:

* ``"default"``: the library's pretrained weights, from the local cache only (torchvision:
  ``$TORCH_HOME/hub/checkpoints``; timm and open_clip: the Hugging Face cache, offline). When
  they are not there the error says where they were looked for and how to get them;
* a path to a state-dict file (``.safetensors``, or ``.pth`` loaded with ``weights_only=True``);
* ``"none"``: random initialisation (an untrained control; what the tests use).

Layers: every named module that runs exactly once per forward pass and returns one tensor
(found by one probe forward pass at start-up); shared modules (e.g. a ReLU reused across a
ResNet block) are left out, since their activations would be ambiguous.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.base import TorchImageModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def probe_layers(net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules of ``net`` that run once on ``example`` and return a 2-4-D tensor."""
    calls: dict[str, int] = {}
    ok: dict[str, bool] = {}
    handles = []
    for name, module in net.named_modules():
        if not name or isinstance(module, nn.ModuleList | nn.ModuleDict):
            continue

        def hook(_m, _i, out, name=name):
            calls[name] = calls.get(name, 0) + 1
            ok[name] = isinstance(out, torch.Tensor) and 2 <= out.dim() <= 4 and out.shape[0] == example.shape[0]

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            net(example)
    finally:
        for h in handles:
            h.remove()
    return [n for n, _ in net.named_modules() if calls.get(n) == 1 and ok.get(n)]


def load_state_file(net: nn.Module, path: Path, what: str, *, strict: bool = True) -> None:
    """Load a ``.safetensors`` or ``.pth`` state dict into ``net``; mismatches are a :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"{what}: weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{what}: cannot read weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        net.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:4])
        raise UserError(f"{what}: weights {path} do not fit the architecture: {detail}") from None


class _ZooModel(TorchImageModel):
    """Shared parts: normalisation, probed layers, identity."""

    prefix = "zoo"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def _finish(self, net: nn.Module, input_size: int) -> None:
        self.net = net.eval()
        self.input_size = input_size
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        example = torch.zeros(1, self.channels, input_size, input_size)
        try:
            self._layers = probe_layers(self.net, self.preprocess(example))
        except RuntimeError as exc:
            raise UserError(f"{self.name}: a {input_size}x{input_size} input does not run: {str(exc)[:200]}") from None
        if not self._layers:
            raise UserError(f"{self.name}: no readable layers found")

    def layers(self) -> list[str]:
        return list(self._layers)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_source": self.weights_source, "input_size": self.input_size}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = super().preprocess(images)
        return (x - self._mean.to(x.device)) / self._std.to(x.device)


class TorchvisionModel(_ZooModel):
    """``torchvision:NAME`` (e.g. ``torchvision:resnet18``), ImageNet classifier from torchvision."""

    prefix = "torchvision"

    def __init__(self, name: str = "resnet18", weights: str = "default", input_size: int = 224) -> None:
        import torchvision

        self.name = f"torchvision:{name}"
        try:
            net = torchvision.models.get_model(name, weights=None)
        except (ValueError, KeyError):
            valid = ", ".join(sorted(torchvision.models.list_models(module=torchvision.models))[:40])
            raise UserError(f"torchvision has no model {name!r} (some valid: {valid}, ...)") from None
        self.weights_source = weights
        if weights == "default":
            path = self._cached_default(name)
            load_state_file(net, path, self.name)
            self.weights_source = str(path)
        elif weights != "none":
            load_state_file(net, Path(weights).expanduser(), self.name)
        self._finish(net, input_size)

    @staticmethod
    def _cached_default(name: str) -> Path:
        import torchvision

        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except (ValueError, AttributeError, KeyError):
            raise UserError(f"torchvision:{name} has no pretrained weights (use weights='none' or a path)") from None
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not path.is_file():
            raise UserError(
                f"torchvision:{name}: pretrained weights are not in the local cache ({path}); download {url} "
                "there (torchvision does so on first use with internet), or pass weights='none' or weights=PATH"
            )
        return path


class TimmModel(_ZooModel):
    """``timm:NAME`` (e.g. ``timm:resnet18``), with its pretrained config's normalisation."""

    prefix = "timm"

    def __init__(self, name: str = "resnet18", weights: str = "default", input_size: int = 0) -> None:
        try:
            import timm
        except ImportError:
            raise UserError("timm models need the timm package: pip install timm") from None
        self.name = f"timm:{name}"
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
            raise UserError(f"timm has no model {name!r} (similar: {', '.join(close) or 'none'})")
        self.weights_source = weights
        try:
            if weights == "default":
                net = timm.create_model(name, pretrained=True)
            else:
                net = timm.create_model(name, pretrained=False)
                if weights != "none":
                    load_state_file(net, Path(weights).expanduser(), self.name)
        except UserError:
            raise
        except Exception as exc:  # offline and not cached: huggingface_hub / urllib errors
            raise UserError(
                f"timm:{name}: pretrained weights are not in the local Hugging Face cache ({type(exc).__name__}); "
                "download them once with internet (timm.create_model(name, pretrained=True)), "
                "or pass weights='none' or weights=PATH"
            ) from None
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        self.mean, self.std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
        self._finish(net, size)


class OpenClipModel(_ZooModel):
    """``open_clip:NAME`` (e.g. ``open_clip:ViT-B-32``): the image tower of an open_clip model.

    ``weights``: ``"default"`` takes the first pretrained tag open_clip lists for NAME (from the
    local cache), or name a tag (``"laion2b_s34b_b79k"``), a file path, or ``"none"``. Not a
    classifier: it gets no downstream-fidelity score.
    """

    prefix = "open_clip"
    is_classifier = False

    def __init__(self, name: str = "ViT-B-32", weights: str = "default", input_size: int = 0) -> None:
        try:
            import open_clip
        except ImportError:
            raise UserError("open_clip models need the open_clip_torch package: pip install open_clip_torch") from None
        self.name = f"open_clip:{name}"
        if name not in open_clip.list_models():
            raise UserError(f"open_clip has no model {name!r} (valid: {', '.join(open_clip.list_models()[:30])}, ...)")
        pretrained = None
        if weights == "default":
            tags = [t for n, t in open_clip.list_pretrained() if n == name]
            if not tags:
                raise UserError(f"open_clip:{name} has no pretrained tag (use weights='none' or a path)")
            pretrained = tags[0]
        elif weights != "none":
            pretrained = str(Path(weights).expanduser()) if Path(weights).expanduser().exists() else weights
        self.weights_source = weights if pretrained is None else pretrained
        try:
            model = open_clip.create_model(name, pretrained=pretrained)
        except Exception as exc:
            raise UserError(
                f"open_clip:{name}: cannot load weights {pretrained!r} offline ({type(exc).__name__}: "
                f"{str(exc)[:160]}); download them once with internet, or pass weights='none' or a file path"
            ) from None
        visual = model.visual
        mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.mean, self.std = tuple(mean), tuple(std)
        size = getattr(visual, "image_size", 224)
        size = input_size or int(size[0] if isinstance(size, tuple | list) else size)
        self._finish(visual, size)
