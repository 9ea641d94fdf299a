"""Test-wide settings: offline, deterministic, a fresh cache per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty stage cache, also exported as INTERPBENCH_CACHE for subprocesses."""
    path = tmp_path / "cache"
    monkeypatch.setenv("INTERPBENCH_CACHE", str(path))
    return path
