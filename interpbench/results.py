"""The results of a run as a notebook object: tables, a leaderboard, and an HTML view."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.results import TASK_KEYS, method_label

FIT_STATS = {"n_directions": "k", "fvu": "fvu", "l0": "l0", "dead_fraction": "dead"}


@dataclass
class Results:
    """One run: ``scores`` (one row per direction and metric) and ``fits`` (one row per basis).

    Attributes:
        run_dir: ``results/runs/<run_id>/`` holding the Parquet tables and the resolved config.
        scores: the tidy scores table (see :mod:`benchmark.results`).
        fits: the fit statistics table.
        stage_times: per stage: entries computed / reused and seconds (only right after a run).
        galleries: top stimuli of a few of the best directions per method (see :mod:`interpbench.gallery`).
    """

    run_dir: Path
    scores: pd.DataFrame
    fits: pd.DataFrame
    stage_times: pd.DataFrame | None = None
    galleries: list[dict] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        ids = self.scores["run_id"].unique() if "run_id" in self.scores else []
        return str(ids[0]) if len(ids) == 1 else Path(self.run_dir).name

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run used (``config.json``), or ``{}``."""
        path = Path(self.run_dir) / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def summary(self) -> pd.DataFrame:
        """One row per (task, method, params, metric): median over directions, 95% CI, chance, status."""
        from benchmark.leaderboard import summarise

        return summarise(self.scores)

    def leaderboard(self, chance: bool = False) -> pd.DataFrame:
        """Methods x metrics per task: the median score over directions (seeds pooled), with fit statistics.

        Rows are indexed by ``(model, layer, dataset, method)`` (method with its parameters, e.g.
        ``sae_topk(k=8)``), sorted within a task by the first metric, best first. A skipped metric
        is NaN. With ``chance``, each metric column is followed by its chance level.
        """
        summary = self.summary()
        if summary.empty:
            return pd.DataFrame()
        summary = summary.assign(
            method=[method_label(m, p) for m, p in zip(summary["method"], summary["method_params"])]
        )
        keys = [*TASK_KEYS, "method"]
        metrics = list(dict.fromkeys(summary["metric"]))
        table = summary.set_index([*keys, "metric"])["median"].unstack("metric")[metrics]
        if chance:
            chance_t = summary.set_index([*keys, "metric"])["chance"].unstack("metric")[metrics]
            cols = {}
            for m in metrics:
                cols[m] = table[m]
                cols[f"{m} chance"] = chance_t[m]
            table = pd.DataFrame(cols)
        if len(self.fits) and {"method", "method_params", *FIT_STATS} <= set(self.fits.columns):
            fits = self.fits.assign(
                method=[method_label(m, p) for m, p in zip(self.fits["method"], self.fits["method_params"])]
            )
            stats = fits.groupby(keys, sort=False)[list(FIT_STATS)].mean().rename(columns=FIT_STATS)
            table = table.join(stats, how="left")
        if "k" in table:
            table["k"] = table["k"].round().astype("Int64")
        first = metrics[0]
        higher = bool(summary.loc[summary["metric"] == first, "higher_is_better"].iloc[0])
        parts = [
            g.sort_values(first, ascending=not higher, na_position="last", kind="stable")
            for _, g in table.groupby(level=TASK_KEYS, sort=True)
        ]
        out = pd.concat(parts)
        out.columns.name = None
        return out

    def basis(self, method: str, *, seed: int | None = None, task: str | None = None, **params: Any):
        """The fitted :class:`~methods.base.Basis` of ``method`` (with ``params``), read from the stage cache.

        ``task`` (``"model/layer/dataset"``) and ``seed`` pick one when the run has several;
        ``params`` must equal the method's parameters in the config (e.g. ``k=8``).
        """
        from benchmark.cache import Cache
        from benchmark.errors import UserError
        from benchmark.registry import METHODS
        from benchmark.results import params_json
        from interpbench.gallery import BASES_FILE
        from methods.base import Basis

        if method in METHODS:
            METHODS.get(method)  # imports the module that defines its basis kind
        path = Path(self.run_dir) / BASES_FILE
        if not path.is_file():
            raise UserError(f"{self.run_dir}: no {BASES_FILE}; bases are recorded by interpbench.run()")
        info = json.loads(path.read_text())
        found = [
            e
            for e in info["bases"]
            if e["method"] == method
            and (not params or e["method_params"] == params_json(params))
            and (seed is None or e["seed"] == seed)
            and (task is None or f"{e['model']}/{e['layer']}/{e['dataset']}" == task)
        ]
        if len(found) != 1:
            options = sorted(
                {
                    f"{e['model']}/{e['layer']}/{e['dataset']} {method_label(e['method'], e['method_params'])} "
                    f"seed={e['seed']}"
                    for e in info["bases"]
                }
            )
            what = "no basis" if not found else f"{len(found)} bases"
            raise UserError(
                f"{what} in this run match method={method!r} {params or ''}; pick one with task=, seed= or "
                f"the method's params (the run has: {'; '.join(options)})"
            )
        entry = Cache(Path(info["cache"])).entry_path("basis", found[0]["key"])
        if not (entry / "basis.json").is_file():
            raise UserError(f"the basis is no longer in the cache ({entry}); run the config again to refit it")
        return Basis.load(entry)

    def write_leaderboards(self, out_dir: str | Path | None = None) -> str:
        """Write the Markdown + CSV leaderboards (as ``interpbench leaderboard`` does); returns the Markdown."""
        from benchmark.leaderboard import build_leaderboards

        out = Path(out_dir) if out_dir is not None else Path(self.run_dir) / "leaderboards"
        return build_leaderboards(self.scores, self.fits, out)

    # -- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        n_tasks = len(self.fits[TASK_KEYS].drop_duplicates()) if len(self.fits) else 0
        n_methods = len(self.fits[["method", "method_params"]].drop_duplicates()) if len(self.fits) else 0
        n_metrics = self.scores["metric"].nunique() if len(self.scores) else 0
        return (
            f"Results(run_id={self.run_id!r}, {n_tasks} task(s), {n_methods} method(s), "
            f"{n_metrics} metric column(s), run_dir={str(self.run_dir)!r})"
        )

    def _repr_html_(self) -> str:
        from interpbench.gallery import galleries_html

        esc = html.escape
        parts = [
            '<div class="interpbench-results">',
            f"<h3>interpbench run {esc(self.run_id)}</h3>",
            f"<p><code>{esc(str(self.run_dir))}</code>: median score over directions per method "
            f"(best first); fit statistics on the held-out probe split.</p>",
        ]
        board = self.leaderboard(chance=False)
        summary = self.summary()
        if board.empty:
            parts.append("<p>(no scores)</p>")
        for task, g in board.groupby(level=TASK_KEYS, sort=True) if not board.empty else []:
            parts.append(f"<h4>{esc(' / '.join(map(str, task)))}</h4>")
            shown = g.droplevel(TASK_KEYS).reset_index()
            rename = {}
            for col in shown.columns:
                m = summary[summary["metric"] == col]
                if len(m):
                    arrow = "↑" if bool(m["higher_is_better"].iloc[0]) else "↓"
                    chance = float(m["chance"].mean())
                    rename[col] = f"{col} {arrow}" + (f" (chance {chance:.3f})" if np.isfinite(chance) else "")
            shown = shown.rename(columns=rename)
            parts.append(shown.to_html(index=False, escape=True, float_format=lambda v: f"{v:.3f}", na_rep="skipped"))
        if self.galleries:
            parts.append("<h3>Top stimuli of the best directions</h3>")
            parts.append(galleries_html(self.galleries))
        parts.append("</div>")
        return "\n".join(parts)
