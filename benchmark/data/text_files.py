"""Document-level text corpora: the :class:`DocumentSet` base and ``text_files`` (a user's folder).

A document set is a :class:`StimulusSet` of documents (modality ``"language"``): each has a
text and a source label; ``groups()`` is the document index, so token samples made from it are
split by document. Language model adapters turn it into token samples
(:class:`benchmark.data.tokens.TokenSamples`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError

SPLITS = ("all", "train", "eval")


def chunk_text(text: str, max_chars: int, min_chars: int = 32) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars`` characters, at line ends where possible.

    A single line longer than ``max_chars`` is cut inside the line. Pieces shorter than
    ``min_chars`` (after stripping) are dropped.
    """
    if max_chars < 1:
        raise UserError(f"document size must be >= 1 character, got {max_chars}")
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:  # one very long line: cut it
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if len(current) + len(line) > max_chars:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return [p for p in pieces if len(p.strip()) >= min_chars]


def file_split(origin: str, train_fraction: float) -> str:
    """``"train"`` or ``"eval"`` for a source file, fixed by its name alone.

    The split depends only on ``origin`` (not on the corpus size or seed), so a model trained on
    one corpus's train split never sees a file of any other corpus's eval split.
    """
    h = int.from_bytes(hashlib.sha256(origin.encode()).digest()[:8], "little") / 2**64
    return "train" if h < train_fraction else "eval"


class DocumentSet(StimulusSet):
    """Documents with source labels.

    Subclasses fill :attr:`_texts` (list of str), :attr:`_labels` (``[n]`` int), :attr:`_origins`
    (where each document came from), :attr:`label_names` and :attr:`skipped` (counts of what was
    left out, by reason), then call :meth:`_finish`.
    """

    modality = "language"
    provides = frozenset({"labels", "texts", "captions"})
    name = "documents"

    _texts: list[str]
    _labels: np.ndarray
    _origins: list[str]
    skipped: dict[str, int]

    def _finish(self) -> None:
        if not self._texts:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()) if v) or "nothing found"
            raise UserError(f"{self.name}: the corpus is empty (no documents; skipped {reasons})")
        self._labels = np.asarray(self._labels, dtype=np.int64)
        h = hashlib.sha256()
        for text, label in zip(self._texts, self._labels):
            h.update(self.label_names[label].encode())
            h.update(b"\0")
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\1")
        self.content_hash = h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self._texts)

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(idx, dtype=np.int64)]

    def texts(self, idx: np.ndarray) -> list[str]:
        return [self._texts[int(i)] for i in np.asarray(idx).reshape(-1)]

    def captions(self, idx: np.ndarray) -> list[str]:
        return self.texts(idx)

    def origins(self, idx: np.ndarray) -> list[str]:
        """Where each document came from (file path, module, catalog)."""
        return [self._origins[int(i)] for i in np.asarray(idx).reshape(-1)]

    def groups(self) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64)

    def manifest(self) -> dict:
        """Sources with document counts and bytes, what was skipped, and the content hash."""
        counts = Counter(int(x) for x in self._labels)
        nbytes: Counter[int] = Counter()
        for text, label in zip(self._texts, self._labels):
            nbytes[int(label)] += len(text.encode("utf-8", "surrogatepass"))
        return {
            "name": self.name,
            "identity": self.identity(),
            "sources": {
                name: {"documents": counts.get(i, 0), "bytes": nbytes.get(i, 0)}
                for i, name in enumerate(self.label_names)
            },
            "documents": len(self),
            "bytes": sum(nbytes.values()),
            "skipped": dict(self.skipped),
            "content_hash": self.content_hash,
        }


def read_text_file(path: Path, max_bytes: int | None = None) -> tuple[str | None, str | None]:
    """``(text, None)`` for a UTF-8 text file, else ``(None, reason)``: "binary", "undecodable", "empty"."""
    try:
        data = path.read_bytes() if max_bytes is None else path.open("rb").read(max_bytes)
    except OSError:
        return None, "unreadable"
    if not data.strip():
        return None, "empty"
    if b"\0" in data[:8192]:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "undecodable"


