"""Small CNNs trained in the project (``shapes_cnn``, ``fashion_cnn``) and their untrained controls.

A trained model trains on first use (seeded), and its weights go into the stage cache
(``model`` stage, ``weights.safetensors`` + ``train.json`` with the held-out accuracy), keyed
by its architecture and training parameters; later runs load them. The ``*_untrained``
controls are the same architectures at the same seeded random initialisation.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.base import TorchImageModel

#: bump when training changes results (part of the cache key)
TRAIN_VERSION = "1"


def small_cnn(in_channels: int = 3, n_classes: int = 6, width: int = 32, stem_stride: int = 1) -> nn.Sequential:
    """Four conv blocks (conv-BN-ReLU; stride ``stem_stride`` then 2, 2, 2) and a linear head.

    Named layers: ``conv1`` .. ``conv4`` (post-ReLU, ``[b, c, h, w]`` with ``c`` = width,
    2 width, 4 width, 4 width), ``pool`` (``[b, 4 width, 1, 1]``), ``head`` (logits ``[b, n_classes]``).
    """

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        OrderedDict(
            conv1=block(in_channels, width, stem_stride),
            conv2=block(width, width * 2, 2),
            conv3=block(width * 2, width * 4, 2),
            conv4=block(width * 4, width * 4, 2),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(width * 4, n_classes),
        )
    )


def train_classifier(
    net: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    to_float: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Train ``net`` in place with AdamW and a one-cycle schedule on ``train_x [n, C, H, W]``
    (any dtype; ``to_float`` turns a batch into network input) and labels ``train_y [n]``."""
    gen = torch.Generator().manual_seed(seed)
    n = len(train_x)
    steps = epochs * max(1, n // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    net.train()
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            sel = perm[start : start + batch_size]
            loss = nn.functional.cross_entropy(net(to_float(train_x[sel])), train_y[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
    net.eval()


@torch.inference_mode()
def accuracy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, to_float: Callable[[torch.Tensor], torch.Tensor]
) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on ``x [n, C, H, W]``, ``y [n]``."""
    net.eval()
    correct = 0
    for start in range(0, len(x), 256):
        correct += int((net(to_float(x[start : start + 256])).argmax(1) == y[start : start + 256]).sum())
    return correct / max(1, len(x))


class _CNNAdapter(TorchImageModel):
    """A :func:`small_cnn` read at ``conv1`` .. ``conv4``, ``pool``, ``head``."""

    channels = 3
    n_classes = 6
    stem_stride = 1
    name = "cnn"

    def __init__(self, width: int = 32, seed: int = 0, input_size: int = 0) -> None:
        if width < 1:
            raise UserError(f"{self.name}: width must be >= 1, got {width}")
        torch.manual_seed(seed)
        self.width, self.seed = width, seed
        self.input_size = input_size or None
        self.net = small_cnn(self.channels, self.n_classes, width, self.stem_stride).eval()

    def layers(self) -> list[str]:
        return ["conv1", "conv2", "conv3", "conv4", "pool", "head"]

    def arch(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "n_classes": self.n_classes,
            "width": self.width,
            "stem_stride": self.stem_stride,
        }


class _TrainedCNN(_CNNAdapter):
    """Trains on first use and caches the weights; ``heldout_accuracy`` says how well."""

    #: top-1 accuracy on held-out images (set after training or loading)
    heldout_accuracy: float = float("nan")

    def __init__(
        self,
        width: int = 32,
        seed: int = 0,
        n_train: int = 6000,
        n_test: int = 1000,
        epochs: int = 3,
        batch_size: int = 64,
        lr: float = 3e-3,
        input_size: int = 0,
    ) -> None:
        super().__init__(width=width, seed=seed, input_size=input_size)
        if n_train < batch_size or n_test < 1 or epochs < 1:
            raise UserError(
                f"{self.name}: needs n_train >= batch_size ({n_train} < {batch_size}?), n_test >= 1, epochs >= 1"
            )
        self.train_params = {
            "seed": seed,
            "n_train": n_train,
            "n_test": n_test,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
        }
        self._load_or_train()

    # subclasses: the training and held-out data as (x [n, C, H, W] uint8, y [n] int64)
    def training_data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        raise NotImplementedError

    @staticmethod
    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().mul_(1 / 255)

    def _load_or_train(self) -> None:
        from safetensors.torch import load_file, save_file

        from benchmark.cache import current_cache
        from benchmark.codedigest import code_digest

        _, _, _, _, data_identity = self.training_data(identity_only=True)
        parts = {"model": self.name, "arch": self.arch(), "train": self.train_params, "data": data_identity}
        parts["version"] = TRAIN_VERSION
        parts["code"] = code_digest(__name__)  # the network, its training and its data

        def compute(tmp: Path) -> None:
            start = time.perf_counter()
            train_x, train_y, test_x, test_y, _ = self.training_data()
            torch.manual_seed(self.seed)
            net = small_cnn(self.channels, self.n_classes, self.width, self.stem_stride)
            p = self.train_params
            train_classifier(
                net,
                train_x,
                train_y,
                epochs=p["epochs"],
                batch_size=p["batch_size"],
                lr=p["lr"],
                seed=p["seed"],
                to_float=self.to_float,
            )
            acc = accuracy(net, test_x, test_y, self.to_float)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "weights.safetensors"))
            record = {"heldout_accuracy": acc, "train_seconds": time.perf_counter() - start, **parts}
            (tmp / "train.json").write_text(json.dumps(record, indent=1, sort_keys=True))

        path = current_cache().get_or_compute("model", parts, compute)
        self.net.load_state_dict(load_file(str(path / "weights.safetensors")), strict=True)
        self.net.eval()
        record = json.loads((path / "train.json").read_text())
        self.heldout_accuracy = float(record["heldout_accuracy"])
        self.train_seconds = float(record["train_seconds"])

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "heldout_accuracy": round(self.heldout_accuracy, 6)}


class ShapesCNNUntrained(_CNNAdapter):
    """The shapes CNN architecture at random initialisation (a control)."""

    name = "shapes_cnn_untrained"
    stem_stride = 2

    def __init__(self, width: int = 16, seed: int = 0, input_size: int = 0) -> None:
        super().__init__(width=width, seed=seed, input_size=input_size)


class ShapesCNN(_TrainedCNN):
    """Small CNN trained to classify the shape in ``shapes`` images (6 classes), trained on first use.

    Training set: ``Shapes(n_train, size=image_size, seed=seed + 1000)``; held out:
    ``Shapes(n_test, seed=seed + 2000)``; neither overlaps a default ``shapes`` task (seed 0).
    Inputs are resized to ``input_size`` (default: the training size).
    """

    name = "shapes_cnn"
    stem_stride = 2

    def __init__(self, *args: Any, image_size: int = 64, target: str = "shape", **kwargs: Any) -> None:
        from benchmark.data.shapes import FACTORS

        if target not in FACTORS:
            raise UserError(f"shapes_cnn: unknown target {target!r} (valid: {', '.join(FACTORS)})")
        self.image_size, self.target = image_size, target
        self.n_classes = len(FACTORS[target])
        kwargs.setdefault("input_size", image_size)
        # defaults measured: 95.9% held-out shape accuracy (width 16, 12,000 images, 3 epochs, batch 32)
        for key, value in (("width", 16), ("n_train", 12000), ("epochs", 3), ("batch_size", 32)):
            kwargs.setdefault(key, value)
        super().__init__(*args, **kwargs)

    def training_data(self, identity_only: bool = False):
        from benchmark.data.shapes import Shapes

        p = self.train_params
        train = Shapes(p["n_train"], size=self.image_size, seed=p["seed"] + 1000, label_factor=self.target)
        test = Shapes(p["n_test"], size=self.image_size, seed=p["seed"] + 2000, label_factor=self.target)
        ident = {"train": train.identity(), "test": test.identity()}
        if identity_only:
            return None, None, None, None, ident
        all_train, all_test = np.arange(len(train)), np.arange(len(test))
        return (
            torch.from_numpy(train.images_uint8(all_train)),
            torch.from_numpy(train.labels(all_train)).long(),
            torch.from_numpy(test.images_uint8(all_test)),
            torch.from_numpy(test.labels(all_test)).long(),
            ident,
        )


class FashionCNNUntrained(_CNNAdapter):
    """The Fashion-MNIST CNN architecture at random initialisation (a control)."""

    name = "fashion_cnn_untrained"
    channels = 1
    n_classes = 10


class FashionCNN(_TrainedCNN):
    """Small CNN trained on Fashion-MNIST (``dataset-fashion-mnist``), 10 classes, on first use.

    Training set: the first ``n_train`` images of a seeded permutation of the training file;
    held out: ``n_test`` images of the test file.
    """

    name = "fashion_cnn"
    channels = 1
    n_classes = 10

    def __init__(self, *args: Any, root: str | None = None, **kwargs: Any) -> None:
        self.root = root
        kwargs.setdefault("n_train", 12000)
        kwargs.setdefault("epochs", 2)
        super().__init__(*args, **kwargs)

    def training_data(self, identity_only: bool = False):
        from benchmark.data.fashion_mnist import FashionMNIST

        p = self.train_params
        train = FashionMNIST(split="train", root=self.root)
        test = FashionMNIST(split="test", root=self.root)
        rng = np.random.default_rng(p["seed"])
        train_idx = np.sort(rng.permutation(len(train))[: p["n_train"]])
        test_idx = np.sort(rng.permutation(len(test))[: p["n_test"]])
        ident = {"train": train.identity(), "test": test.identity()}
        if identity_only:
            return None, None, None, None, ident
        return (
            torch.from_numpy(train.images_uint8(train_idx)),
            torch.from_numpy(train.labels(train_idx)).long(),
            torch.from_numpy(test.images_uint8(test_idx)),
            torch.from_numpy(test.labels(test_idx)).long(),
            ident,
        )
