"""``fashion_mnist``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files).

28 x 28 grayscale images of 10 kinds of clothing, labelled; the caption is the class name.
Files: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` under ``root``
(default ``/usr/share/datasets/fashion-mnist``). Blank images and exact and near-duplicates are
removed and counted (:attr:`FashionMNIST.hygiene`, see :mod:`benchmark.data.hygiene`).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

from benchmark.data.base import StimulusSet
from benchmark.data.hygiene import clean_cached, image_manifest
from benchmark.data.images import to_float
from benchmark.errors import UserError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
_PREFIX = {"train": "train", "test": "t10k"}
_MISSING = "install it with: sudo apt-get install dataset-fashion-mnist (or pass root= a folder with the IDX files)"


def _open(path: Path) -> bytes:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        try:
            return f.read()
        except (OSError, EOFError) as exc:
            raise UserError(f"fashion_mnist: cannot read {path}: {exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (unsigned-byte data only) as a uint8 array of the shape its header gives.

    Raises :class:`UserError` naming the file if the header or length is wrong.
    """
    raw = _open(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"fashion_mnist: {path} is not an unsigned-byte IDX file (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"fashion_mnist: {path} is truncated (header of {ndim} dimensions incomplete)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise UserError(f"fashion_mnist: {path} has {len(raw) - header} data bytes, header says {shape} = {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise UserError(f"fashion_mnist: {root / stem}[.gz] not found; {_MISSING}")


class FashionMNIST(StimulusSet):
    """Fashion-MNIST: grayscale ``[m, 1, 28, 28]`` images, 10 labels, class-name captions.

    Args:
        split: ``"test"`` (10,000 images) or ``"train"`` (60,000).
        root: folder with the IDX files (default: the Debian package's folder).
    """

    modality = "vision"
    provides = frozenset({"images", "labels", "captions"})
    label_names = list(CLASSES)

    def __init__(self, split: str = "test", root: str | None = None) -> None:
        if split not in _PREFIX:
            raise UserError(f"fashion_mnist: unknown split {split!r} (valid: {', '.join(_PREFIX)})")
        self.split = split
        self.root = Path(root or DEFAULT_ROOT)
        if not self.root.is_dir():
            raise UserError(f"fashion_mnist: {self.root} does not exist; {_MISSING}")
        image_path = _find(self.root, f"{_PREFIX[split]}-images-idx3-ubyte")
        label_path = _find(self.root, f"{_PREFIX[split]}-labels-idx1-ubyte")
        self._images = read_idx(image_path)  # [n, 28, 28]
        self._labels = read_idx(label_path).astype(np.int64)  # [n]
        if self._images.ndim != 3 or self._labels.ndim != 1 or len(self._images) != len(self._labels):
            raise UserError(
                f"fashion_mnist: {image_path} {self._images.shape} and {label_path} {self._labels.shape} do not match"
            )
        if len(self._labels) and self._labels.max() >= len(CLASSES):
            raise UserError(f"fashion_mnist: {label_path} has label {self._labels.max()} (valid: 0..9)")
        h = hashlib.blake2b(digest_size=12)
        h.update(self._labels.tobytes())
        h.update(self._images[:: max(1, len(self._images) // 64)].tobytes())
        self._digest = h.hexdigest()
        full = hashlib.blake2b(self._images.tobytes(), digest_size=16).hexdigest()  # ~0.1 s for 60,000
        parts = {"dataset": "fashion_mnist", "split": split, "images": full}
        self._rows, _, self.hygiene = clean_cached(self._images[:, None], self._labels, self.label_names, parts)

    def __len__(self) -> int:
        return len(self._rows)

    def identity(self) -> dict:
        # 2: stimulus hygiene (near-duplicates removed)
        return {"name": "fashion_mnist", "split": self.split, "n": len(self), "content": self._digest, "version": 2}

    def manifest(self) -> dict:
        """Counts per class and what stimulus hygiene removed (the run's ``datasets.json``)."""
        return image_manifest(self)

    def images_uint8(self, idx: np.ndarray) -> np.ndarray:
        """Images ``[m, 1, 28, 28]`` uint8."""
        return self._images[self._rows[np.asarray(idx, dtype=np.int64)]][:, None]

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """Images ``[m, 1, 28, 28]`` float32 in [0, 1]."""
        return to_float(self.images_uint8(idx))

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._labels[self._rows[np.asarray(idx, dtype=np.int64)]]

    def captions(self, idx: np.ndarray) -> list[str]:
        return [f"a photo of a {CLASSES[i]}" for i in self.labels(idx)]
