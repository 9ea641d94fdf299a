"""``interpbench compare RUN [REFERENCE]``: does a rerun land inside the reference's intervals?

Both sides are read from whatever they hold: a run directory (``scores.parquet``: the cells
are recomputed, so the reference's interval can be chosen), or a folder with a long
``summary.csv`` (the published ``results/``, whose ``leaderboards/summary.csv`` has one row per
task, method, params and metric with its median and interval; a run's ``leaderboards/``).

Per task: the share of ranked cells (headline metrics, scored on both sides) whose median in RUN
lies inside REFERENCE's interval, and the (task, metric) columns whose rank-1 method changed;
overall: the share over all those cells. ``summary.csv`` rounds to 6 significant digits, so a
median counts as inside within a relative ``1e-5`` of an end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.leaderboard import _task_label, headline_metrics, rank_table, summarise
from benchmark.results import TASK_KEYS, method_label

CELL_KEYS = [*TASK_KEYS, "method", "method_params", "metric"]
INTERVALS = ("rerun", "directions")
#: relative tolerance at the interval ends (summary.csv keeps 6 significant digits)
REL_TOL = 1e-5


@dataclass(frozen=True)
class Cells:
    """One side of a comparison: its summary rows (``CELL_KEYS, median, lo, hi, status,
    higher_is_better`` and, when known, ``interval``) and where they came from."""

    summary: pd.DataFrame
    source: str


@dataclass(frozen=True)
class Comparison:
    """``per_task``: ``task, cells, inside, coverage, metrics, rank1_changes``; ``changes``:
    ``task, metric, reference, run`` (rank-1 methods, ``" = "``-joined when tied); ``missing``:
    ranked reference cells that RUN lacks; ``interval``: what the reference's intervals are."""

    per_task: pd.DataFrame
    changes: pd.DataFrame
    cells: int
    inside: int
    missing: int
    interval: str

    @property
    def coverage(self) -> float:
        return self.inside / self.cells if self.cells else math.nan


def load_cells(path: str | Path, interval: str = "rerun") -> Cells:
    """The cells of a run directory (recomputed from ``scores.parquet`` with ``interval``) or of a
    folder holding ``summary.csv`` or ``leaderboards/summary.csv``; :class:`UserError` otherwise."""
    path = Path(path)
    if interval not in INTERVALS:
        raise UserError(f"unknown interval {interval!r} (valid: {', '.join(INTERVALS)})")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder (a run directory, results/runs/<run_id>, or a results folder)")
    if (path / "scores.parquet").exists():
        from benchmark.results import read_tables

        scores, _ = read_tables(path)
        summary = summarise(scores, interval=interval)
        return Cells(_plain(summary), f"{path} (scores.parquet, {interval} interval)")
    for csv in (path / "leaderboards" / "summary.csv", path / "summary.csv"):
        if csv.exists():
            summary = pd.read_csv(csv, dtype={k: str for k in CELL_KEYS}, keep_default_na=False, na_values=[""])
            missing = [c for c in [*CELL_KEYS, "median", "lo", "hi", "status", "higher_is_better"] if c not in summary]
            if missing:
                raise UserError(f"{csv}: not a leaderboard summary (no column {', '.join(missing)})")
            return Cells(summary, str(csv))
    raise UserError(f"{path}: not a run (no scores.parquet) nor a results folder (no leaderboards/summary.csv)")


def _plain(summary: pd.DataFrame) -> pd.DataFrame:
    """Text columns as plain strings (categoricals of two runs do not merge)."""
    return summary.assign(**{k: summary[k].astype(str) for k in CELL_KEYS})


