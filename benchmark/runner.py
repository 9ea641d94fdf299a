"""The grid: task x method x metric x seed -> result rows, every stage through the cache.

Stages (each a cache entry, so a killed run resumes where it stopped)::

    activations(task, split) -> basis(method, params, seed) -> top(basis) -> score(metric)
                                                      chance(task, metric, seed) -^
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.cache import Cache, hash_key
from benchmark.codedigest import code_digest
from benchmark.config import Config, PluginSpec, TaskSpec, instantiate
from benchmark.data.base import StimulusSet, Subset, data_notes, split_indices
from benchmark.errors import UserError
from benchmark.registry import DATASETS, METHODS, METRICS, MODELS
from benchmark.results import SCHEMA_VERSION, UNDETERMINED, method_label, params_json, write_tables

_MISSING = object()


@dataclass(frozen=True)
class Task:
    """One layer of one model on one dataset."""

    spec: TaskSpec
    layer: str

    @property
    def label(self) -> str:
        return f"{self.spec.model}/{self.layer}/{self.spec.dataset}"


@dataclass(frozen=True)
class Cell:
    """One basis to fit and score: a task, a method with concrete parameters, a seed."""

    task: Task
    method: str
    params: dict[str, Any]
    seed: int

    @property
    def label(self) -> str:
        return f"{self.task.label} {method_label(self.method, params_json(self.params))} seed={self.seed}"


class Executor:
    """Runs grid cells; the interface a distributed executor implements."""

    def map(self, fn: Callable[[Cell], Any], cells: list[Cell]) -> Iterator[Any]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """Runs cells one after another in this process."""

    def map(self, fn, cells):
        for cell in cells:
            yield fn(cell)


def stage_code(*plugins: object) -> str:
    """The ``code`` part of a stage key: the runner's stage code, ``plugins``' own and that of the
    plugins they reach by name (an optional ``code_roots()``; :mod:`benchmark.codedigest`), so an
    unversioned code change is a cache miss."""
    extra = [r for p in plugins if hasattr(p, "code_roots") for r in p.code_roots()]
    return code_digest("benchmark.runner", *plugins, *extra)


def task_network(task: Task) -> tuple[str, dict[str, Any]]:
    """The network a task analyses, as ``(registered model name, model params)``."""
    return task.spec.model, dict(task.spec.model_params)


def build_model(spec: TaskSpec):
    """Instantiate the model adapter of ``spec`` (``"prefix:NAME"`` models pass ``name=NAME``)."""
    params = dict(spec.model_params)
    name = spec.model
    if ":" in name:
        name, params["name"] = name.split(":", 1)
    model = instantiate(MODELS.get(name), params, f"model {spec.model!r}") if params else MODELS.get(name)()
    model.spatial = spec.spatial
    return model


def build_dataset(spec: TaskSpec) -> StimulusSet:
    cls = DATASETS.get(spec.dataset)
    data = instantiate(cls, spec.dataset_params, f"dataset {spec.dataset!r}") if spec.dataset_params else cls()
    if spec.max_samples is not None and spec.max_samples < len(data):
        idx = np.sort(np.random.default_rng(spec.split_seed).choice(len(data), spec.max_samples, replace=False))
        data = Subset(data, idx)
    return data


def metric_column(name: str, params: dict[str, Any], suffix: str = "", protocol: str | None = None) -> str:
    """Column name: ``label_consistency[psychophysics]``, ``color_consistency[consistency n=32]``.

    The protocol (when the metric has one) comes first, then the settings the config sets.
    """
    protocol = params.get("protocol", protocol)
    parts = [str(protocol)] if protocol else []
    parts += [f"{k}={v}" for k, v in sorted(params.items()) if k != "protocol"]
    if suffix:
        parts.append(suffix)
    return f"{name}[{' '.join(parts)}]" if parts else name


@dataclass
class RunResult:
    run_dir: Path
    scores: pd.DataFrame
    fits: pd.DataFrame
    stage_times: pd.DataFrame


@dataclass
class Runner:
    """Expands a :class:`Config` into cells and runs them through the cache."""

    config: Config
    cache: Cache
    results_dir: Path = Path("results")
    only_methods: tuple[str, ...] = ()
    only_metrics: tuple[str, ...] = ()
    run_id: str | None = None
    progress: bool = True
    #: None: the one ``config.executor`` names (benchmark.executors.make_executor)
    executor: Executor | None = None
    #: with the ray executor, a running cluster's address (None starts a local one)
    ray_address: str | None = None
    #: where log lines go (default: stderr, above the progress bar)
    log: Callable[[str], None] = field(default=lambda s: _log_line(s))

    def __post_init__(self) -> None:
        from benchmark.env import resolve_device

        self.device = resolve_device(self.config.device)
        if self.executor is None:
            from benchmark.executors import make_executor

            self.executor = make_executor(self.config.executor, self.ray_address)
        self._models: dict[str, Any] = {}
        self._data: dict[str, Any] = {}
        for name, reg in ((self.only_methods, METHODS), (self.only_metrics, METRICS)):
            for n in name:
                if n not in reg:
                    raise UserError(reg.unknown_message(n))

    # -- grid ----------------------------------------------------------------------------
    def tasks(self) -> list[Task]:
        return [Task(spec, layer) for spec in self.config.tasks for layer in spec.layers]

    def method_specs(self) -> list[PluginSpec]:
        return [m for m in self.config.methods if not self.only_methods or m.name in self.only_methods]

    def metric_specs(self) -> list[PluginSpec]:
        return [m for m in self.config.metrics if not self.only_metrics or m.name in self.only_metrics]

    def cells(self) -> list[Cell]:
        return [
            Cell(task, spec.name, params, seed)
            for task in self.tasks()
            for spec in self.method_specs()
            for params in spec.expand()
            for seed in self.config.seeds
        ]

    def metrics(self) -> list[tuple[str, dict[str, Any], Any]]:
        """``(name, shown params, metric)`` for every metric column family of the grid.

        The shown params are those that tell entries of one metric apart (swept or set
        differently in two entries); they name the column, e.g. ``color_consistency[consistency
        space=lab]``; settings shared by every entry stay out of the name.
        """
        entries = [(spec.name, params) for spec in self.metric_specs() for params in spec.expand()]
        out = []
        for name, params in entries:
            same = [p for n, p in entries if n == name]
            shown = {k: v for k, v in params.items() if any(p.get(k, _MISSING) != v for p in same)}
            out.append((name, shown, instantiate(METRICS.get(name), params, f"metric {name!r}")))
        return out

    def unavailable_tasks(self) -> dict[str, str]:
        """``{task label: reason}`` for tasks whose data set or model cannot be had here (an
        optional Debian package or weights file that is not installed); each is logged in one
        line and the rest of the grid runs."""
        skipped: dict[str, str] = {}
        for task in self.tasks():
            try:
                model = self._task_objects(task)[0]
                model.check_layer(task.layer)
            except UserError as exc:
                skipped[task.label] = str(exc)
                self.log(f"interpbench: skipping task {task.label}: {exc}")
        return skipped

    def not_applicable(self, task: Task) -> dict[str, str]:
        """``{score column: reason}`` for the metrics that do not apply to ``task``'s stimuli
        (:meth:`Metric.skip_reason`: color on language stimuli, captions a set lacks): every
        direction of every cell of the task records them as skipped with that reason."""
        samples = self._task_objects(task)[1]
        out: dict[str, str] = {}
        for name, params, metric in self.metrics():
            reason = skip_reason(metric, samples, task_network(task))
            if reason is not None:
                protocol = getattr(metric, "protocol", None)
                out.update({metric_column(name, params, suffix, protocol): reason for suffix in metric.columns().values()})
        return out

    def log_task_notes(self, tasks: Iterable[Task]) -> dict[str, frozenset[str]]:
        """Log, once per run, each note of the tasks' stimulus sets (files skipped, sources missing:
        :func:`~benchmark.data.base.data_notes`) and per task one line naming the metrics that do
        not apply to it; returns ``{task label: those score columns}`` (left out of cell lines)."""
        seen: set[str] = set()
        hidden: dict[str, frozenset[str]] = {}
        for task in tasks:
            for note in data_notes(self._task_objects(task)[1]):
                if note not in seen:
                    seen.add(note)
                    self.log(f"interpbench: data: {note}")
            columns = self.not_applicable(task)
            hidden[task.label] = frozenset(columns)
            if columns:
                self.log(f"interpbench: task {task.label}: not applicable: {_by_reason(columns)}")
        return hidden

    # -- task-level stages -------------------------------------------------------------
    def _task_objects(self, task: Task):
        key = hash_key([task.spec.model, task.spec.model_params, task.spec.spatial])
        if key not in self._models:
            self._models[key] = build_model(task.spec)
        model = self._models[key]
        dkey = hash_key([task.spec.dataset, task.spec.dataset_params, task.spec.max_samples, task.spec.split_seed, key])
        if dkey not in self._data:
            stimuli = build_dataset(task.spec)
            samples = model.samples(stimuli)
            fit_idx, probe_idx = split_indices(samples, task.spec.fit_fraction, task.spec.split_seed)
            if self.config.max_fit_samples is not None and len(fit_idx) > self.config.max_fit_samples:
                rng = np.random.default_rng(task.spec.split_seed)
                fit_idx = np.sort(rng.choice(fit_idx, self.config.max_fit_samples, replace=False))
            self._data[dkey] = (samples, fit_idx, probe_idx)
        return (model, *self._data[dkey])

    def activations(self, task: Task, split: str) -> tuple[Path, str]:
        """The activation store of ``task``'s ``split`` ("fit" or "probe"): ``(path, key)``."""
        from benchmark.activations import write_store

        model, samples, fit_idx, probe_idx = self._task_objects(task)
        model.check_layer(task.layer)
        idx = fit_idx if split == "fit" else probe_idx
        parts = {
            "model": model.identity(),
            "layer": task.layer,
            "samples": samples.identity(),
            "split": split,
            "indices": hash_key(idx.tolist()),
            "dtype": self.config.dtype,
            "code": stage_code(model, DATASETS.get(task.spec.dataset)),
        }

        def compute(tmp: Path) -> None:
            self.log(f"  extracting {task.label} ({split}, {len(idx)} samples)")
            chunks = model.activations(samples, idx, task.layer, batch_size=self.config.batch_size, device=self.device)
            write_store(tmp, chunks, idx, dtype=self.config.dtype, name=f"{task.label} ({split})")

        path = self.cache.get_or_compute("activations", parts, compute)
        return path, self.cache.key("activations", parts)

    # -- cell stages -------------------------------------------------------------------
    def basis_parts(self, cell: Cell) -> tuple[Any, dict[str, Any]]:
        """The cell's method and the cache parts that identify its fitted basis."""
        _, fit_key = self.activations(cell.task, "fit")
        _, probe_key = self.activations(cell.task, "probe")
        method = instantiate(METHODS.get(cell.method), cell.params, f"method {cell.method!r}")
        parts = {
            "acts": fit_key,
            "probe": probe_key,
            "method": cell.method,
            "params": method.params(),
            "version": type(method).version,
            "code": stage_code(method),
            "seed": cell.seed,
            "fidelity_samples": cell.task.spec.fidelity_samples,
        }
        return method, parts

    def run_cell(self, cell: Cell) -> tuple[pd.DataFrame, dict]:
        """Fit, encode and score one cell; returns (score rows, one per metric column and
        direction, as a DataFrame: a wide basis gives tens of thousands of rows), fit row)."""
        import torch

        from benchmark.activations import ActivationStore
        from benchmark.topk import top_examples
        from methods.base import Basis, compute_stats
        from metrics.base import Ranked, TopExamples

        task = cell.task
        model, samples, fit_idx, probe_idx = self._task_objects(task)
        fit_path, fit_key = self.activations(task, "fit")
        probe_path, probe_key = self.activations(task, "probe")
        method, basis_parts = self.basis_parts(cell)

        def fit(tmp: Path) -> None:
            torch.manual_seed(cell.seed)
            start = time.perf_counter()
            basis = method.fit(ActivationStore.open(fit_path), seed=cell.seed, device=self.device)
            seconds = time.perf_counter() - start
            basis.stats.update(compute_stats(basis, ActivationStore.open(probe_path), device=self.device))
            basis.stats.update(fit_seconds=seconds, n_fit=len(fit_idx))
            n_fid = task.spec.fidelity_samples
            if n_fid > 0 and basis.has_decoder and hasattr(model, "fidelity"):
                # downstream fidelity: splice the reconstruction back into the model (held-out samples)
                rng = np.random.default_rng(task.spec.split_seed)
                fid_idx = np.sort(probe_idx[rng.permutation(len(probe_idx))[:n_fid]])
                basis.stats.update(model.fidelity(basis, task.layer, samples, fid_idx, device=self.device))
            basis.save(tmp)

        basis_path = self.cache.get_or_compute("basis", basis_parts, fit)
        basis_key = self.cache.key("basis", basis_parts)
        basis = Basis.load(basis_path)

        metrics = self.metrics()
        n_top = max([m.needs()[0] for _, _, m in metrics], default=16)
        quantiles = tuple(sorted({q for _, _, m in metrics for q in m.needs()[1]} | {0.0}))
        # the seed draws the tie-breaking keys, one stream per direction (and the band sample of a
        # large probe split); the stage also records the value past the kept ones (undetermined sets)
        top_parts = {"basis": basis_key, "probe": probe_key, "n": n_top, "quantiles": quantiles, "seed": cell.seed,
                     "ties": "splitmix64(seed, direction, id)", "next": True, "rank": "preactivation",
                     "code": stage_code()}  # fmt: skip

        def topk(tmp: Path) -> None:
            bands = top_examples(
                basis, ActivationStore.open(probe_path), n_top, quantiles, device=self.device, seed=cell.seed
            )
            for q, r in bands.items():
                for name in _RANKED_ARRAYS:
                    np.save(tmp / f"q{q:g}_{name}.npy", getattr(r, name))

        top_path = self.cache.get_or_compute("top", top_parts, topk)

        def load_bands(path: Path) -> dict[float, Ranked]:
            return {
                q: Ranked(**{n: np.load(path / f"q{q:g}_{n}.npy") for n in _RANKED_ARRAYS}, quantile=q)
                for q in quantiles
            }

        examples = TopExamples(samples, load_bands(top_path), pool=probe_idx)
        base = {
            "schema_version": SCHEMA_VERSION,
            "model": task.spec.model,
            "layer": task.layer,
            "dataset": task.spec.dataset,
            "modality": samples.modality,
            "method": cell.method,
            "method_params": params_json(cell.params),
            "n_directions": basis.k,
            "seed": cell.seed,
        }
        columns: dict[str, list] = {k: [] for k in ("metric", "higher_is_better", "value", "chance_mean",
                                                    "chance_std", "status")}  # fmt: skip
        for name, params, metric in metrics:
            network = task_network(task)
            values, status, by_direction = self._score(
                metric, name, params, examples, top_parts, probe_key, samples, network
            )
            chance = self._chance(metric, name, params, samples, probe_idx, probe_key, cell.seed, network)
            determined = metric.determined_sets(examples) if status == "ok" else {}
            for suffix in metric.columns():
                col = metric_column(name, params, metric.columns()[suffix], getattr(metric, "protocol", None))
                st = direction_statuses(basis.k, status, by_direction.get(suffix, {}))
                v, st = mark_undetermined(values.get(suffix, np.full(basis.k, np.nan)), st, determined.get(suffix))
                mean, std = chance.get(suffix, (np.nan, np.nan))
                columns["metric"].append(np.full(basis.k, col, dtype=object))
                columns["higher_is_better"].append(np.full(basis.k, bool(metric.higher_is_better)))
                columns["value"].append(v)
                columns["chance_mean"].append(np.full(basis.k, mean, dtype=np.float64))
                columns["chance_std"].append(np.full(basis.k, std, dtype=np.float64))
                columns["status"].append(st)
        n_rows = sum(len(c) for c in columns["value"])
        rows = pd.DataFrame(
            {
                **{k: np.full(n_rows, v, dtype=object if isinstance(v, str) else None) for k, v in base.items()},
                "metric": np.concatenate(columns["metric"]) if n_rows else np.array([], dtype=object),
                "higher_is_better": np.concatenate(columns["higher_is_better"]) if n_rows else np.array([], bool),
                "direction": np.tile(np.arange(basis.k), n_rows // max(basis.k, 1)),
                **{
                    k: np.concatenate(columns[k]) if n_rows else np.array([])
                    for k in ("value", "chance_mean", "chance_std", "status")
                },
            }
        )
        stats = basis.stats
        fit_row = {
            **base,
            **{
                k: float(stats.get(k, np.nan))
                for k in ("fvu", "explained_variance", "l0", "dead_fraction", "fit_seconds")
            },
            "n_fit": int(stats.get("n_fit", len(fit_idx))),
            "n_probe": int(stats.get("n_probe", len(probe_idx))),
            "extra": json.dumps(
                {
                    k: v
                    for k, v in stats.items()
                    if k not in {"fvu", "explained_variance", "l0", "dead_fraction", "fit_seconds", "n_fit", "n_probe"}
                },
                sort_keys=True,
                default=str,
            ),
        }
        from benchmark.report.gallery import save_cell_gallery

        save_cell_gallery(self, cell, samples, examples.bands[0.0], top_parts)  # the report's galleries (first seed)
        return rows, fit_row

    def _metric_parts(self, name: str, metric) -> dict:
        return {"metric": name, "params": metric.params(), "version": type(metric).version, "code": stage_code(metric)}

    def _score(self, metric, name, params, examples, top_parts, probe_key, samples, network, stage="score"):
        """``({suffix: [k]}, status, {suffix: {message: [directions]}})`` through the cache;
        ``network``: the task's ``(model, params)`` (the top-k key holds it already)."""
        parts = {**self._metric_parts(name, metric), "top": top_parts, "samples": samples.identity()}

        def compute(tmp: Path) -> None:
            write_scores(tmp, metric, samples, examples, network)

        path = self.cache.get_or_compute(stage, parts, compute)
        info = json.loads((path / "status.json").read_text())
        values = {p.stem[len("score") :]: np.load(p) for p in sorted(path.glob("score*.npy"))}
        return values, info["status"], info.get("directions", {})

    def _chance(self, metric, name, params, samples, probe_idx, probe_key, seed, network):
        from benchmark.topk import random_sets
        from metrics.base import TopExamples

        n, quantiles = metric.needs()
        parts = {
            **self._metric_parts(name, metric),
            "probe": probe_key,
            "samples": samples.identity(),
            "sets": self.config.chance_sets,
            "seed": seed,
        }

        def compute(tmp: Path) -> None:
            ranked = random_sets(probe_idx, self.config.chance_sets, n, seed)
            examples = TopExamples(samples, {q: ranked for q in set(quantiles) | {0.0}}, is_random=True, pool=probe_idx)
            write_scores(tmp, metric, samples, examples, network)

        path = self.cache.get_or_compute("chance", parts, compute)
        values = {p.stem[len("score") :]: np.load(p) for p in sorted(path.glob("score*.npy"))}
        return {s: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0) for s, v in values.items()}

    # -- whole run ---------------------------------------------------------------------
    def default_run_id(self) -> str:
        resolved = self.config.resolved()
        resolved.pop("source", None)
        filt = [sorted(self.only_methods), sorted(self.only_metrics)]
        return f"{self.config.name}-{hash_key([resolved, filt])[:8]}"

    def run(self) -> RunResult:
        """Run every cell, write ``<results_dir>/runs/<run_id>/`` and return the tables."""
        from benchmark.cache import using_cache

        with using_cache(self.cache):
            return self._run()

    def dataset_manifests(self, tasks) -> dict[str, Any]:
        """Per task label, the ``manifest()`` of its data set where it has one: language corpora
        (sources, counts, content hash) and image sets (stimuli per label and the ``hygiene`` counts:
        blank, exact and near-duplicates, label conflicts removed)."""
        out: dict[str, Any] = {}
        for task in tasks:
            obj = self._task_objects(task)[1]
            while obj is not None and not hasattr(obj, "manifest"):
                inner = getattr(obj, "documents", None)
                obj = inner if inner is not None else getattr(obj, "parent", None)
            if obj is not None:
                out[task.label] = obj.manifest()
        return out

    def _run(self) -> RunResult:
        from benchmark.env import environment
        from benchmark.provenance import run_provenance

        cells = self.cells()
        if not cells:
            raise UserError("the grid is empty: no method left after --only-method filtering")
        run_id = self.run_id or self.default_run_id()
        run_dir = Path(self.results_dir) / "runs" / run_id
        start = time.perf_counter()
        skipped = self.unavailable_tasks()
        cells = [c for c in cells if c.task.label not in skipped]
        if not cells:
            raise UserError("no task of the grid can run here: " + "; ".join(f"{t}: {r}" for t, r in skipped.items()))
        self.log(
            f"interpbench: {len(cells)} cells ({len(self.tasks())} tasks x methods x seeds), "
            f"{len(self.metrics())} metrics, device {self.device}, cache {self.cache.root}"
        )
        hidden = self.log_task_notes({c.task.label: c.task for c in cells}.values())
        score_frames: list[pd.DataFrame] = []
        fit_rows: list[dict] = []
        bar = _progress(len(cells), self.progress)
        for cell, (rows, fit_row) in zip(cells, self.executor.map(self.run_cell, cells)):
            score_frames.append(rows)
            fit_rows.append(fit_row)
            bar.update(1)
            self.log(_cell_summary(cell, rows, fit_row, hidden.get(cell.task.label, frozenset())))
        bar.close()
        scores = pd.concat(score_frames, ignore_index=True)
        del score_frames
        fits = pd.DataFrame(fit_rows)
        scores.insert(1, "run_id", run_id)
        fits.insert(1, "run_id", run_id)
        write_tables(run_dir, scores, fits)
        resolved = self.config.resolved()
        (run_dir / "skipped_tasks.json").write_text(json.dumps(skipped, indent=1, sort_keys=True))
        (run_dir / "config.json").write_text(json.dumps(resolved, indent=1, sort_keys=True, default=str))
        (run_dir / "environment.json").write_text(json.dumps(environment(self.device), indent=1, sort_keys=True))
        manifests = self.dataset_manifests({c.task.label: c.task for c in cells}.values())
        if manifests:  # what each stimulus set held and what hygiene removed
            (run_dir / "datasets.json").write_text(json.dumps(manifests, indent=1, sort_keys=True, default=str))
        provenance = run_provenance(self, {c.task.label: c.task for c in cells}.values())  # commit, lock, hashes
        (run_dir / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True, default=str))
        stage_times = stage_table(self.cache.records)
        stage_times.to_csv(run_dir / "stages.csv", index=False)
        _point_latest(run_dir)
        self.log(f"finished in {time.perf_counter() - start:.1f} s; results in {run_dir}")
        from benchmark.results import read_tables

        scores, fits = read_tables(run_dir)
        return RunResult(run_dir, scores, fits, stage_times)


