"""``image_folder`` (any folder of class sub-folders, the ImageNet layout) and ``cifar10``.

``image_folder``: ``root/<class>/<...>/<image>``; label = class folder, caption = class name
(an ImageNet WordNet id such as ``n02123045`` is captioned with its class name, ``tabby``).
Images are centre-cropped and resized to ``size`` (or padded: ``fit="pad"``), decoded once and
cached; unreadable files are skipped and counted (:attr:`ImageFolder.skipped`, a line in
:attr:`ImageFolder.notes`), grayscale
files are converted to RGB and counted (:attr:`ImageFolder.n_grayscale`), or skipped or refused
with ``grayscale="skip"`` / ``"error"``. Blank images, exact and near-duplicates and duplicates
filed under several classes are removed and counted (:attr:`ImageFolder.hygiene`, see
:mod:`benchmark.data.hygiene`).

``cifar10``: the CIFAR-10 files that torchvision keeps (``cifar-10-batches-py``) or the binary
version (``cifar-10-batches-bin``) under ``root``; nothing is downloaded. The Python batches are
read with a restricted unpickler that only rebuilds numpy arrays, never arbitrary objects.
"""

from __future__ import annotations

import io
import pickle  # only through _NumpyOnlyUnpickler below
from pathlib import Path

import numpy as np
import torch

from benchmark.data.base import StimulusSet
from benchmark.data.hygiene import clean_cached, image_manifest
from benchmark.data.images import _fingerprint, list_images, load_folder_cached, read_rows, skipped_note, to_float
from benchmark.errors import UserError


def _class_caption(folder: str) -> str:
    if len(folder) == 9 and folder[0] == "n" and folder[1:].isdigit():
        from benchmark.models.efficientnet import imagenet_classes

        for wnid, lemmas in imagenet_classes():
            if wnid == folder:
                return lemmas.split(",")[0].strip()
    return folder.replace("_", " ").replace("-", " ")


class ImageFolder(StimulusSet):
    """Images in class sub-folders of ``root``.

    Args:
        root: the folder; every direct sub-folder is a class.
        size: image side in pixels after cropping/resizing.
        fit: ``"crop"`` (centre crop, default) or ``"pad"`` (fit inside on ``background``).
        grayscale: ``"convert"`` (replicate to RGB, counted), ``"skip"`` or ``"error"``.
        background: grey level (0-1) behind transparent pixels and padding.
    """

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions"})

    def __init__(
        self, root: str, size: int = 224, fit: str = "crop", grayscale: str = "convert", background: float = 1.0
    ) -> None:
        self.root = Path(root).expanduser()
        self.size, self.fit, self.grayscale, self.background = size, fit, grayscale, background
        if not self.root.is_dir():
            raise UserError(f"image_folder: {self.root} is not a folder (expected root/<class>/<images>)")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise UserError(f"image_folder: {self.root} has no class sub-folders (expected root/<class>/<images>)")
        paths, labels = [], []
        for i, name in enumerate(classes):
            found = list_images(self.root / name)
            paths += found
            labels += [i] * len(found)
        if not paths:
            raise UserError(
                f"image_folder: no image files in the class folders of {self.root} "
                f"({len(classes)} folders: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
            )
        self._fingerprint = _fingerprint(self.root, paths)
        self._images, kept, self.skipped, self.n_grayscale = load_folder_cached(
            self.root, paths, size, fit=fit, background=background, grayscale=grayscale, what="image_folder"
        )
        self.notes = skipped_note("image_folder", self.skipped, len(paths))
        self.label_names = classes
        loaded = np.asarray(labels, dtype=np.int64)[kept]
        parts = {"dataset": "image_folder", "root": str(self.root), "files": self._fingerprint, "size": size,
                 "fit": fit, "grayscale": grayscale, "background": background}  # fmt: skip
        self._rows, _, self.hygiene = clean_cached(self._images, loaded, classes, parts)
        self._labels = loaded[self._rows]
        self.paths = [str(paths[kept[i]].relative_to(self.root)) for i in self._rows]
        self._class_captions = [_class_caption(c) for c in classes]

    def __len__(self) -> int:
        return len(self._labels)

    def identity(self) -> dict:
        return {
            "name": "image_folder",
            "root": str(self.root),
            "files": self._fingerprint,
            "size": self.size,
            "fit": self.fit,
            "grayscale": self.grayscale,
            "background": self.background,
            "version": 2,  # 2: stimulus hygiene
        }

    def manifest(self) -> dict:
        """Counts per class and what stimulus hygiene removed (the run's ``datasets.json``)."""
        return image_manifest(self, unreadable=len(self.skipped), grayscale_converted=self.n_grayscale)

    def images_uint8(self, idx: np.ndarray) -> np.ndarray:
        return read_rows(self._images, self._rows[np.asarray(idx, dtype=np.int64)])

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """Images ``[m, 3, size, size]`` float32 in [0, 1]."""
        return to_float(self.images_uint8(idx))

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(idx, dtype=np.int64)]

    def captions(self, idx: np.ndarray) -> list[str]:
        return [f"a photo of a {self._class_captions[i]}" for i in self.labels(idx)]

    def describe(self) -> str:
        return (
            f"{super().describe()}; {len(self.skipped)} unreadable files skipped, "
            f"{self.n_grayscale} grayscale files converted; {self.hygiene.summary()}"
        )


