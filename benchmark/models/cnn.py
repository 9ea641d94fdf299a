"""Small CNNs: untrained controls now; trained versions (``shapes_cnn``, ``fashion_cnn``) train on first use."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.base import TorchImageModel


def small_cnn(in_channels: int = 3, n_classes: int = 6, width: int = 32) -> nn.Sequential:
    """Four conv blocks (conv-BN-ReLU, stride 2 from the second) and a linear head.

    Named layers: ``conv1`` .. ``conv4`` (post-ReLU, ``[b, c, h, w]``), ``pool``, ``head``.
    """

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        __import__("collections").OrderedDict(
            conv1=block(in_channels, width, 1),
            conv2=block(width, width * 2, 2),
            conv3=block(width * 2, width * 4, 2),
            conv4=block(width * 4, width * 4, 2),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(width * 4, n_classes),
        )
    )


class _CNNAdapter(TorchImageModel):
    channels = 3
    n_classes = 6
    name = "cnn"

    def __init__(self, width: int = 32, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.width, self.seed = width, seed
        self.net = small_cnn(self.channels, self.n_classes, width).eval()

    def layers(self) -> list[str]:
        return ["conv1", "conv2", "conv3", "conv4", "pool", "head"]


class ShapesCNNUntrained(_CNNAdapter):
    """The shapes CNN architecture at random initialisation (a control)."""

    name = "shapes_cnn_untrained"


class FashionCNNUntrained(_CNNAdapter):
    """The Fashion-MNIST CNN architecture at random initialisation (a control)."""

    name = "fashion_cnn_untrained"
    channels = 1
    n_classes = 10
