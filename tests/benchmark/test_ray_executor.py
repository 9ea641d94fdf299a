"""The Ray executor: same tables as the local executor, retries of killed workers, shared
stages computed once, and clear errors (no Ray, unreachable address, no GPU, unshared cache)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.executors import (
    INSTALL_HINT,
    RayExecutor,
    _wants_gpu,
    config_from_data,
    config_to_data,
    make_executor,
    run_stage,
)
from benchmark.runner import LocalExecutor, Runner
from tests.benchmark.grid_helpers import run, stage_counts

# The tests that start Ray are marked `ray`: `make test` runs them in a pytest process of their
# own (see the Makefile), so a crash inside Ray itself cannot take the rest of the suite with it.
# They skip where Ray is not installed; the tests above them need no Ray and always run.

TINY = """
name = "tiny_ray"
seeds = [0]
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
sweep = {{ protocol = ["consistency"] }}
"""

THREE = '[[methods]]\nname = "neurons"\n\n[[methods]]\nname = "random"\n\n[[methods]]\nname = "pca"\n'

# A method that SIGKILLs its own worker the first time it fits (a marker file says whether it
# did), logs every fit attempt, and otherwise is PCA. ``fail = "user"`` raises a UserError.
KILLER = '''
"""Test plugin for tests/benchmark/test_ray_executor.py."""
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.registry import METHODS
from methods.pca import PCA


@METHODS.register("killer_pca")
@dataclass(frozen=True)
class KillerPCA(PCA):
    """PCA whose first fit kills its own process."""

    marker: str = ""
    fail: str = "kill"

    def fit(self, acts, *, seed, device="cpu"):
        with open(self.marker + ".log", "a") as f:
            f.write(f"fit {os.getpid()}\\n")
        if self.fail == "user":
            raise UserError("killer_pca: planted user error")
        if not Path(self.marker).exists():
            Path(self.marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(acts, seed=seed, device=device)
'''


def tiny(methods: str = THREE, plugins: str = "[]") -> str:
    return TINY.format(methods=methods, plugins=plugins)


# -- without Ray -----------------------------------------------------------------------------
def test_make_executor_names():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match=r"unknown executor 'spark' \(valid: local, processes, ray\)"):
        make_executor("spark")
    with pytest.raises(UserError, match="needs the ray executor"):
        make_executor("local", "10.0.0.1:6379")


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserError, match=re.escape(INSTALL_HINT)):
        make_executor("ray")


def test_config_round_trips_as_json_data():
    config = parse_config(tiny(), "tiny.toml")
    again = config_from_data(config_to_data(config))
    assert again == config
    assert (
        Runner(again, Cache(Path("/nonexistent")), executor=LocalExecutor()).default_run_id()
        == Runner(config, Cache(Path("/nonexistent")), executor=LocalExecutor()).default_run_id()
    )


def test_unshared_cache_is_a_clear_error(tmp_path):
    config = parse_config(tiny(), "tiny.toml")
    spec = {
        "config": config_to_data(config),
        "cache_root": str(tmp_path / "not-shared"),
        "only_methods": [],
        "only_metrics": [],
        "marker": ".ray-run-missing",
        "labels": [],
    }
    with pytest.raises(UserError, match="not visible on Ray node .*shared"):
        run_stage(spec, "activations", 0, "fit")


def test_cuda_requested_on_a_cluster_without_gpu():
    class FakeRay:
        def __init__(self, gpus):
            self.gpus = gpus

        def cluster_resources(self):
            return {"CPU": 8.0, "GPU": self.gpus} if self.gpus else {"CPU": 8.0}

    with pytest.raises(UserError, match="device 'cuda' requested but the Ray cluster at 10.1.2.3:6379 has no GPU"):
        _wants_gpu(FakeRay(0), "cuda", "10.1.2.3:6379")
    assert _wants_gpu(FakeRay(2), "cuda", None) is True
    assert _wants_gpu(FakeRay(2), "auto", None) is True
    assert _wants_gpu(FakeRay(0), "auto", None) is False
    assert _wants_gpu(FakeRay(2), "cpu", None) is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_requested_on_a_machine_without_gpu(tmp_path):
    config = parse_config(tiny().replace("seeds = [0]", 'seeds = [0]\ndevice = "cuda"'), "tiny.toml")
    with pytest.raises(UserError, match="device 'cuda' requested but no CUDA GPU is available"):
        Runner(config, Cache(tmp_path / "c"))


# -- with Ray --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray():
    """The ``ray`` module; skips the test where Ray is not installed (the only reason to skip)."""
    return pytest.importorskip("ray", reason=f"Ray is not installed ({INSTALL_HINT})", exc_type=ModuleNotFoundError)


@pytest.mark.ray
def test_unreachable_address_is_a_clear_error(ray):
    with pytest.raises(UserError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        make_executor("ray", "127.0.0.1:1")
    with pytest.raises(UserError, match="cannot reach the Ray cluster at 'ray://127.0.0.1:1'"):
        make_executor("ray", "ray://127.0.0.1:1")
    with pytest.raises(UserError, match="not host:port"):
        make_executor("ray", "headnode")


@pytest.fixture(scope="module")
def cluster(ray, tmp_path_factory):
    """A local Ray cluster with 2 CPUs for this module; workers see the plugin folder."""
    plugin_dir = tmp_path_factory.mktemp("plugins")
    (plugin_dir / "killer_plugin.py").write_text(KILLER)
    sys.path.insert(0, str(plugin_dir))
    executor = RayExecutor(num_cpus=2)
    with executor.connected():  # started here, so each run reuses it
        assert ray.is_initialized()
        yield executor
    assert not ray.is_initialized()  # a cluster the executor started is stopped with it
    sys.path.remove(str(plugin_dir))


@pytest.mark.ray
@pytest.mark.slow
def test_ray_tables_equal_local_tables(cluster, tmp_path):
    # each 1-CPU Ray task runs torch with one thread; the local run does too, so floating-point
    # reductions happen in the same order and every number matches bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run(tiny(), tmp_path / "c_local", tmp_path / "r_local", LocalExecutor())
    finally:
        torch.set_num_threads(threads)
    distributed = run(tiny(), tmp_path / "c_ray", tmp_path / "r_ray", cluster)
    assert len(local.scores) == 3 * 16 * 1  # 3 methods x 16 channels x 1 metric
    pd.testing.assert_frame_equal(local.scores, distributed.scores, check_exact=True)
    keep = [c for c in local.fits.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(local.fits[keep], distributed.fits[keep], check_exact=True)
    # the workers' stage records reach the driver: two stores extracted once, three bases fitted
    counts = stage_counts(distributed)
    assert counts["activations"][0] == 2
    assert counts["basis"] == (3, 0)
    # a second Ray run on the same cache recomputes nothing
    again = run(tiny(), tmp_path / "c_ray", tmp_path / "r_ray2", cluster)
    assert all(computed == 0 for computed, _ in stage_counts(again).values())
    pd.testing.assert_frame_equal(distributed.scores.drop(columns="run_id"), again.scores.drop(columns="run_id"))


def _slow_entry(root: str, counter: str) -> str:
    """One Ray task: ask the cache for an entry whose computation takes a second."""
    import time

    from benchmark.cache import Cache

    def compute(tmp):
        with open(counter, "a") as f:
            f.write("computed\n")
        time.sleep(1.0)
        (tmp / "value.txt").write_text("42")

    return str(Cache(Path(root)).get_or_compute("activations", {"shared": "store"}, compute))


@pytest.mark.ray
def test_a_shared_stage_is_computed_once_by_concurrent_tasks(ray, cluster, tmp_path):
    remote = ray.remote(num_cpus=1)(_slow_entry)
    counter = tmp_path / "computed.txt"
    paths = ray.get([remote.remote(str(tmp_path / "c"), str(counter)) for _ in range(4)])
    assert len(set(paths)) == 1
    assert counter.read_text().splitlines() == ["computed"]
    assert (Path(paths[0]) / "value.txt").read_text() == "42"


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_is_retried_and_nothing_cached_is_recomputed(cluster, tmp_path):
    marker = tmp_path / "killed"
    methods = f'[[methods]]\nname = "neurons"\n\n[[methods]]\nname = "killer_pca"\nparams = {{ marker = "{marker}" }}\n'
    result = run(tiny(methods, '["killer_plugin"]'), tmp_path / "c", tmp_path / "r", cluster)
    assert marker.exists()  # the first attempt did kill its worker
    attempts = Path(f"{marker}.log").read_text().splitlines()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # two fits, in two processes
    assert set(result.scores["method"]) == {"neurons", "killer_pca"}
    counts = stage_counts(result)
    assert counts["activations"][0] == 2  # extracted once, reused by the retried task
    assert counts["basis"][0] == 2  # neurons once, killer_pca once (the killed try cached nothing)
    # its basis equals plain PCA's
    pca = run(tiny('[[methods]]\nname = "pca"\n'), tmp_path / "c", tmp_path / "r2", cluster)
    killer_values = result.scores.loc[result.scores["method"] == "killer_pca", "value"].to_numpy()
    assert (killer_values == pca.scores["value"].to_numpy()).all()
    assert stage_counts(pca)["activations"][0] == 0


@pytest.mark.ray
def test_user_error_in_a_task_reaches_the_driver_as_user_error(cluster, tmp_path):
    marker = tmp_path / "m"
    methods = f'[[methods]]\nname = "killer_pca"\nparams = {{ marker = "{marker}", fail = "user" }}\n'
    with pytest.raises(UserError, match="planted user error"):
        run(tiny(methods, '["killer_plugin"]'), tmp_path / "c", tmp_path / "r", cluster)
    assert len(Path(f"{marker}.log").read_text().splitlines()) == 1  # not retried: it would repeat
    assert not any((tmp_path / "c" / "basis").rglob("MANIFEST.json"))