# -- CIFAR-10 ------------------------------------------------------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_MISSING = (
    "cifar10: no CIFAR-10 files under {root} (expected cifar-10-batches-py/ or cifar-10-batches-bin/; "
    "torchvision's CIFAR10 dataset class, with downloading enabled, fetches them on a machine with internet)"
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR python batches: dicts, lists, bytes and numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise UserError(f"cifar10: refusing to load {module}.{name} from a batch file (only numpy arrays)")
        return super().find_class(module, name)


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    images = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(data.get("labels", data.get("fine_labels")), dtype=np.int64)
    return images, labels


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise UserError(f"cifar10: {path} has {raw.size} bytes, not a multiple of 3073 (truncated?)")
    rows = raw.reshape(-1, 3073)
    return rows[:, 1:].reshape(-1, 3, 32, 32).copy(), rows[:, 0].astype(np.int64)


class CIFAR10(StimulusSet):
    """CIFAR-10 from local files: ``[m, 3, 32, 32]`` images, 10 labels, class-name captions.

    Args:
        root: the folder torchvision was given (holding ``cifar-10-batches-py`` or ``-bin``).
        split: ``"test"`` (10,000 images) or ``"train"`` (50,000).
    """

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions"})
    label_names = list(CIFAR10_CLASSES)

    def __init__(self, root: str = "~/.cache/torchvision", split: str = "test") -> None:
        if split not in ("train", "test"):
            raise UserError(f"cifar10: unknown split {split!r} (valid: train, test)")
        self.root, self.split = Path(root).expanduser(), split
        py, binary = self.root / "cifar-10-batches-py", self.root / "cifar-10-batches-bin"
        if py.is_dir():
            names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
            files, reader = [py / n for n in names], _read_py_batch
        elif binary.is_dir():
            names = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
            files, reader = [binary / n for n in names], _read_bin_batch
        else:
            raise UserError(_CIFAR_MISSING.format(root=self.root))
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserError(f"cifar10: missing batch files {', '.join(missing)}")
        parts = [reader(f) for f in files]
        self._images = np.concatenate([p[0] for p in parts])
        self._labels = np.concatenate([p[1] for p in parts])
        if len(self._images) != len(self._labels) or (len(self._labels) and self._labels.max() >= 10):
            raise UserError(f"cifar10: batch files under {self.root} have inconsistent images and labels")
        self._fingerprint = _fingerprint(self.root, files)

    def __len__(self) -> int:
        return len(self._labels)

    def identity(self) -> dict:
        return {"name": "cifar10", "split": self.split, "files": self._fingerprint, "version": 1}

    def images(self, idx: np.ndarray) -> torch.Tensor:
        return to_float(self._images[np.asarray(idx, dtype=np.int64)])

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(idx, dtype=np.int64)]

    def captions(self, idx: np.ndarray) -> list[str]:
        return [f"a photo of a {CIFAR10_CLASSES[i]}" for i in self.labels(idx)]
