"""``textmix``: a labelled multi-source text corpus built offline from text on this machine.

Sources (each document is labelled with the one it came from):

* ``python``: standard-library source files (code and docstrings);
* ``html``: pages rendered by :class:`pydoc.HTMLDoc` from standard-library modules;
* ``base64``: base64 (MIME, 76 columns) of bytes read from binary files on the machine;
* ``translation``: translated messages from gettext ``.mo`` catalogs under /usr/share/locale
  (non-English; ``translation_labels="language"`` labels them ``translation:<lang>``);
* ``man``: manual-page troff sources (/usr/share/man/man1-8);
* ``english``: English documentation text (README, NEWS, *.txt, *.md under /usr/share/doc).

Sources missing on a machine are skipped and reported in :meth:`TextMix.manifest`. Files are
drawn in a seeded order, each file gives at most ``max_docs_per_file`` consecutive pieces of
``doc_chars`` characters, and each source gets ``size_mb / n_sources`` of text, of which
``train_fraction`` comes from train files and the rest from eval files. Every file goes wholly
to the ``train`` or the ``eval`` split, fixed by its path alone
(:func:`benchmark.data.text_files.file_split`), so a model trained on ``split="train"`` never
saw a file of any ``split="eval"`` corpus with the same ``train_fraction`` (bytes_1l checks
this). The built corpus (both splits) is cached.
"""

from __future__ import annotations

import base64
import gettext
import gzip
import hashlib
import importlib
import json
import re
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmark.data.text_files import SPLITS, DocumentSet, chunk_text, file_split, read_text_file
from benchmark.errors import UserError

SOURCES = ("python", "html", "base64", "translation", "man", "english")
VERSION = 3  # 3: object addresses masked in pydoc pages (they differed between processes)

# pure-Python standard-library modules that are safe to import for pydoc rendering
HTML_MODULES = (
    "abc argparse ast base64 bisect calendar cmd codecs colorsys configparser contextlib copy csv dataclasses "
    "datetime decimal difflib dis email.message enum filecmp fnmatch fractions ftplib functools getopt gettext "
    "glob graphlib gzip hashlib heapq hmac html html.parser http.client imaplib inspect io ipaddress json "
    "keyword linecache locale logging lzma mailbox mimetypes numbers operator optparse os pathlib pickletools "
    "pkgutil platform plistlib poplib pprint pydoc queue quopri random re reprlib sched secrets selectors "
    "shelve shlex shutil smtplib socket socketserver sqlite3 ssl statistics string stringprep struct "
    "subprocess tarfile tempfile textwrap threading timeit tokenize tomllib trace traceback types typing "
    "unittest urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom xml.etree.ElementTree "
    "zipfile zipimport zoneinfo"
).split()

Candidate = tuple[str, Callable[[], str | None]]  # (origin, loader of the file's text)


def _shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _python_files(rng: np.random.Generator) -> Iterator[Candidate]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    for p in _shuffled(files, rng):
        yield f"python:{p.relative_to(root)}", lambda p=p: read_text_file(p)[0]


def pydoc_html(name: str) -> str | None:
    """The page :class:`pydoc.HTMLDoc` renders for module ``name``, with object addresses
    (``<object object at 0x7f...>`` in default arguments) masked, so the corpus is the same in
    every process; ``None`` for a module that cannot be imported here."""
    import pydoc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            page = pydoc.HTMLDoc().docmodule(importlib.import_module(name))
    except Exception:  # a module that cannot be imported here is skipped
        return None
    return re.sub(r"\b0x[0-9a-f]{6,16}\b", "0x...", page)


def _html_pages(rng: np.random.Generator) -> Iterator[Candidate]:
    for name in _shuffled(list(HTML_MODULES), rng):
        yield f"html:{name}", lambda name=name: pydoc_html(name)


