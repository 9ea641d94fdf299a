"""The CLI: user errors exit 2 with one line, no traceback; the quick run prints a leaderboard."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.benchmark.test_config import GOOD


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (("seeds = [0, 1]", "seeds = [0, 1]\nsedes = 3"), "sedes: unknown key"),
        (("seeds = [0, 1]", 'seeds = "zero"'), "seeds: expected"),
        (('name = "pca"', 'name = "pcaa"'), "did you mean 'pca'"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, edit, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace(*edit))
    out = cli("run", "--config", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "bad.toml" in lines[0]
    assert "Traceback" not in out.stderr


def test_missing_config_file(tmp_path):
    out = cli("run", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "does not exist" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path):
    out = cli("--debug", "run", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_version_and_list():
    assert cli("--version").stdout.startswith("interpbench ")
    out = cli("list", "methods")
    assert out.returncode == 0 and "pca" in out.stdout and "neurons" in out.stdout


def test_list_layers():
    out = cli("list", "models", "--layers", "shapes_cnn_untrained")
    assert out.returncode == 0 and "conv3" in out.stdout


@pytest.mark.slow
def test_quick_run_and_leaderboard(quick_run):
    out = quick_run.proc
    assert "| method |" in out.stdout and "neurons" in out.stdout and "stage" in out.stderr
    lb = cli("leaderboard", str(quick_run.run_dir), "--out", str(quick_run.root / "lb"))
    assert lb.returncode == 0 and "neurons" in lb.stdout
    info = cli("--cache-dir", str(quick_run.cache), "cache", "info")
    assert "activations" in info.stdout and "basis" in info.stdout
