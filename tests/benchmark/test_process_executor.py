"""The process executor: worker processes on this machine give the local executor's tables,
share the stage cache (a second run recomputes nothing), and bring a worker's UserError back
as a UserError with its message."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch

from benchmark.errors import UserError
from benchmark.executors import ProcessExecutor, make_executor
from benchmark.runner import LocalExecutor
from tests.benchmark.grid_helpers import run, stage_counts

TINY = """
name = "tiny_processes"
seeds = [0, 1]
chance_sets = 8
plugins = {plugins}

[[tasks]]
model = "shapes_cnn_untrained"
model_params = {{ width = 8 }}
layers = ["conv2"]
dataset = "shapes"
dataset_params = {{ n = 400, size = 16 }}

{methods}

[[metrics]]
name = "label_consistency"
sweep = {{ protocol = ["consistency", "psychophysics"] }}
"""

METHODS = '[[methods]]\nname = "neurons"\n\n[[methods]]\nname = "random"\n\n[[methods]]\nname = "ica"\n'

FAILING = '''
"""Test plugin for tests/benchmark/test_process_executor.py: a method that refuses its input."""
from dataclasses import dataclass

from benchmark.errors import UserError
from benchmark.registry import METHODS
from methods.pca import PCA


@METHODS.register("refusing_pca")
@dataclass(frozen=True)
class RefusingPCA(PCA):
    def fit(self, acts, *, seed, device="cpu"):
        raise UserError("refusing_pca: planted user error")
'''


def test_processes_is_a_named_executor():
    assert isinstance(make_executor("processes"), ProcessExecutor)
    with pytest.raises(UserError, match=r"unknown executor 'spark' \(valid: local, processes, ray\)"):
        make_executor("spark")
    with pytest.raises(UserError, match="workers must be >= 1"):
        ProcessExecutor(workers=0)
    with pytest.raises(UserError, match="needs the ray executor"):
        make_executor("processes", "10.0.0.1:6379")


@pytest.mark.slow
def test_process_tables_equal_local_tables(tmp_path):
    text = TINY.format(methods=METHODS, plugins="[]")
    # two workers on this machine's CPUs; the local run uses the workers' thread count, so
    # floating-point reductions happen in the same order and every number matches bit for bit
    workers = 2
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0)) // workers))
    try:
        local = run(text, tmp_path / "c_local", tmp_path / "r_local", LocalExecutor())
    finally:
        torch.set_num_threads(threads)
    parallel = run(text, tmp_path / "c_proc", tmp_path / "r_proc", ProcessExecutor(workers=workers))
    assert len(local.scores) == 3 * 16 * 2 * 3  # methods x channels x seeds x (consistency + 2 bands)
    pd.testing.assert_frame_equal(local.scores, parallel.scores, check_exact=True)
    keep = [c for c in local.fits.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(local.fits[keep], parallel.fits[keep], check_exact=True)
    # the workers' stage records reach the parent: two stores extracted once, six bases fitted
    counts = stage_counts(parallel)
    assert counts["activations"][0] == 2
    assert counts["basis"] == (6, 0)
    # a second run on the same cache recomputes nothing and gives the same tables
    again = run(text, tmp_path / "c_proc", tmp_path / "r_proc2", ProcessExecutor(workers=workers))
    assert all(computed == 0 for computed, _ in stage_counts(again).values())
    pd.testing.assert_frame_equal(parallel.scores.drop(columns="run_id"), again.scores.drop(columns="run_id"))
    assert not list((tmp_path / "c_proc").glob(".run-*"))  # the run's marker file is removed


def test_user_error_in_a_worker_reaches_the_parent_as_user_error(tmp_path, monkeypatch):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "refusing_plugin.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(plugin_dir))  # spawned workers start with this sys.path
    text = TINY.format(methods='[[methods]]\nname = "refusing_pca"\n', plugins='["refusing_plugin"]')
    with pytest.raises(UserError, match="refusing_pca: planted user error"):
        run(text, tmp_path / "c", tmp_path / "r", ProcessExecutor(workers=2))
    assert not any((tmp_path / "c" / "basis").rglob("MANIFEST.json"))
    assert "refusing_plugin" in sys.modules  # the parent imported the plugin too (config parse)


def test_on_a_cuda_device_cells_run_in_this_process(tmp_path, monkeypatch):
    """Worker processes would time-slice one GPU (slower on an H200: docs/performance.md), so with
    ``workers`` unset a CUDA run maps its cells through the local executor; set workers still fork."""
    from benchmark.cache import Cache
    from benchmark.config import parse_config
    from benchmark.runner import Runner

    runner = Runner(
        parse_config(TINY.format(methods=METHODS, plugins="[]"), "tiny.toml"),
        Cache(tmp_path / "c"),
        results_dir=tmp_path / "r",
        progress=False,
    )
    runner.device = torch.device("cuda")  # only the executor's choice is tested: nothing runs
    calls = []
    monkeypatch.setattr(LocalExecutor, "map", lambda self, fn, cells: iter(calls.append(len(cells)) or ["done"]))
    cells = runner.cells()
    assert list(ProcessExecutor().map(runner.run_cell, cells)) == ["done"]
    assert calls == [len(cells)]