#: the arrays of a :class:`metrics.base.Ranked` the top-examples stage stores, per band
_RANKED_ARRAYS = ("top_idx", "top_val", "bottom_idx", "bottom_val", "top_next", "bottom_next", "top_rank",
                  "bottom_rank", "top_rank_next", "bottom_rank_next", "count")  # fmt: skip


def mark_undetermined(
    values: np.ndarray, status: str | np.ndarray, determined: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction ``(values [k] float64, status [k] object)`` of one score column.

    Where a direction was scored (its ``status``, one for all or ``[k]``, is ``"ok"``) but the
    ranks the metric reads are not ``determined [k]`` by values (a dead latent, a sparse code
    active on fewer samples than the metric reads), the direction has no concept to score: value
    NaN, status ``"undetermined"``. Other statuses (skips, insufficient bands) are kept.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), status, dtype=object) if isinstance(status, str) else np.array(status, dtype=object)
    if determined is None:
        return values, out
    undetermined = (out == "ok") & ~np.asarray(determined, dtype=bool)
    out[undetermined] = UNDETERMINED
    return np.where(undetermined, np.nan, values), out


def evaluate(
    metric, samples: StimulusSet, examples, model: tuple[str, dict[str, Any]] | None = None
) -> tuple[dict[str, np.ndarray], str]:
    """``({suffix: scores [k]}, status)`` of ``metric`` on ``examples``.

    A metric that does not apply, or cannot be computed on these examples (a
    :class:`UserError`, e.g. too few samples in a psychophysics band), gives no scores and
    status ``skipped: <reason>``: never a crash of the run, never a silent zero. Directions the
    metric cannot score one by one (a psychophysics band too small) are NaN here and named by
    ``metric.direction_status``. ``model``: the task's ``(network, params)``, which a metric
    that judges with a network of its own may not judge (:meth:`Metric.model_skip_reason`).
    """
    reason = skip_reason(metric, samples, model)
    if reason is None:
        try:
            return {s: np.asarray(v, dtype=np.float64) for s, v in metric.score_all(examples).items()}, "ok"
        except UserError as exc:
            reason = str(exc)
    return {}, f"skipped: {reason}"