class TextFiles(DocumentSet):
    """Any folder of text files, one label per sub-folder (``root/<label>/**/<file>``).

    Files are read as UTF-8; binary files (NUL bytes), undecodable and empty files are skipped
    and counted in :attr:`skipped` (a line in :attr:`notes` says how many). Long files are cut into documents
    of at most ``doc_chars`` characters at line ends.

    Args:
        root: the folder.
        doc_chars: maximum characters per document.
        max_docs_per_label: cap per label (a seeded sample), None = all.
        split: "all", or "train" / "eval": documents of a file all go to one split, fixed by its path.
        train_fraction: share of files in the train split.
        seed: seeds the per-label cap.
    """

    name = "text_files"

    def __init__(
        self,
        root: str,
        doc_chars: int = 2000,
        max_docs_per_label: int | None = None,
        split: str = "all",
        train_fraction: float = 0.7,
        seed: int = 0,
    ) -> None:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise UserError(f"text_files: root {str(base)!r} is not a folder")
        if split not in SPLITS:
            raise UserError(f"text_files: unknown split {split!r} (valid: {', '.join(SPLITS)})")
        self.root, self.doc_chars, self.max_docs_per_label = str(base), doc_chars, max_docs_per_label
        self.split, self.train_fraction, self.seed = split, train_fraction, seed
        folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise UserError(f"text_files: {str(base)!r} has no sub-folders (one sub-folder per label is expected)")
        self.label_names = [p.name for p in folders]
        self._texts, labels, self._origins = [], [], []
        self.skipped = {"binary": 0, "undecodable": 0, "empty": 0, "unreadable": 0}
        rng = np.random.default_rng(seed)
        for label, folder in enumerate(folders):
            docs: list[tuple[str, str]] = []
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = str(path.relative_to(base))
                if split != "all" and file_split(rel, train_fraction) != split:
                    continue
                text, reason = read_text_file(path)
                if text is None:
                    self.skipped[reason or "unreadable"] += 1
                    continue
                docs += [(piece, rel) for piece in chunk_text(text, doc_chars, min_chars=1)]
            if max_docs_per_label is not None and len(docs) > max_docs_per_label:
                keep = np.sort(rng.choice(len(docs), max_docs_per_label, replace=False))
                docs = [docs[i] for i in keep]
            for text, rel in docs:
                self._texts.append(text)
                labels.append(label)
                self._origins.append(rel)
        self._labels = np.asarray(labels, dtype=np.int64)
        n_skipped = sum(self.skipped.values())
        if n_skipped:
            detail = ", ".join(f"{v} {k}" for k, v in self.skipped.items() if v)
            self.notes = (f"text_files {self.root}: skipped {n_skipped} files ({detail})",)
        self._finish()

    def identity(self) -> dict:
        return {
            "name": "text_files",
            "root": self.root,
            "doc_chars": self.doc_chars,
            "max_docs_per_label": self.max_docs_per_label,
            "split": self.split,
            "train_fraction": self.train_fraction,
            "seed": self.seed,
            "content": self.content_hash,
            "version": 1,
        }


class InMemoryDocuments(DocumentSet):
    """A :class:`DocumentSet` from lists of texts and label names (for tests and the Python API)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], name: str = "in_memory") -> None:
        if len(texts) != len(labels):
            raise UserError(f"{name}: {len(texts)} texts but {len(labels)} labels")
        self.name = name
        self.label_names = sorted(set(labels))
        self._texts = list(texts)
        self._labels = np.asarray([self.label_names.index(x) for x in labels], dtype=np.int64)
        self._origins = [f"{name}[{i}]" for i in range(len(self._texts))]
        self.skipped = {}
        self._finish()

    def identity(self) -> dict:
        return {"name": self.name, "content": self.content_hash}