def _ranked(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of headline metrics with a finite median and status ok."""
    ok = summary[(summary["status"] == "ok") & np.isfinite(summary["median"].astype(float))]
    parts = [g[g["metric"].isin(headline_metrics(sorted(g["metric"].unique())))] for _, g in ok.groupby(TASK_KEYS)]
    return pd.concat(parts, ignore_index=True) if parts else ok.iloc[:0]


def _winners(summary: pd.DataFrame) -> dict[tuple[str, ...], str]:
    """``{(model, layer, dataset, metric): rank-1 method labels joined by " = "}``."""
    ranks = rank_table(summary)
    top = ranks[ranks["rank"] == ranks.groupby([*TASK_KEYS, "metric"])["rank"].transform("min")]
    out: dict[tuple[str, ...], str] = {}
    for key, g in top.groupby([*TASK_KEYS, "metric"], sort=True):
        out[tuple(key)] = " = ".join(sorted(method_label(m, p) for m, p in zip(g["method"], g["method_params"])))
    return out


def _interval_kind(summary: pd.DataFrame) -> str:
    if "interval" not in summary:
        return "direction bootstrap (a summary written before rerun intervals)"
    kinds = summary["interval"].dropna().value_counts()
    return ", ".join(f"{kind} ({n} cells)" for kind, n in sorted(kinds.items())) or "none"


def compare(run: pd.DataFrame, reference: pd.DataFrame) -> Comparison:
    """Coverage of ``run``'s medians by ``reference``'s intervals, and rank-1 changes, per task.

    Only cells ranked on both sides count (common headline metrics, status ok, finite medians).
    """
    ref = _ranked(_plain(reference))
    new = _ranked(_plain(run))
    both = ref.merge(new[[*CELL_KEYS, "median"]], on=CELL_KEYS, how="inner", suffixes=("", "_run"))
    if both.empty:
        raise UserError("RUN and REFERENCE have no ranked cell in common (other tasks, methods or metrics?)")
    x, lo, hi = (both[c].to_numpy(dtype=float) for c in ("median_run", "lo", "hi"))
    tol = REL_TOL * np.fmax(np.abs(lo), np.abs(hi))
    both["inside"] = (lo - tol <= x) & (x <= hi + tol)
    common = both.set_index(CELL_KEYS).index
    ref_top = _winners(ref[ref.set_index(CELL_KEYS).index.isin(common)])
    run_top = _winners(new[new.set_index(CELL_KEYS).index.isin(common)])
    changes = [
        {"task": _task_label(key[:3]), "metric": key[3], "reference": winner, "run": run_top.get(key, "–")}
        for key, winner in sorted(ref_top.items())
        if run_top.get(key) != winner
    ]
    changes_frame = pd.DataFrame(changes, columns=["task", "metric", "reference", "run"])
    rows = []
    for task, g in both.groupby(TASK_KEYS, sort=True):
        label = _task_label(task)
        rows.append(
            {
                "task": label,
                "cells": len(g),
                "inside": int(g["inside"].sum()),
                "coverage": float(g["inside"].mean()),
                "metrics": g["metric"].nunique(),
                "rank1_changes": int((changes_frame["task"] == label).sum()),
            }
        )
    per_task = pd.DataFrame(rows, columns=["task", "cells", "inside", "coverage", "metrics", "rank1_changes"])
    return Comparison(
        per_task=per_task,
        changes=changes_frame,
        cells=len(both),
        inside=int(both["inside"].sum()),
        missing=len(ref) - len(both),
        interval=_interval_kind(ref),
    )


def render(result: Comparison, run: Cells, reference: Cells) -> str:
    """A Markdown report: sources, a per-task table, the overall line and the rank-1 changes."""
    out = [
        f"run:       {run.source}",
        f"reference: {reference.source}",
        f"reference intervals: {result.interval}",
        "",
        "| task | cells | inside | coverage | rank-1 changes |",
        "|:--|--:|--:|--:|--:|",
    ]
    for r in result.per_task.itertuples():
        out.append(f"| {r.task} | {r.cells} | {r.inside} | {r.coverage:.2f} | {r.rank1_changes} of {r.metrics} |")
    out += ["", f"overall coverage: {result.coverage:.3f} ({result.inside} of {result.cells} ranked cells)"]
    if result.missing:
        out.append(f"ranked reference cells missing from the run: {result.missing}")
    if len(result.changes):
        out += ["", "rank-1 changes (reference -> run):"]
        out += [f"- {r.task}, {r.metric}: {r.reference} -> {r.run}" for r in result.changes.itertuples()]
    return "\n".join(out)