def skip_reason(metric, samples: StimulusSet, model: tuple[str, dict[str, Any]] | None = None) -> str | None:
    """Why ``metric`` does not apply to ``samples``, or may not judge the task's network
    ``model`` (``(name, params)``; None: not checked); None when it applies."""
    reason = metric.skip_reason(samples)
    if reason is None and model is not None:
        reason = metric.model_skip_reason(*model)
    return reason


def write_scores(
    out: Path, metric, samples: StimulusSet, examples, model: tuple[str, dict[str, Any]] | None = None
) -> None:
    """:func:`evaluate` into ``out``: ``score<suffix>.npy`` files and ``status.json`` (with
    ``directions``: ``{suffix: {status: [direction, ...]}}`` for directions that are not ok)."""
    scored, status = evaluate(metric, samples, examples, model)
    for suffix, v in scored.items():
        np.save(out / f"score{suffix}.npy", v)
    info: dict[str, Any] = {"status": status}
    if status == "ok":
        grouped: dict[str, dict[str, list[int]]] = {}
        for suffix, per_direction in metric.direction_status(examples).items():
            for j in np.flatnonzero(per_direction != "ok"):
                grouped.setdefault(suffix, {}).setdefault(str(per_direction[j]), []).append(int(j))
        if grouped:
            info["directions"] = grouped
    (out / "status.json").write_text(json.dumps(info))


