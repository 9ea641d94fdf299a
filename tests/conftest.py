"""Test-wide settings: offline, deterministic, a fresh cache per test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
# never read or write the user's stage cache: one fresh cache for the whole test session
os.environ["INTERPBENCH_CACHE"] = tempfile.mkdtemp(prefix="interpbench-test-cache-")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty stage cache, also exported as INTERPBENCH_CACHE for subprocesses."""
    path = tmp_path / "cache"
    monkeypatch.setenv("INTERPBENCH_CACHE", str(path))
    return path


class QuickRun:
    """One run of the shipped quick config, shared by the tests that read its outputs."""

    def __init__(self, root: Path, proc) -> None:
        self.root, self.proc = root, proc
        self.cache = root / "cache"
        self.results = root / "results"

    @property
    def run_dir(self) -> Path:
        return (self.results / "runs" / "latest").resolve()


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """``interpbench run --config quick`` once per test session (cold cache), via the CLI."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("quick")
    env = {**os.environ, "INTERPBENCH_CACHE": str(root / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.cli",
            "run",
            "--config",
            "quick",
            "--results-dir",
            str(root / "results"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return QuickRun(root, proc)
