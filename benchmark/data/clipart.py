"""``clipart``: public-domain clip art from the Debian package ``openclipart-png``.

About 8,100 PNGs under ``/usr/share/openclipart/png/<category>/<sub-folders...>/<name>.png``
in 22 top categories. Each image is composited on white and fitted (padded) into a square of
``size`` pixels; decoding happens once and is cached (see :mod:`benchmark.data.images`).
Unreadable files are skipped and counted (:attr:`Clipart.skipped`, one line in
:attr:`Clipart.notes`), never fatal. Blank images,
exact and near-duplicates and duplicates filed under several categories are removed and counted
(:attr:`Clipart.hygiene`, see :mod:`benchmark.data.hygiene`) before ``min_per_class`` applies.

Label: the top category (``label="category"``) or the whole folder path (``"subfolder"``).
Caption: the words of the file name, without the author name and numeric suffix that the
OpenClipart export appends (``saturn_dan_gerhards_01.png`` -> ``saturn``), followed by the
folder words: ``"saturn (science / astronomy)"``. Author names are recognised from the file set
itself: a trailing word sequence before a numeric suffix that ends the names of files with at
least three different first words is taken to be an author.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmark.data.base import StimulusSet
from benchmark.data.hygiene import clean_cached, image_manifest
from benchmark.data.images import _fingerprint, list_images, load_folder_cached, read_rows, skipped_note, to_float
from benchmark.errors import UserError

DEFAULT_ROOT = "/usr/share/openclipart/png"
LABELS = ("category", "subfolder")
_MISSING = "install it with: sudo apt-get install openclipart-png (or pass root= a folder with the same layout)"
_SUFFIX = re.compile(r"^(\d+[a-z]?|[a-z])$")


def _tokens(stem: str) -> tuple[list[str], bool]:
    """Lower-case words of a file stem, and whether it ended in an export suffix (``_01``, ``_x``)."""
    words = [w for w in re.split(r"[^a-z0-9]+", stem.lower()) if w]
    had_suffix = False
    while words and _SUFFIX.match(words[-1]):
        had_suffix = True
        words.pop()
    return words, had_suffix


def find_authors(stems: list[str], min_titles: int = 3) -> set[tuple[str, ...]]:
    """Word sequences (1-3 words) that end file names before a numeric suffix after at least
    ``min_titles`` different first words: the author names of the OpenClipart export."""
    titles: dict[tuple[str, ...], set[str]] = defaultdict(set)
    first = Counter()
    for stem in stems:
        words, had_suffix = _tokens(stem)
        if words:
            first[words[0]] += 1
        if had_suffix:
            for k in (1, 2, 3):
                if len(words) > k:
                    titles[tuple(words[-k:])].add(words[0])
    authors = set()
    for seq, firsts in titles.items():
        if len(firsts) < min_titles:
            continue
        # a word that also starts titles is a real word ("house", "sign"), unless it is very common as an ending
        if any(first[w] >= 2 for w in seq) and len(firsts) < 10:
            continue
        authors.add(seq)
    return authors


def title_of(stem: str, authors: set[tuple[str, ...]]) -> str:
    """The words of a file stem without export suffix, author name and digits."""
    words, had_suffix = _tokens(stem)
    if had_suffix:
        for k in (3, 2, 1):
            if len(words) > k and tuple(words[-k:]) in authors:
                words = words[:-k]
                break
    words = [re.sub(r"\d+", "", w) for w in words]
    return " ".join(w for w in words if len(w) > 1)


class Clipart(StimulusSet):
    """Clip art with category labels and file-name captions.

    Args:
        root: the ``png`` folder (default: the Debian package's).
        size: image side in pixels.
        label: ``"category"`` (top folder) or ``"subfolder"`` (the whole folder path).
        min_per_class: classes with fewer images are dropped (0 keeps all).
    """

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions"})

    def __init__(
        self, root: str | None = None, size: int = 64, label: str = "category", min_per_class: int = 0
    ) -> None:
        if label not in LABELS:
            raise UserError(f"clipart: unknown label {label!r} (valid: {', '.join(LABELS)})")
        if size < 8:
            raise UserError(f"clipart: size must be >= 8 pixels, got {size}")
        self.root = Path(root or DEFAULT_ROOT)
        self.size, self.label, self.min_per_class = size, label, min_per_class
        if not self.root.is_dir():
            raise UserError(f"clipart: {self.root} does not exist; {_MISSING}")
        paths = [p for p in list_images(self.root) if p.parent != self.root]  # files need a category folder
        if not paths:
            raise UserError(f"clipart: no PNG files in category sub-folders of {self.root}; {_MISSING}")
        self._fingerprint = _fingerprint(self.root, paths)
        images, kept, self.skipped, _ = load_folder_cached(
            self.root, paths, size, fit="pad", background=1.0, grayscale="convert", what="clipart"
        )
        self.notes = skipped_note("clipart", self.skipped, len(paths))
        rel = [paths[i].relative_to(self.root) for i in kept]
        all_keys = [f[0] if label == "category" else "/".join(f) for f in (p.parent.parts for p in rel)]
        names = sorted(set(all_keys))
        key_ids = np.array([names.index(k) for k in all_keys], dtype=np.int64)
        parts = {"dataset": "clipart", "root": str(self.root), "files": self._fingerprint, "size": size}
        clean, _, self.hygiene = clean_cached(images, key_ids, names, parts)  # distinct, non-blank, one label
        rel = [rel[i] for i in clean]
        folders = [p.parent.parts for p in rel]
        keys = [all_keys[i] for i in clean]
        counts = Counter(keys)
        keep = np.array([counts[k] >= min_per_class for k in keys], dtype=bool)
        if not keep.any():
            raise UserError(f"clipart: no class has at least min_per_class={min_per_class} images")
        self._rows = clean[keep]  # rows of ``images`` in this set
        self._images = images
        self.label_names = sorted({k for k, ok in zip(keys, keep) if ok})
        lookup = {name: i for i, name in enumerate(self.label_names)}
        self._labels = np.array([lookup[k] for k, ok in zip(keys, keep) if ok], dtype=np.int64)
        authors = find_authors([p.stem for p in rel])
        self.paths = [str(p) for p, ok in zip(rel, keep) if ok]
        self._captions = []
        for p, f in ((p, f) for p, f, ok in zip(rel, folders, keep) if ok):
            title = title_of(p.stem, authors) or f[-1].replace("_", " ")
            self._captions.append(f"{title} ({' / '.join(w.replace('_', ' ') for w in f)})")

    def __len__(self) -> int:
        return len(self._rows)

    def identity(self) -> dict:
        return {
            "name": "clipart",
            "files": self._fingerprint,
            "size": self.size,
            "label": self.label,
            "min_per_class": self.min_per_class,
            "version": 3,  # 3: stimulus hygiene (duplicates, blanks, label conflicts removed)
        }

    def manifest(self) -> dict:
        """Counts per label and what stimulus hygiene removed (the run's ``datasets.json``)."""
        return image_manifest(self, unreadable=len(self.skipped))

    def images_uint8(self, idx: np.ndarray) -> np.ndarray:
        """Images ``[m, 3, size, size]`` uint8."""
        return read_rows(self._images, self._rows[np.asarray(idx, dtype=np.int64)])

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """Images ``[m, 3, size, size]`` float32 in [0, 1]."""
        return to_float(self.images_uint8(idx))

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(idx, dtype=np.int64)]

    def captions(self, idx: np.ndarray) -> list[str]:
        return [self._captions[i] for i in np.asarray(idx, dtype=np.int64)]