def direction_statuses(k: int, status: str, by_direction: dict[str, list[int]]) -> np.ndarray:
    """Status per direction ``[k]`` (object): ``status``, except the directions listed under
    another status in ``by_direction`` (``{status: [direction, ...]}``)."""
    out = np.full(k, status, dtype=object)
    for other, directions in by_direction.items():
        out[np.asarray(directions, dtype=np.int64)] = other
    return out


def _point_latest(run_dir: Path) -> None:
    """Make ``runs/latest`` a symlink to ``run_dir`` (atomically replaced)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:  # file systems without symlinks: the run dir is printed anyway
        tmp.unlink(missing_ok=True)


def stage_table(records: Iterable) -> pd.DataFrame:
    """Per stage: entries computed, reused, and seconds spent."""
    agg: dict[str, dict[str, float]] = defaultdict(lambda: {"computed": 0, "reused": 0, "seconds": 0.0})
    for r in records:
        a = agg[r.stage]
        a["computed" if r.computed else "reused"] += 1
        a["seconds"] += r.seconds
    return pd.DataFrame([{"stage": s, **v} for s, v in agg.items()], columns=["stage", "computed", "reused", "seconds"])


def _log_line(line: str) -> None:
    """Print ``line`` on stderr, above the progress bar when one is shown."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _by_reason(columns: dict[str, str]) -> str:
    """``{column: reason}`` as ``"a, b (reason 1); c (reason 2)"``, columns in their order."""
    groups: dict[str, list[str]] = {}
    for column, reason in columns.items():
        groups.setdefault(reason, []).append(column)
    return "; ".join(f"{', '.join(cols)} ({reason})" for reason, cols in groups.items())


