"""text_files: one label per sub-folder; binary, empty and undecodable files are counted skips."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.text_files import InMemoryDocuments, TextFiles, chunk_text, file_split
from benchmark.errors import UserError


def _write(root: Path) -> None:
    (root / "poems").mkdir(parents=True)
    (root / "code" / "deep").mkdir(parents=True)
    (root / "poems" / "a.txt").write_text("Roses are red,\nviolets are blue.\n" * 3)
    (root / "poems" / "b.txt").write_text("The sea is calm tonight.\n")
    (root / "code" / "deep" / "c.py").write_text("def f(x):\n    return x + 1\n")
    (root / "code" / "image.bin").write_bytes(b"\x89PNG\r\n\x00\x00\x01binary")
    (root / "code" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "poems" / "empty.txt").write_text("  \n")


def test_labels_from_folders_and_counted_skips(tmp_path: Path) -> None:
    _write(tmp_path)
    docs = TextFiles(str(tmp_path))
    assert len(docs.notes) == 1 and re.search(r"skipped 3 files \(1 binary, 1 undecodable, 1 empty\)", docs.notes[0])
    assert docs.label_names == ["code", "poems"]
    assert docs.skipped == {"binary": 1, "undecodable": 1, "empty": 1, "unreadable": 0}
    texts = docs.texts(np.arange(len(docs)))
    labels = [docs.label_names[i] for i in docs.labels(np.arange(len(docs)))]
    assert ("def f(x):\n    return x + 1\n", "code") in list(zip(texts, labels))
    assert sorted(labels) == ["code", "poems", "poems"]
    manifest = docs.manifest()
    assert manifest["sources"]["poems"]["documents"] == 2
    assert manifest["skipped"]["binary"] == 1
    assert list(docs.groups()) == list(range(len(docs)))
    assert docs.modality == "language"


def test_content_hash_follows_content(tmp_path: Path) -> None:
    _write(tmp_path)
    a = TextFiles(str(tmp_path))
    (tmp_path / "poems" / "b.txt").write_text("The sea is rough tonight.\n")
    b = TextFiles(str(tmp_path))
    assert a.identity()["content"] != b.identity()["content"]


def test_long_files_are_cut_into_documents(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "long.txt").write_text("".join(f"line {i}\n" for i in range(200)))
    docs = TextFiles(str(tmp_path), doc_chars=100)
    texts = docs.texts(np.arange(len(docs)))
    assert all(len(t) <= 100 for t in texts)
    assert "".join(texts) == "".join(f"line {i}\n" for i in range(200))


def test_splits_are_disjoint_by_file(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(20):
            (tmp_path / label / f"{i}.txt").write_text(f"{label} file {i}\n")
    train = TextFiles(str(tmp_path), split="train")
    evals = TextFiles(str(tmp_path), split="eval")
    everything = TextFiles(str(tmp_path))
    tr, ev = set(train.origins(np.arange(len(train)))), set(evals.origins(np.arange(len(evals))))
    assert tr and ev and not tr & ev
    assert tr | ev == set(everything.origins(np.arange(len(everything))))
    assert all(file_split(o, 0.7) == "train" for o in tr)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a folder"):
        TextFiles(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no sub-folders"):
        TextFiles(str(tmp_path))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.so").write_bytes(b"\x7fELF\x00\x00")
    with pytest.raises(UserError, match=r"corpus is empty .*binary: 1"):
        TextFiles(str(tmp_path))
    with pytest.raises(UserError, match="unknown split"):
        TextFiles(str(tmp_path), split="test")
    with pytest.raises(UserError, match="corpus is empty"):
        InMemoryDocuments([], [])


def test_chunk_text_cuts_at_line_ends() -> None:
    text = "aaaa\nbbbb\ncccc\n" + "x" * 25
    pieces = chunk_text(text, 10, min_chars=1)
    assert pieces == ["aaaa\nbbbb\n", "cccc\n", "x" * 10, "x" * 10, "x" * 5]
    assert chunk_text("hi\n", 10, min_chars=5) == []
