"""Executors beyond the local one: grid cells as Ray tasks on a cluster (or a local one).

The :class:`~benchmark.runner.Executor` interface and :class:`~benchmark.runner.LocalExecutor`
live in ``benchmark/runner.py``; :func:`make_executor` picks one by name (``config.executor``,
``interpbench run --executor``).

How a Ray run works (see docs/scaling.md)::

    driver: Runner.run -> RayExecutor.map(runner.run_cell, cells)
      1. one "activations" task per (task, split), with the extraction's resources
      2. one "cell" task per cell, started once its task's activations exist
      each Ray task rebuilds the Runner from the config (JSON data) + the cache root and calls
      Runner.activations / Runner.run_cell, so every stage goes through the shared cache
    driver: results are yielded in cell order (identical tables to the local executor),
      the workers' stage records are merged into the driver's cache records

Nothing but JSON-able data (the config, the cache root, cell indices) is sent to a task, and
nothing is stored with pickle. The cache root must be a path every node sees (a shared file
system); the run checks that before starting any work.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.config import EXECUTORS, Config, PluginSpec, TaskSpec
from benchmark.errors import UserError
from benchmark.runner import Cell, Executor, LocalExecutor

INSTALL_HINT = "pip install 'interpbench[ray]'"
_GIB = 2**30

#: per-stage Ray resources; ``num_gpus`` is added when the run's device is CUDA
DEFAULT_RESOURCES: dict[str, dict[str, float]] = {
    "activations": {"num_cpus": 1, "memory": 2 * _GIB},
    "cell": {"num_cpus": 1, "memory": 2 * _GIB},
}


def make_executor(name: str, address: str | None = None, **options: Any) -> Executor:
    """The executor called ``name``: ``"local"``, ``"processes"`` or ``"ray"``.

    Args:
        name: ``"local"`` (cells one after another in this process), ``"processes"`` (worker
            processes on this machine, :class:`ProcessExecutor`) or ``"ray"``.
        address: with ``"ray"``, an existing cluster (``"host:port"``, ``"ray://host:10001"``,
            ``"auto"``); None starts a local cluster for the run.
        options: passed to :class:`RayExecutor` (``num_cpus``, ``resources``, ``max_retries``, ...).
    """
    if name == "local":
        if address is not None:
            raise UserError(f"--ray-address {address!r} needs the ray executor (--executor ray)")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, **options)
    if name == "processes":
        if address is not None:
            raise UserError(f"--ray-address {address!r} needs the ray executor (--executor ray)")
        return ProcessExecutor(**options)
    raise UserError(f"unknown executor {name!r} (valid: {', '.join(EXECUTORS)})")


def import_ray():
    """``ray``, or a :class:`UserError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            f"the ray executor needs Ray, which is not installed ({exc}); install it with {INSTALL_HINT}"
        ) from None
    return ray


# -- config as data ------------------------------------------------------------------------
def config_to_data(config: Config) -> dict[str, Any]:
    """The config as JSON data (what a Ray task receives)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_data(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`config_to_data`; imports its ``plugins`` modules."""
    data = dict(data)
    tasks = tuple(TaskSpec(**{**t, "layers": tuple(t["layers"])}) for t in data.pop("tasks"))
    methods = tuple(PluginSpec(**m) for m in data.pop("methods"))
    metrics = tuple(PluginSpec(**m) for m in data.pop("metrics"))
    for key in ("seeds", "plugins"):
        data[key] = tuple(data.get(key, ()))
    for module in data["plugins"]:
        importlib.import_module(module)
    return Config(tasks=tasks, methods=methods, metrics=metrics, **data)


# -- what runs inside a Ray task -----------------------------------------------------------
_WORKER_RUNNERS: dict[str, Any] = {}


def _worker_runner(spec: dict[str, Any]):
    """The Runner of ``spec`` in this worker process (built once, reused by later tasks)."""
    from benchmark.cache import Cache, hash_key
    from benchmark.runner import Runner

    key = hash_key(spec)
    if key not in _WORKER_RUNNERS:
        root = Path(spec["cache_root"])
        if not (root / spec["marker"]).exists():
            raise UserError(
                f"the stage cache {root} is not visible on Ray node {socket.gethostname()}: put it on a "
                "shared file system that every node mounts at the same path (--cache-dir / $INTERPBENCH_CACHE)"
            )
        _WORKER_RUNNERS[key] = Runner(
            config_from_data(spec["config"]),
            Cache(root),
            only_methods=tuple(spec["only_methods"]),
            only_metrics=tuple(spec["only_metrics"]),
            progress=False,
            executor=LocalExecutor(),
        )
    return _WORKER_RUNNERS[key]


def run_stage(spec: dict[str, Any], stage: str, index: int, split: str | None = None, *_deps: Any) -> dict[str, Any]:
    """Body of a Ray task: one ``"activations"`` stage (task ``index``, ``split``) or one
    ``"cell"`` (cell ``index`` of the grid). Returns the result and the stage records."""
    from benchmark.cache import using_cache

    runner = _worker_runner(spec)
    first = len(runner.cache.records)
    start = time.perf_counter()
    with using_cache(runner.cache):
        if stage == "activations":
            runner.activations(runner.tasks()[index], split)
            result = None
        else:
            cell = runner.cells()[index]
            if cell.label != spec["labels"][index]:  # the worker must see the driver's grid
                raise RuntimeError(
                    f"cell {index} is {cell.label!r} on the worker, {spec['labels'][index]!r} on the driver"
                )
            result = runner.run_cell(cell)
    records = [dataclasses.asdict(r) for r in runner.cache.records[first:]]
    return {
        "result": result,
        "records": records,
        "node": socket.gethostname(),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - start,
    }


def run_ray_stage(*args: Any) -> dict[str, Any]:
    """:func:`run_stage` in a Ray task, with as many torch threads as CPUs the task was given
    (a worker inherits the driver's ``OMP_NUM_THREADS``: two 1-CPU tasks on two cores would
    otherwise run four threads)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    return run_stage(*args)


def grid_indices(runner, cells: list[Cell]) -> list[int]:
    """Positions of ``cells`` in the runner's own grid (what a worker is told)."""
    grid = runner.cells()
    try:
        return [grid.index(cell) for cell in cells]
    except ValueError:
        raise RuntimeError("executor map: cells must come from the runner's own grid") from None


def grid_spec(runner) -> dict[str, Any]:
    """What a worker needs to rebuild ``runner`` (JSON data), with a fresh marker file written
    into the cache root so a worker can check that it sees the same cache."""
    root = Path(runner.cache.root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the cache at {root}: {exc}") from exc
    marker = f".run-{uuid.uuid4().hex[:12]}"
    (root / marker).write_text("this cache is shared by the workers of a run\n")
    return {
        "config": config_to_data(runner.config),
        "cache_root": str(root),
        "only_methods": list(runner.only_methods),
        "only_metrics": list(runner.only_metrics),
        "marker": marker,
        "labels": [c.label for c in runner.cells()],
    }


# -- the executor ----------------------------------------------------------------------------
@dataclasses.dataclass
class RayExecutor(Executor):
    """Runs grid cells as Ray tasks, on a cluster at ``address`` or a local one.

    Args:
        address: ``"host:port"`` of a running cluster's head (``ray start --head``),
            ``"ray://host:10001"`` (Ray Client) or ``"auto"``; None starts a local cluster with
            ``num_cpus`` CPUs for the run and stops it afterwards.
        num_cpus: CPUs of the local cluster (default: all of this machine).
        resources: per-stage overrides of :data:`DEFAULT_RESOURCES`, e.g.
            ``{"cell": {"num_cpus": 4, "num_gpus": 0.5, "memory": 8 * 2**30}}``.
        max_retries: times a task is retried when its worker dies (killed, out of memory, node
            lost). Errors the task raises itself are not retried: they would repeat.
        runtime_env: passed to ``ray.init`` (e.g. ``{"working_dir": ...}`` for plugin code).
    """

    address: str | None = None
    num_cpus: int | None = None
    resources: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    max_retries: int = 3
    runtime_env: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        import_ray()
        if self.address is not None:
            check_reachable(self.address)
        unknown = sorted(set(self.resources) - set(DEFAULT_RESOURCES))
        if unknown:
            raise UserError(
                f"RayExecutor resources: unknown stage {unknown[0]!r} (valid: {', '.join(DEFAULT_RESOURCES)})"
            )

    # -- connection ---------------------------------------------------------------------
    @contextmanager
    def connected(self) -> Iterator[Any]:
        """``ray`` connected to the cluster; a local cluster started here is stopped on exit."""
        ray = import_ray()
        if ray.is_initialized():
            yield ray
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.runtime_env is not None:
            kwargs["runtime_env"] = self.runtime_env
        where = self.address or "a local cluster"
        try:
            if self.address is None:
                with _driver_path_in_env():  # local workers import what the driver imports
                    ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
            else:
                ray.init(address=self.address, **kwargs)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot connect to the Ray cluster at {where}: {exc}") from None
        try:
            yield ray
        finally:
            ray.shutdown()

    def stage_options(self, stage: str, gpu: bool, largest: dict[str, float] | None = None) -> dict[str, Any]:
        """Ray task options of ``stage`` (resources and retries).

        ``largest`` holds the largest node's resources: a default request above it is lowered
        to fit (a task no node can hold would wait forever); an explicit one is a UserError.
        """
        opts: dict[str, Any] = dict(DEFAULT_RESOURCES[stage])
        if gpu:
            opts["num_gpus"] = 1
        asked = {k: v for k, v in self.resources.get(stage, {}).items()}
        opts.update(asked)
        opts = {k: v for k, v in opts.items() if v is not None}
        for name, value in list(opts.items()):
            have = (largest or {}).get(name.removeprefix("num_").upper() if name != "memory" else "memory")
            if largest is None or have is None or value <= have:
                continue
            if name in asked:
                raise UserError(
                    f"RayExecutor resources[{stage!r}][{name!r}] = {value} but the largest Ray node has {have}"
                )
            opts[name] = have if name == "memory" else max(1, int(have))
        return {**opts, "max_retries": self.max_retries, "retry_exceptions": False}

    # -- running ------------------------------------------------------------------------
    def map(self, fn: Callable[[Cell], Any], cells: list[Cell]) -> Iterator[Any]:
        from benchmark.runner import Runner

        runner = getattr(fn, "__self__", None)
        if not isinstance(runner, Runner) or getattr(fn, "__func__", None) is not Runner.run_cell:
            yield from self._map_function(fn, cells)
            return
        with self.connected() as ray:
            yield from self._map_grid(ray, runner, cells)

    def _map_function(self, fn: Callable[[Cell], Any], cells: list[Cell]) -> Iterator[Any]:
        """Any other picklable ``fn``: one task per cell, results in order."""
        with self.connected() as ray:
            remote = ray.remote(fn).options(**self.stage_options("cell", gpu=False))
            refs = [remote.remote(cell) for cell in cells]
            for ref in refs:
                yield _get(ray, ref, "a cell")

    def _map_grid(self, ray, runner, cells: list[Cell]) -> Iterator[Any]:
        from benchmark.cache import StageRecord

        indices = grid_indices(runner, cells)
        gpu = _wants_gpu(ray, runner.config.device, self.address)
        spec = grid_spec(runner)
        root, marker = Path(spec["cache_root"]), spec["marker"]
        largest = _largest_node(ray)
        task = ray.remote(run_ray_stage)
        extract = task.options(**self.stage_options("activations", gpu, largest), name="interpbench:activations")
        fit_score = task.options(**self.stage_options("cell", gpu, largest), name="interpbench:cell")
        spec_ref = ray.put(spec)
        try:
            tasks = runner.tasks()
            needed = sorted({tasks.index(cell.task) for cell in cells})
            acts = {
                t: [extract.remote(spec_ref, "activations", t, split) for split in ("fit", "probe")] for t in needed
            }
            cell_refs = [
                fit_score.remote(spec_ref, "cell", i, None, *acts[tasks.index(c.task)]) for i, c in zip(indices, cells)
            ]
            for t, refs in acts.items():
                for ref, split in zip(refs, ("fit", "probe")):
                    out = _get(ray, ref, f"activations of {tasks[t].label} ({split})")
                    runner.cache.records.extend(StageRecord(**r) for r in out["records"])
                runner.log(f"  activations of {tasks[t].label} ready")
            for cell, ref in zip(cells, cell_refs):
                out = _get(ray, ref, cell.label)
                runner.cache.records.extend(StageRecord(**r) for r in out["records"])
                yield out["result"]
        finally:
            # tasks still running after an error are left to finish (their stages land in the
            # cache for the next run) or stop with a local cluster: ray.cancel races with task
            # completion in Ray's core worker and can abort the driver (ray-project/ray#54846)
            (root / marker).unlink(missing_ok=True)


# -- worker processes on this machine --------------------------------------------------------
def _init_worker(threads: int, feature_mb: int | None) -> None:
    """Set up one worker process: its share of the CPU threads and of the feature cache."""
    import torch

    torch.set_num_threads(threads)
    if feature_mb is not None:
        os.environ["INTERPBENCH_FEATURE_CACHE_MB"] = str(feature_mb)


@dataclasses.dataclass
class ProcessExecutor(Executor):
    """Runs grid cells in ``workers`` processes on this machine, sharing the stage cache.

    Each worker rebuilds the Runner from the config (JSON data, as Ray tasks do), keeps its
    models, stimuli and feature cache for the cells it runs, and uses ``cpus / workers``
    torch threads; activations are extracted first (one job per task and split), then the
    cells run in grid order and their results come back in that order, so the tables equal
    the local executor's. Scoring is single-threaded Python and NumPy for a large part, so two
    workers on two cores finish a grid faster than one process with two torch threads.

    On a CUDA device with ``workers`` unset, cells run in this process instead: worker
    processes time-slice one GPU (a 16-cell grid on an H200 took 18.2 s with 16 workers,
    12.5 s in one process; docs/performance.md).

    Args:
        workers: processes (default: the CPUs this process may use).
        feature_cache_mb: each worker's feature-cache budget (default: the process-wide
            budget, ``$INTERPBENCH_FEATURE_CACHE_MB`` or 2048, split between the workers).
    """

    workers: int | None = None
    feature_cache_mb: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UserError(f"ProcessExecutor: workers must be >= 1, got {self.workers}")

    def map(self, fn: Callable[[Cell], Any], cells: list[Cell]) -> Iterator[Any]:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        from benchmark.cache import StageRecord
        from benchmark.runner import Runner

        runner = getattr(fn, "__self__", None)
        if not isinstance(runner, Runner) or getattr(fn, "__func__", None) is not Runner.run_cell:
            raise RuntimeError("ProcessExecutor runs a Runner's grid cells only (runner.run_cell)")
        if self.workers is None and runner.device.type == "cuda":
            yield from LocalExecutor().map(fn, cells)
            return
        indices = grid_indices(runner, cells)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, min(self.workers or cpus, len(cells)))
        budget = self.feature_cache_mb
        if budget is None:
            from metrics.features import feature_cache_mb

            budget = int(feature_cache_mb() / workers)
        spec = grid_spec(runner)
        root, marker = Path(spec["cache_root"]), spec["marker"]
        pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),  # no fork of a process that holds torch threads
            initializer=_init_worker,
            initargs=(max(1, cpus // workers), budget),
        )
        try:
            with _driver_path_in_env():
                tasks = runner.tasks()
                needed = sorted({tasks.index(cell.task) for cell in cells})
                acts = [
                    pool.submit(run_stage, spec, "activations", t, split) for t in needed for split in ("fit", "probe")
                ]
                jobs = [pool.submit(run_stage, spec, "cell", i) for i in indices]
            for job in acts:
                runner.cache.records.extend(StageRecord(**r) for r in _result(job)["records"])
            for job in jobs:
                out = _result(job)
                runner.cache.records.extend(StageRecord(**r) for r in out["records"])
                yield out["result"]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            (root / marker).unlink(missing_ok=True)


def _result(job) -> dict[str, Any]:
    """A worker job's result; its :class:`UserError` is re-raised as one (a clear line)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return job.result()
    except UserError as exc:
        raise UserError(str(exc)) from None
    except BrokenProcessPool as exc:
        raise RuntimeError(f"a worker process died (killed or out of memory?): {exc}") from None


def _get(ray, ref, what: str) -> Any:
    """``ray.get`` with the task's own :class:`UserError` (or full-disk error) re-raised as is."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as exc:
        raise RuntimeError(f"{what}: its Ray worker died on every retry ({type(exc).__name__}: {exc})") from None


def _largest_node(ray) -> dict[str, float]:
    """Per resource (``CPU``, ``GPU``, ``memory``), the most any one alive node has."""
    largest: dict[str, float] = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    for node in ray.nodes():
        if node.get("Alive", True):
            for key in largest:
                largest[key] = max(largest[key], float(node.get("Resources", {}).get(key, 0.0)))
    return largest


def _wants_gpu(ray, device: str, address: str | None) -> bool:
    """Whether tasks ask Ray for a GPU; a CUDA device on a cluster without GPUs is a UserError."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if device.startswith("cuda"):
        if gpus < 1:
            raise UserError(
                f"device {device!r} requested but the Ray cluster at {address or 'this machine'} has no GPU "
                "(use device = 'auto' or 'cpu', or add GPU nodes)"
            )
        return True
    return device == "auto" and gpus >= 1


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with a :class:`UserError` when ``host:port`` (or ``ray://host:port``) does not answer."""
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"Ray address {address!r} is not host:port, ray://host:port or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot reach the Ray cluster at {address!r} ({exc}); is `ray start --head` running there, "
            "and is the port open? Leave --ray-address out to start a local cluster"
        ) from None


@contextmanager
def _driver_path_in_env() -> Iterator[None]:
    """``PYTHONPATH`` holding the driver's ``sys.path`` while a local cluster starts, so its
    workers import the same project and plugin modules."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).exists())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