def _cell_summary(cell: Cell, rows: pd.DataFrame, fit_row: dict, hidden: frozenset[str] = frozenset()) -> str:
    """One log line per cell: basis stats, then per score column the median over scored
    directions against chance; columns in ``hidden`` (not applicable to the task) are left out."""
    parts = []
    if len(rows):  # NumPy, not a group-by: this runs once per cell, on the parent's time
        which, names = pd.factorize(rows["metric"])  # in order of first appearance
        status = rows["status"].to_numpy(object)
        value, chance = rows["value"].to_numpy(float), rows["chance_mean"].to_numpy(float)
        for i, name in enumerate(names):
            if name in hidden:
                continue
            sel = which == i
            j = int(np.argmax(sel))
            ok = sel & (status == "ok")
            if ok.any():
                parts.append(f"{name}={np.nanmedian(value[ok]):.3g} (chance {chance[j]:.3g})")
            else:
                parts.append(f"{name}={UNDETERMINED if status[j] == UNDETERMINED else 'skipped'}")
    fvu = fit_row["fvu"]
    return f"  {cell.label}: k={fit_row['n_directions']} fvu={fvu:.3g} l0={fit_row['l0']:.3g} | " + ", ".join(parts)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="grid", unit="cell", file=sys.stderr, dynamic_ncols=True)