def _binary_files() -> list[Path]:
    dirs = [Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload", Path("/usr/lib/x86_64-linux-gnu")]
    dirs += [Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/share/icons")]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir():
            out += sorted(p for p in d.glob("**/*") if p.suffix in {".so", ".png", ".gz"} and p.is_file())[:4000]
    return [p for p in out if not p.is_symlink()]


def _base64_blobs(rng: np.random.Generator, doc_chars: int, per_file: int) -> Iterator[Candidate]:
    want = doc_chars * per_file * 3 // 4 + 64

    def encode(p: Path) -> str | None:
        try:
            size = p.stat().st_size
            with p.open("rb") as f:
                f.seek(int(rng.integers(0, max(1, size - want))))
                data = f.read(want)
        except OSError:
            return None
        return base64.encodebytes(data).decode("ascii") if len(data) >= 64 else None

    for p in _shuffled(_binary_files(), rng):
        yield f"base64:{p}", lambda p=p: encode(p)


def _mo_catalogs() -> list[Path]:
    root = Path("/usr/share/locale")
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.glob("*/LC_MESSAGES/*.mo")
        if not p.parts[-3].startswith("en") and not p.name.startswith("iso_") and p.parts[-3] != "C"
    )


def _translations(rng: np.random.Generator) -> Iterator[Candidate]:
    def read(p: Path) -> str | None:
        try:
            with p.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        except Exception:
            return None
        msgs = [v for k, v in catalog.items() if isinstance(k, str) and k and isinstance(v, str) and v != k]
        return "\n".join(m.strip() for m in msgs if m.strip()) or None

    for p in _shuffled(_mo_catalogs(), rng):
        yield f"translation:{p.parts[-3]}:{p.name}", lambda p=p: read(p)


def _man_pages(rng: np.random.Generator) -> Iterator[Candidate]:
    root = Path("/usr/share/man")
    files = (
        sorted(p for d in sorted(root.glob("man[1-8]")) for p in d.iterdir() if p.is_file()) if root.is_dir() else []
    )

    def read(p: Path) -> str | None:
        try:
            data = p.read_bytes()
            data = gzip.decompress(data) if p.suffix == ".gz" else data
            return data.decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
            return None

    for p in _shuffled(files, rng):
        yield f"man:{p.relative_to(root)}", lambda p=p: read(p)


def _english_docs(rng: np.random.Generator) -> Iterator[Candidate]:
    root = Path("/usr/share/doc")
    names = ("README", "NEWS", "TODO", "AUTHORS", "THANKS", "FAQ")
    files = []
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            base = p.name[:-3] if p.name.endswith(".gz") else p.name
            if p.is_file() and (base.upper().startswith(names) or base.endswith((".txt", ".md", ".rst"))):
                files.append(p)

    def read(p: Path) -> str | None:
        try:
            data = p.read_bytes()
            data = gzip.decompress(data) if p.suffix == ".gz" else data
            text = data.decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
            return None
        letters = [c for c in text if c.isalpha()]
        ascii_share = sum(c.isascii() for c in letters) / max(len(letters), 1)
        return text if ascii_share > 0.97 and "<html" not in text[:2000].lower() else None

    for p in _shuffled(files, rng):
        yield f"english:{p.relative_to(root)}", lambda p=p: read(p)


def collect(
    sources: tuple[str, ...],
    size_mb: float,
    doc_chars: int,
    max_docs_per_file: int,
    seed: int,
    train_fraction: float = 0.7,
) -> tuple[list[tuple[str, str, str]], dict]:
    """Draw the documents of every source: ``train_fraction`` of each source's budget from
    train files, the rest from eval files (:func:`file_split`), so both splits get their share.

    Returns:
        ``docs``: ``(source, origin, text)`` triples, and ``report``: per source the files used
        and skipped, and the sources that were missing.
    """
    budget = size_mb * 1e6 / len(sources)
    docs: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    report: dict = {"missing_sources": [], "files": {}}
    for s_i, source in enumerate(sources):
        rng = np.random.default_rng([seed, s_i])
        candidates = {
            "python": lambda rng=rng: _python_files(rng),
            "html": lambda rng=rng: _html_pages(rng),
            "base64": lambda rng=rng: _base64_blobs(rng, doc_chars, max_docs_per_file),
            "translation": lambda rng=rng: _translations(rng),
            "man": lambda rng=rng: _man_pages(rng),
            "english": lambda rng=rng: _english_docs(rng),
        }[source]()
        used = skipped = 0
        want = {"train": budget * train_fraction, "eval": budget * (1.0 - train_fraction)}
        got = {"train": 0.0, "eval": 0.0}
        for origin, load in candidates:
            if all(got[k] >= want[k] for k in got):
                break
            side = file_split(origin, train_fraction)
            if got[side] >= want[side]:
                continue
            text = load()
            pieces = chunk_text(text, doc_chars, min_chars=min(200, doc_chars // 2)) if text else []
            if not pieces:
                skipped += 1
                continue
            start = int(rng.integers(0, max(1, len(pieces) - max_docs_per_file + 1)))
            for piece in pieces[start : start + max_docs_per_file]:
                digest = hashlib.sha256(piece.encode("utf-8", "surrogatepass")).hexdigest()
                if digest in seen:
                    continue
                seen.add(digest)
                docs.append((source, origin, piece))
                got[side] += len(piece)
            used += 1
        report["files"][source] = {"used": used, "skipped": skipped}
        if used == 0:
            report["missing_sources"].append(source)
    return docs, report


class TextMix(DocumentSet):
    """Labelled documents from the machine's own text (see the module docstring).

    Args:
        size_mb: total text over all sources and both splits, in millions of characters.
        doc_chars: characters per document (at most).
        seed: fixes which files and pieces are drawn.
        split: ``"eval"`` (the benchmark's documents), ``"train"`` (for training models), or ``"all"``.
        train_fraction: share of files that go to the train split.
        sources: which sources to draw (default all).
        max_docs_per_file: consecutive pieces taken from one file at most.
        translation_labels: ``"source"`` (one label) or ``"language"`` (``translation:<lang>``).
    """

    name = "textmix"

    def __init__(
        self,
        size_mb: float = 3.0,
        doc_chars: int = 1024,
        seed: int = 0,
        split: str = "eval",
        train_fraction: float = 0.7,
        sources: tuple[str, ...] = SOURCES,
        max_docs_per_file: int = 8,
        translation_labels: str = "source",
    ) -> None:
        sources = tuple(sources)
        bad = [s for s in sources if s not in SOURCES]
        if bad or not sources:
            raise UserError(
                f"textmix: unknown source {bad[0] if bad else '(none given)'!r} (valid: {', '.join(SOURCES)})"
            )
        if split not in SPLITS:
            raise UserError(f"textmix: unknown split {split!r} (valid: {', '.join(SPLITS)})")
        if translation_labels not in ("source", "language"):
            raise UserError(f"textmix: translation_labels must be 'source' or 'language', got {translation_labels!r}")
        if size_mb <= 0 or doc_chars < 64 or max_docs_per_file < 1:
            raise UserError(
                f"textmix: need size_mb > 0, doc_chars >= 64, max_docs_per_file >= 1 "
                f"(got {size_mb}, {doc_chars}, {max_docs_per_file})"
            )
        if not 0.0 < train_fraction < 1.0:
            raise UserError(f"textmix: train_fraction must be in (0, 1), got {train_fraction}")
        self.size_mb, self.doc_chars, self.seed, self.split = size_mb, doc_chars, seed, split
        self.train_fraction, self.sources, self.max_docs_per_file = train_fraction, sources, max_docs_per_file
        self.translation_labels = translation_labels
        docs, report = self._load()
        self.report = report
        if split != "all":
            docs = [d for d in docs if file_split(d[1], train_fraction) == split]
        names = sorted({self._label(s, o) for s, o, _ in docs}, key=self._label_order)
        self.label_names = names
        self._texts = [t for _, _, t in docs]
        self._labels = np.asarray([names.index(self._label(s, o)) for s, o, _ in docs], dtype=np.int64)
        self._origins = [o for _, o, _ in docs]
        self.skipped = {f"{s} files": v["skipped"] for s, v in report["files"].items()}
        self.skipped["missing sources"] = len(report["missing_sources"])
        if report["missing_sources"]:
            self.notes = (f"textmix: sources missing on this machine: {', '.join(report['missing_sources'])}",)
        self._finish()

    def _label(self, source: str, origin: str) -> str:
        if source == "translation" and self.translation_labels == "language":
            return f"translation:{origin.split(':')[1]}"
        return source

    def _label_order(self, label: str) -> tuple[int, str]:
        return (SOURCES.index(label.split(":")[0]), label)

    def _params(self) -> dict:
        return {
            "size_mb": self.size_mb,
            "doc_chars": self.doc_chars,
            "seed": self.seed,
            "sources": list(self.sources),
            "max_docs_per_file": self.max_docs_per_file,
        }

    def _load(self) -> tuple[list[tuple[str, str, str]], dict]:
        from benchmark.cache import current_cache
        from benchmark.codedigest import code_digest

        parts = {
            "name": "textmix",
            "version": VERSION,
            "python": sys.version.split()[0],
            "train_fraction": self.train_fraction,
            **self._params(),
            "code": code_digest(__name__),
        }

        def compute(tmp: Path) -> None:
            docs, report = collect(
                self.sources, self.size_mb, self.doc_chars, self.max_docs_per_file, self.seed, self.train_fraction
            )
            (tmp / "documents.json").write_text(json.dumps(docs, ensure_ascii=True))
            (tmp / "report.json").write_text(json.dumps(report, indent=1))

        path = current_cache().get_or_compute("corpus", parts, compute)
        docs = [tuple(d) for d in json.loads((path / "documents.json").read_text())]
        return docs, json.loads((path / "report.json").read_text())  # type: ignore[return-value]

    def identity(self) -> dict:
        return {
            "name": "textmix",
            **self._params(),
            "split": self.split,
            "train_fraction": self.train_fraction,
            "translation_labels": self.translation_labels,
            "content": self.content_hash,
            "version": VERSION,
        }

    def manifest(self) -> dict:
        out = super().manifest()
        out["missing_sources"] = list(self.report["missing_sources"])
        out["files"] = self.report["files"]
        return out
