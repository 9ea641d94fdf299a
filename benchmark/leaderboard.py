"""Results tables -> leaderboards: one table per task and an overall ranking, in Markdown, CSV and LaTeX.

Everything is generated from the two results tables (``scores``, ``fits``); nothing is edited by
hand, and regenerating from the same tables gives byte-identical files.

Per task (model x layer x dataset), methods (one row per method *and* parameter setting, so an
SAE sweep gives one row per sparsity) against metrics:

- a metric cell is the median of the per-direction scores (all seeds pooled) with its 95% rerun
  interval (:mod:`benchmark.stats`: a t prediction interval from the per-seed medians, containing
  the percentile bootstrap over directions, :data:`N_BOOT` resamples seeded from the cell's key;
  the direction bootstrap alone with one seed); ``†`` marks an interval that contains the chance
  level, and the best median of each column is bold (all tied bests are);
- a chance row gives each metric's chance level: the mean (± std) of the metric on random
  stimulus sets of the same size, drawn by the harness;
- a skipped metric shows ``skipped: <reason>``; a metric not run for a method shows ``–``;
- a direction whose top set is decided by ties (status ``undetermined``: dead, or active on fewer
  probe samples than the metric reads) is left out of the median and interval; a cell where every
  direction is undetermined shows ``undetermined``, is not ranked and never bold; the ``undet.``
  column gives each basis's largest share of undetermined directions over the task's metrics;
- fit statistics sit beside the metrics: directions ``k``, FVU (mean-centred), L0, dead fraction,
  fit seconds, and the downstream ``accuracy_recovered`` / ``loss_recovered`` when a method has them.

Overall: each (task, headline metric) ranks the methods present in it by median (1 = best, ties
share their mean rank, Borda-style); a method's score is its mean rank over all of them. Extra
columns of a metric (``... q=0.25``) are shown but not ranked, so no metric counts twice. With
several seeds, the method ranking is computed per seed and compared with Kendall's tau-b (mean over
seed pairs); a task whose tau is below :data:`TAU_FLAG` is flagged as unstable.

One table model (:class:`Table`) feeds every format: :func:`render_markdown`, :func:`render_csv`,
:func:`render_latex`, and the HTML report.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.results import TASK_KEYS, UNDETERMINED, method_label
from benchmark.stats import (  # noqa: F401  (re-exported: the leaderboard's statistics)
    CI_LEVEL,
    INTERVAL_SEEDS,
    N_BOOT,
    bootstrap_median_ci,
    rerun_interval,
    seed_prediction_halfwidth,
    stable_seed,
)

TAU_FLAG = 0.6
FORMATS = ("md", "csv", "latex")
_SUFFIX = {"md": "md", "csv": "csv", "latex": "tex"}
#: fit-table keys inside the ``extra`` JSON shown as columns when present: key -> header
FIT_EXTRAS = {"accuracy_recovered": "acc. rec.", "loss_recovered": "loss rec."}
DASH = "–"
DAGGER = "†"
SURVIVORS = "‡"
#: a cell whose basis has a larger share of undetermined directions is shown but not ranked
MAX_UNDETERMINED = 0.5


# -- statistics (the functions themselves live in benchmark.stats) ---------------------------
def average_ranks(medians: pd.Series, higher_is_better: bool) -> pd.Series:
    """Rank 1 = best; ties share the mean of the ranks they span (NaNs stay NaN)."""
    return medians.rank(ascending=not higher_is_better, method="average")


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors ``[n]`` (ties handled); NaN when either is constant.

    ``(concordant - discordant) / sqrt(pairs untied in a * pairs untied in b)`` over all pairs.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return math.nan
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    untied_a, untied_b = np.count_nonzero(da), np.count_nonzero(db)
    if untied_a == 0 or untied_b == 0:
        return math.nan
    return float(np.sum(da * db) / math.sqrt(untied_a * untied_b))


def _param_sort_key(params_json_str: str) -> tuple:
    """Numbers sort as numbers, so ``k=4`` comes before ``k=16``."""
    items = sorted(json.loads(params_json_str).items())
    return tuple((k, (0, float(v), "") if isinstance(v, int | float) else (1, 0.0, str(v))) for k, v in items)


def method_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Distinct ``(method, method_params)`` of ``frame``, by method name then numeric parameters."""
    pairs = set(zip(frame["method"], frame["method_params"]))
    return sorted(pairs, key=lambda p: (p[0], _param_sort_key(p[1])))


def headline_metrics(metrics: list[str]) -> list[str]:
    """The metric columns that are ranked: all but the extra columns ``name[... q=0.25]`` whose
    headline (the same name without that last ``q=`` part) is also present."""
    present = set(metrics)
    out = []
    for m in metrics:
        match = re.fullmatch(r"(.*?)(?: |\[)q=[^ \]]+\]", m)
        if match:
            base = match.group(1)
            headline = base + "]" if "[" in base else base
            if headline in present:
                continue
        out.append(m)
    return out


def metric_order(metrics) -> list[str]:
    """Metric columns sorted by name, each extra column (``... q=0.25``) right after its headline."""
    metrics = sorted(set(metrics))
    heads = set(headline_metrics(metrics))

    def key(m: str) -> tuple[str, int, str]:
        if m in heads:
            return (m, 0, m)
        base = re.fullmatch(r"(.*?)(?: |\[)q=[^ \]]+\]", m).group(1)
        return (base + "]" if "[" in base else base, 1, m)

    return sorted(metrics, key=key)


def summarise(scores: pd.DataFrame, interval: str = "rerun") -> pd.DataFrame:
    """One row per (task, method, params, metric): median, interval, chance, status.

    Directions of all seeds are pooled for the median. ``lo, hi``: the rerun interval of
    :func:`benchmark.stats.rerun_interval` (t prediction interval from the per-seed medians,
    containing the direction bootstrap interval) where two or more seeds scored the cell, else
    the direction bootstrap interval; ``interval`` says which (``"seeds"``/``"directions"``).
    ``status`` is ``"ok"`` when any seed scored a direction, else ``"undetermined"`` when the
    metric scored but every direction's top set was decided by ties, else the first skip reason.
    Undetermined directions are left out of the median and interval (``n_values`` counts the
    rest) but not out of the chance level; ``undetermined`` is their share of the directions the
    metric scored (NaN when it scored none). Columns: task keys, ``method, method_params, metric,
    median, lo, hi, chance, chance_std, higher_is_better, status, n_values, n_seeds, interval,
    undetermined``. ``interval="directions"`` keeps the direction bootstrap for every cell (what
    ``interpbench compare --interval directions`` checks).

    Vectorised: one groupby for the per-group facts, and the values of all groups sorted once by
    group, so each group's values are a slice (millions of rows take seconds).
    """
    keys = [*TASK_KEYS, "method", "method_params", "metric"]
    columns = [*keys, "median", "lo", "hi", "chance", "chance_std", "higher_is_better", "status", "n_values", "n_seeds"]
    columns += ["interval", "undetermined"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    grouped = scores.groupby(keys, sort=True)
    gid = grouped.ngroup().to_numpy()
    meta = grouped.agg(
        higher_is_better=("higher_is_better", "first"), n_seeds=("seed", "nunique"), first_status=("status", "min")
    ).reset_index()
    n_groups = len(meta)
    ok = scores["status"].to_numpy() == "ok"
    undet = scores["status"].to_numpy() == UNDETERMINED
    any_ok = np.bincount(gid, weights=ok, minlength=n_groups) > 0
    n_undet = np.bincount(gid, weights=undet, minlength=n_groups)
    n_scored = np.bincount(gid, weights=ok | undet, minlength=n_groups)
    scored = scores[ok | undet]  # chance does not depend on which directions were determined
    chance = scored.groupby([*keys, "seed"], sort=True)[["chance_mean", "chance_std"]].first().groupby(keys).mean()
    meta = meta.merge(chance.reset_index(), on=keys, how="left")
    values = scores["value"].to_numpy(dtype=float)
    use = ok & np.isfinite(values)
    order = np.argsort(gid[use], kind="stable")
    sorted_values = values[use][order]
    counts = np.bincount(gid[use], minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    median, lo, hi = (np.full(n_groups, math.nan) for _ in range(3))
    for i, key in enumerate(meta[keys].itertuples(index=False, name=None)):
        if counts[i]:
            v = sorted_values[starts[i] : starts[i] + counts[i]]
            median[i] = np.median(v)
            lo[i], hi[i] = bootstrap_median_ci(v, seed=stable_seed(*key))
    half = _seed_halfwidth(gid[use], scores["seed"].to_numpy()[use], values[use], n_groups)
    half = half if interval == "rerun" else np.full(n_groups, math.nan)
    lo, hi, kind = rerun_interval(median, lo, hi, half)
    out = meta[keys].assign(
        median=median,
        lo=lo,
        hi=hi,
        chance=meta["chance_mean"].astype(float),
        chance_std=meta["chance_std"].astype(float),
        higher_is_better=meta["higher_is_better"].astype(bool),
        status=np.where(any_ok, "ok", np.where(n_undet > 0, UNDETERMINED, meta["first_status"].astype(str))),
        n_values=counts.astype(int),
        n_seeds=meta["n_seeds"].astype(int),
        interval=kind,
        undetermined=np.divide(n_undet, n_scored, out=np.full(n_groups, math.nan), where=n_scored > 0),
    )
    return out[columns].reset_index(drop=True)


def _seed_halfwidth(gid: np.ndarray, seed: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """:func:`benchmark.stats.seed_prediction_halfwidth` of each group ``[n_groups]`` from the
    finite scored values ``[m]`` with their group ids and seeds: per (group, seed) the median,
    rows sorted by (group, seed) so the sums do not depend on the input's row order."""
    frame = pd.DataFrame({"gid": gid, "seed": seed.astype(np.int64), "value": values})
    per_seed = frame.groupby(["gid", "seed"], sort=True)["value"].median().reset_index()
    return seed_prediction_halfwidth(per_seed["gid"].to_numpy(), per_seed["value"].to_numpy(), n_groups)[0]


def undetermined_share(summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per basis (``method, method_params``): the largest ``undetermined`` share over ``metrics``
    (the metric that reads deepest loses the most directions); NaN where none scored."""
    s = summary[summary["metric"].isin(metrics)]
    return s.groupby(["method", "method_params"], sort=True)["undetermined"].max().reset_index()


def fit_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """Fit statistics per (task, method, params), averaged over seeds; ``extra`` keys of
    :data:`FIT_EXTRAS` become columns."""
    fits = fits.copy()
    extras = [json.loads(e) if isinstance(e, str) and e else {} for e in fits.get("extra", [""] * len(fits))]
    for key in FIT_EXTRAS:
        fits[key] = [_as_float(e.get(key)) for e in extras]
    cols = ["n_directions", "fvu", "l0", "dead_fraction", "fit_seconds", *FIT_EXTRAS]
    return fits.groupby([*TASK_KEYS, "method", "method_params"], sort=True)[cols].mean().reset_index()


def _as_float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def rankable(summary: pd.DataFrame) -> pd.Series:
    """``[rows]`` bool: cells that are ranked on their median and may be bold: scored (status
    ``ok``, a median) on at least ``1 - MAX_UNDETERMINED`` of the basis's directions. A median
    over the few determined directions of a mostly dead basis describes those survivors, not the
    basis, so it is shown (marked ``‡``) but not ranked on (see :func:`mostly_undetermined`)."""
    return (summary["status"] == "ok") & summary["median"].notna() & (_undetermined_share(summary) <= MAX_UNDETERMINED)


def mostly_undetermined(summary: pd.DataFrame) -> pd.Series:
    """``[rows]`` bool: cells whose basis has more than ``MAX_UNDETERMINED`` of its directions
    undetermined (all of them: status ``undetermined``). In a ranking they come last, tied: the
    basis offers no concept for most of its directions there."""
    share = _undetermined_share(summary)
    return (summary["status"] == UNDETERMINED) | ((summary["status"] == "ok") & (share > MAX_UNDETERMINED))


def _undetermined_share(summary: pd.DataFrame) -> pd.Series | float:
    return summary["undetermined"].astype(float).fillna(0.0) if "undetermined" in summary else 0.0


def rank_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Ranks per (task, headline metric): task keys, ``method, method_params, metric, rank``.

    Bases ranked on their median (:func:`rankable`) take ranks ``1..r``; mostly undetermined ones
    (:func:`mostly_undetermined`) share the last ranks ``r+1..r+u`` (their mean). A ranking needs
    at least one basis ranked on its median."""
    cols = [*TASK_KEYS, "method", "method_params", "metric", "rank"]
    parts = []
    ok, last = rankable(summary), mostly_undetermined(summary)
    for _, g in summary[ok | last].groupby(TASK_KEYS, sort=True):
        for metric in headline_metrics(sorted(g["metric"].unique())):
            m = g[g["metric"] == metric]
            live, dead = m[ok[m.index]], m[last[m.index]]
            if live.empty:
                continue
            parts.append(live.assign(rank=average_ranks(live["median"], bool(live["higher_is_better"].iloc[0])))[cols])
            if len(dead):
                parts.append(dead.assign(rank=len(live) + (len(dead) + 1) / 2)[cols])
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)


def seed_stability(scores: pd.DataFrame) -> pd.DataFrame:
    """Per task (and ``"overall"``): Kendall tau-b between the method rankings of each seed pair.

    A seed's ranking orders methods by their mean rank over the task's headline metrics (medians
    over that seed's directions). Columns: ``task, n_seeds, n_methods, tau_mean, tau_min, unstable``.
    """
    seeds = sorted(scores["seed"].unique())
    medians = _medians_only(scores)
    per_seed = {seed: rank_table(medians[medians["seed"] == seed]) for seed in seeds}
    rows = []
    tasks = sorted(scores[TASK_KEYS].drop_duplicates().itertuples(index=False, name=None))
    targets: list[tuple[str, tuple | None]] = [(_task_label(t), t) for t in tasks] + [("overall", None)]
    for label, task in targets:
        mean_ranks = {}
        for seed, r in per_seed.items():
            if task is not None:
                r = r[(r["model"] == task[0]) & (r["layer"] == task[1]) & (r["dataset"] == task[2])]
            mean_ranks[seed] = r.groupby(["method", "method_params"])["rank"].mean()
        taus = []
        n_methods = 0
        for a, b in itertools.combinations(seeds, 2):
            common = mean_ranks[a].index.intersection(mean_ranks[b].index).sort_values()
            n_methods = max(n_methods, len(common))
            taus.append(kendall_tau(mean_ranks[a][common].to_numpy(), mean_ranks[b][common].to_numpy()))
        finite = [t for t in taus if np.isfinite(t)]
        tau_mean = float(np.mean(finite)) if finite else math.nan
        rows.append(
            {
                "task": label,
                "n_seeds": len(seeds),
                "n_methods": n_methods,
                "tau_mean": tau_mean,
                "tau_min": float(np.min(finite)) if finite else math.nan,
                "unstable": bool(np.isfinite(tau_mean) and tau_mean < TAU_FLAG),
            }
        )
    return pd.DataFrame(rows, columns=["task", "n_seeds", "n_methods", "tau_mean", "tau_min", "unstable"])


def _medians_only(scores: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the median of each (task, method, params, metric) over that seed's directions."""
    keys = [*TASK_KEYS, "method", "method_params", "metric", "seed"]
    ok = scores[scores["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "median", "higher_is_better", "status"])
    med = ok.groupby(keys, sort=True).agg(median=("value", "median"), higher_is_better=("higher_is_better", "first"))
    return med.reset_index().assign(status="ok")


# -- the table model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricCell:
    """One metric of one method: the median with its interval, or why there is none."""

    median: float
    lo: float
    hi: float
    chance: float
    status: str = "ok"
    best: bool = False
    n: int = 0
    undetermined: float = math.nan
    survivors: bool = False  # more than MAX_UNDETERMINED of the directions undetermined: not ranked

    @property
    def ok(self) -> bool:
        return self.status == "ok" and np.isfinite(self.median)

    @property
    def includes_chance(self) -> bool:
        """The 95% interval contains the chance level."""
        return self.ok and np.isfinite(self.chance) and self.lo <= self.chance <= self.hi

    def text(self) -> str:
        if self.status != "ok":
            return self.status
        if not self.ok:
            return DASH
        mark = (DAGGER if self.includes_chance else "") + (SURVIVORS if self.survivors else "")
        return f"{fmt(self.median)} [{fmt(self.lo)}, {fmt(self.hi)}]{mark}"


@dataclass(frozen=True)
class ChanceCell:
    """A metric's chance level: mean ± std over random stimulus sets."""

    mean: float
    std: float

    def text(self) -> str:
        if not np.isfinite(self.mean):
            return DASH
        return f"{fmt(self.mean)} ± {fmt(self.std)}" if np.isfinite(self.std) else fmt(self.mean)


@dataclass(frozen=True)
class Column:
    """A table column. ``kind``: ``"label"``, ``"metric"`` (cells are :class:`MetricCell`),
    ``"int"`` or ``"float"`` (``digits`` decimals); ``arrow``: ``"↑"``, ``"↓"`` or ``""``."""

    key: str
    title: str
    kind: str = "float"
    digits: int = 3
    arrow: str = ""
    ranked: bool = True

    @property
    def header(self) -> str:
        return f"{self.title} {self.arrow}" if self.arrow else self.title


@dataclass
class Row:
    """A table row: ``values`` maps column keys to cell values; ``kind`` is ``"method"`` or
    ``"chance"``; ``method``/``params`` identify the method row (for links and CSV)."""

    values: dict[str, Any]
    kind: str = "method"
    method: str = ""
    params: str = "{}"
    flag: str = ""


@dataclass
class Table:
    """A titled table with notes; every output format is rendered from it."""

    slug: str
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    task: tuple[str, str, str] | None = None

    def text(self, row: Row, col: Column) -> str:
        """The display string of one cell (formats add their own emphasis for ``best``)."""
        v = row.values.get(col.key)
        if v is None:
            return DASH
        if isinstance(v, MetricCell | ChanceCell):
            return v.text()
        if col.kind == "int":
            return str(int(v)) if np.isfinite(v) else DASH
        if col.kind == "float":
            return fmt(v, col.digits)
        return str(v)

    def is_best(self, row: Row, col: Column) -> bool:
        v = row.values.get(col.key)
        return isinstance(v, MetricCell) and v.best


def fmt(x: float, digits: int = 3) -> str:
    """Fixed-point with ``digits`` decimals; NaN as a dash; never ``-0.000``."""
    if x is None or not np.isfinite(x):
        return DASH
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _task_label(task: tuple[str, str, str]) -> str:
    return " / ".join(task)


def task_slug(task: tuple[str, str, str]) -> str:
    """File-name-safe ``model__layer__dataset``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "__".join(task))


def _skipped_everywhere(summary: pd.DataFrame, metrics: list[str]) -> dict[str, str]:
    """``{metric: status}`` for the metrics that no method of ``summary`` could score (a metric
    that scored but found every direction undetermined keeps its column)."""
    out = {}
    for metric in metrics:
        status = summary.loc[summary["metric"] == metric, "status"]
        if len(status) and not status.isin(["ok", UNDETERMINED]).any():
            out[metric] = str(status.iloc[0])
    return out


def task_table(
    task: tuple[str, str, str], summary: pd.DataFrame, fits: pd.DataFrame, stability: dict | None = None
) -> Table:
    """The leaderboard of one task: method rows, a chance row, metric and fit columns.

    A metric skipped for every method of the task (e.g. a vision metric on text) gets no
    column; one note names those metrics with the reason.
    """
    metrics = metric_order(summary["metric"].unique())
    not_applicable = _skipped_everywhere(summary, metrics)
    metrics = [m for m in metrics if m not in not_applicable]
    ranked = set(headline_metrics(metrics))
    fit_s = fit_summary(fits) if len(fits) else fit_summary(_empty_fits())
    fit_s = fit_s.merge(undetermined_share(summary, metrics), on=["method", "method_params"], how="left")
    pairs = method_order(pd.concat([summary[["method", "method_params"]], fit_s[["method", "method_params"]]]))
    ranks = rank_table(summary).groupby(["method", "method_params"])["rank"].mean()

    columns = [Column("method", "method", "label"), Column("rank", "rank", "float", 2, "↓")]
    for metric in metrics:
        hib = bool(summary.loc[summary["metric"] == metric, "higher_is_better"].iloc[0])
        columns.append(Column(metric, metric, "metric", arrow="↑" if hib else "↓", ranked=metric in ranked))
    fit_columns = [
        Column("fvu", "FVU", "float", 3, "↓"),
        Column("l0", "L0", "float", 1),
        Column("dead_fraction", "dead", "float", 2, "↓"),
        Column("undetermined", "undet.", "float", 2, "↓"),
        Column("fit_seconds", "fit s", "float", 2),
    ]
    for key, title in FIT_EXTRAS.items():
        if len(fit_s) and fit_s[key].notna().any():
            fit_columns.append(Column(key, title, "float", 3, "↑"))
    columns += [Column("k", "k", "int"), *fit_columns]

    best = _best_medians(summary)
    rows = []
    chance_values: dict[str, Any] = {"method": "chance (random sets)"}
    for metric in metrics:
        m = summary[(summary["metric"] == metric) & summary["status"].isin(["ok", UNDETERMINED])]
        chance_values[metric] = ChanceCell(
            float(m["chance"].mean()) if len(m) else math.nan, float(m["chance_std"].mean()) if len(m) else math.nan
        )
    rows.append(Row(chance_values, kind="chance"))
    for method, params in pairs:
        values: dict[str, Any] = {"method": method_label(method, params), "rank": ranks.get((method, params), math.nan)}
        s = summary[(summary["method"] == method) & (summary["method_params"] == params)]
        for r in s.itertuples():
            survivors = r.status == "ok" and float(r.undetermined) > MAX_UNDETERMINED  # shown, never ranked
            values[r.metric] = MetricCell(
                r.median, r.lo, r.hi, r.chance, r.status, best=not survivors and r.median == best.get(r.metric),
                n=int(r.n_values), undetermined=float(r.undetermined), survivors=survivors,
            )  # fmt: skip
        f = fit_s[(fit_s["method"] == method) & (fit_s["method_params"] == params)]
        if len(f):
            f = f.iloc[0]
            values.update(k=float(f["n_directions"]), **{c.key: float(f[c.key]) for c in fit_columns})
        rows.append(Row(values, method=method, params=params))

    notes = [
        f"{interval_note(summary)}; {DAGGER} the interval contains chance; "
        "best median per column in bold; ↑/↓: higher/lower is better.",
        "rank: mean rank over this task's metrics (1 = best, ties share ranks); "
        "FVU: fraction of variance unexplained (mean-centred, probe split); L0: mean active directions per sample.",
        "undet.: largest share of directions, over this task's metrics, whose top set is decided by ties "
        "(dead, or active on fewer probe samples than the metric reads); they have no concept, so they are "
        "left out of the medians and intervals, and a cell where all are shows `undetermined`; "
        f"{SURVIVORS}: more than {MAX_UNDETERMINED:.0%} of the basis's directions are undetermined, so the median "
        "describes the survivors, not the basis: shown, never bold, and ranked last (tied with any other such "
        "basis), as is a cell where all are undetermined.",
    ]
    extra = [m for m in metrics if m not in ranked]
    if extra:
        notes.append(f"Shown but not ranked (extra columns of a ranked metric): {', '.join(extra)}.")
    if not_applicable:
        by_reason: dict[str, list[str]] = {}
        for metric, reason in not_applicable.items():
            family = metric.split("[", 1)[0]
            names = by_reason.setdefault(reason, [])
            if family not in names:
                names.append(family)
        notes.append(
            "Not applicable to this task (no column): "
            + "; ".join(
                f"{', '.join(names)} ({reason.removeprefix('skipped: ')})" for reason, names in by_reason.items()
            )
            + "."
        )
    if stability is not None and np.isfinite(stability.get("tau_mean", math.nan)):
        flag = f" **unstable: tau < {TAU_FLAG}**" if stability["unstable"] else ""
        notes.append(
            f"Seed stability: Kendall tau between per-seed method rankings {fmt(stability['tau_mean'], 2)} "
            f"(min {fmt(stability['tau_min'], 2)}, {stability['n_seeds']} seeds).{flag}"
        )
    return Table(task_slug(task), _task_label(task), columns, rows, notes, task=task)


def interval_note(summary: pd.DataFrame) -> str:
    """What a cell of ``summary`` (one task's rows) shows: the median, and which interval."""
    n_seeds = int(summary["n_seeds"].max()) if len(summary) else 0
    ok = summary[(summary["status"] == "ok") & summary["median"].notna()]
    kinds = set(ok["interval"]) if "interval" in ok else set()
    pooled = f"Median over directions ({n_seeds} seed{'s' if n_seeds != 1 else ''} pooled)"
    directions = f"bootstrap {CI_LEVEL:.0%} interval over directions, {N_BOOT} resamples"
    if INTERVAL_SEEDS not in kinds:
        why = "one seed, so it" if n_seeds <= 1 else "it"
        return f"{pooled} [{directions}; {why} does not cover seed-to-seed variation: run several seeds]"
    text = (
        f"{pooled} [{CI_LEVEL:.0%} rerun interval: where the median of a rerun with as many new seeds is "
        "expected, a t prediction interval from the per-seed medians, widened to contain the "
        f"{directions}]"
    )
    if len(kinds) > 1:
        text += f"; cells scored by one seed only show the {directions}"
    return text


def _empty_fits() -> pd.DataFrame:
    from benchmark.results import FIT_COLUMNS

    return pd.DataFrame(columns=FIT_COLUMNS)


def _best_medians(summary: pd.DataFrame) -> dict[str, float]:
    best = {}
    for metric, m in summary[rankable(summary)].groupby("metric", sort=True):
        best[metric] = m["median"].max() if m["higher_is_better"].iloc[0] else m["median"].min()
    return best


def overall_table(summary: pd.DataFrame, stability: pd.DataFrame) -> Table:
    """Mean rank over every (task, headline metric), wins, and the mean rank within each task."""
    ranks = rank_table(summary)
    tasks = sorted(set(zip(*(summary[k] for k in TASK_KEYS))))
    columns = [
        Column("position", "#", "int"),
        Column("method", "method", "label"),
        Column("mean_rank", "mean rank", "float", 2, "↓"),
        Column("wins", "wins", "int", arrow="↑"),
        Column("n_ranked", "ranked in", "int"),
    ]
    columns += [Column(_task_label(t), _task_label(t), "float", 2, "↓") for t in tasks]
    rows = []
    if len(ranks):
        per_method = ranks.groupby(["method", "method_params"])
        mean_rank = per_method["rank"].mean()
        top = ranks["rank"] == ranks.groupby([*TASK_KEYS, "metric"])["rank"].transform("min")
        wins = ranks.assign(win=top).groupby(["method", "method_params"])["win"].sum()
        count = per_method["rank"].size()
        by_task = ranks.groupby(["method", "method_params", *TASK_KEYS])["rank"].mean()
        order = sorted(mean_rank.index, key=lambda p: (mean_rank[p], p[0], _param_sort_key(p[1])))
        for pos, (method, params) in enumerate(order, 1):
            values: dict[str, Any] = {
                "position": pos,
                "method": method_label(method, params),
                "mean_rank": float(mean_rank[(method, params)]),
                "wins": wins[(method, params)],
                "n_ranked": count[(method, params)],
            }
            for t in tasks:
                values[_task_label(t)] = float(by_task.get((method, params, *t), math.nan))
            rows.append(Row(values, method=method, params=params))
    notes = [
        "mean rank: over every task and headline metric (1 = best; ties share the mean of their ranks); "
        "wins: first places (shared first places count for each); ranked in: how many (task, metric) rankings the method took part in; "
        "per-task columns: the method's mean rank over that task's metrics.",
    ]
    overall = stability[stability["task"] == "overall"]
    if len(overall) and np.isfinite(overall["tau_mean"].iloc[0]):
        o = overall.iloc[0]
        notes.append(
            f"Seed stability of this ranking: Kendall tau {fmt(o['tau_mean'], 2)} (min {fmt(o['tau_min'], 2)}) "
            f"over {o['n_seeds']} seeds."
        )
    flagged = stability[(stability["task"] != "overall") & stability["unstable"]]
    if len(flagged):
        notes.append(
            f"**Unstable across seeds (Kendall tau < {TAU_FLAG}):** "
            + "; ".join(f"{r.task} (tau {fmt(r.tau_mean, 2)})" for r in flagged.itertuples())
            + "."
        )
    return Table("overall", "Overall ranking", columns, rows, notes)


def stability_table(stability: pd.DataFrame) -> Table:
    """Kendall tau between the per-seed method rankings, per task and overall."""
    columns = [
        Column("task", "task", "label"),
        Column("n_seeds", "seeds", "int"),
        Column("n_methods", "methods", "int"),
        Column("tau_mean", "Kendall tau (mean)", "float", 2, "↑"),
        Column("tau_min", "Kendall tau (min)", "float", 2, "↑"),
        Column("flag", "flag", "label"),
    ]
    rows = []
    for r in stability.itertuples() if stability["n_seeds"].max() > 1 else ():
        flag = f"unstable (tau < {TAU_FLAG})" if r.unstable else ""
        rows.append(Row({**r._asdict(), "flag": flag}))
    notes = [
        "Each seed ranks the methods by mean rank over the task's metrics; tau-b is computed for every pair "
        f"of seeds; tasks with mean tau < {TAU_FLAG} are flagged."
        if len(rows)
        else "Only one seed ran: run several seeds (`seeds = [0, 1, 2]`) to measure how stable the ranking is."
    ]
    return Table("stability", "Ranking stability across seeds", columns, rows, notes)


# -- renderers ----------------------------------------------------------------------------------
def render_markdown(table: Table, level: int = 2) -> str:
    """A GitHub-flavoured Markdown table with a heading and its notes."""
    cols = table.columns
    out = [f"{'#' * level} {table.title}", ""]
    if table.rows:
        out.append("| " + " | ".join(_md_escape(c.header) for c in cols) + " |")
        out.append("|" + "|".join(":--" if c.kind == "label" else "--:" for c in cols) + "|")
    for row in table.rows:
        cells = []
        for c in cols:
            text = _md_escape(table.text(row, c))
            if table.is_best(row, c) or (row.kind == "chance" and c.key == "method"):
                text = f"**{text}**" if row.kind != "chance" else f"*{text}*"
            cells.append(text)
        out.append("| " + " | ".join(cells) + " |")
    if table.rows:
        out.append("")
    out += [n + "\n" for n in table.notes]
    return "\n".join(out)


def _md_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_csv(table: Table) -> str:
    """Numbers for pandas: per metric ``<m>``, ``<m> ci_low``, ``<m> ci_high``, ``<m> chance``,
    ``<m> status``, ``<m> best``; fit columns as numbers; method name and params JSON separate."""
    records = []
    for row in table.rows:
        if row.kind != "method" and table.slug != "stability":
            continue
        rec: dict[str, Any] = {}
        for c in table.columns:
            v = row.values.get(c.key)
            if c.key == "method" and row.method:
                rec["method"] = row.values["method"]
                rec["method_name"] = row.method
                rec["method_params"] = row.params
            elif c.kind == "metric":
                cell = v if isinstance(v, MetricCell) else MetricCell(math.nan, math.nan, math.nan, math.nan, "")
                rec[c.key] = cell.median
                rec[f"{c.key} ci_low"] = cell.lo
                rec[f"{c.key} ci_high"] = cell.hi
                rec[f"{c.key} chance"] = cell.chance
                rec[f"{c.key} status"] = cell.status
                rec[f"{c.key} best"] = cell.best
                rec[f"{c.key} undetermined"] = cell.undetermined
            else:
                rec[c.key] = v
        records.append(rec)
    buf = io.StringIO()
    pd.DataFrame(records).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "±": r"$\pm$",
    "–": "--",
    DAGGER: r"$^\dagger$",
}


def latex_escape(s: str) -> str:
    """Escape LaTeX specials (and the arrows, ±, dash, dagger this module writes)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def render_latex(table: Table) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``); best cells in bold."""
    cols = table.columns
    spec = "".join("l" if c.kind == "label" else "r" for c in cols)
    out = [
        "% needs \\usepackage{booktabs, graphicx}",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{latex_escape(table.title)}. {latex_escape(' '.join(n.replace('**', '') for n in table.notes))}}}",
        f"\\label{{tab:{re.sub(r'[^A-Za-z0-9:-]+', '-', table.slug)}}}",
        "\\resizebox{\\textwidth}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(c.header) for c in cols) + " \\\\",
        "\\midrule",
    ]
    for row in table.rows:
        cells = []
        for c in cols:
            text = latex_escape(table.text(row, c))
            if table.is_best(row, c):
                text = f"\\textbf{{{text}}}"
            elif row.kind == "chance" or (isinstance(row.values.get(c.key), MetricCell) and not row.values[c.key].ok):
                text = f"\\textit{{{text}}}"
            cells.append(text)
        out.append(" & ".join(cells) + " \\\\")
        if row.kind == "chance":
            out.append("\\midrule")
    out += ["\\bottomrule", "\\end{tabular}}", "\\end{table}", ""]
    return "\n".join(out)


RENDERERS = {"md": render_markdown, "csv": render_csv, "latex": render_latex}


# -- building -----------------------------------------------------------------------------------
@dataclass
class Leaderboards:
    """Every table of a run: the overall ranking, seed stability and one table per task."""

    overall: Table
    stability: Table
    tasks: list[Table]
    summary: pd.DataFrame
    stability_frame: pd.DataFrame

    def all_tables(self) -> list[Table]:
        return [self.overall, self.stability, *self.tasks]

    def render(self, fmt_name: str = "md") -> str:
        """All tables in one document of format ``md``, ``csv`` or ``latex``."""
        if fmt_name not in RENDERERS:
            raise UserError(f"unknown leaderboard format {fmt_name!r} (valid: {', '.join(FORMATS)})")
        if fmt_name == "md":
            parts = ["# Leaderboards", ""] + [render_markdown(t) for t in self.all_tables()]
            return "\n".join(parts)
        if fmt_name == "latex":
            return "\n".join(render_latex(t) for t in self.all_tables())
        return "\n".join(f"# {t.title}\n{render_csv(t)}" for t in self.all_tables())


def compute_leaderboards(scores: pd.DataFrame, fits: pd.DataFrame) -> Leaderboards:
    """The table model of a run's results (no files written)."""
    if scores.empty:
        raise UserError("the scores table is empty: nothing to put on a leaderboard")
    summary = summarise(scores)
    stability = seed_stability(scores)
    stab_by_task = {r["task"]: r for r in stability.to_dict("records")}
    tasks = []
    for task, g in summary.groupby(TASK_KEYS, sort=True):
        f = fits[(fits["model"] == task[0]) & (fits["layer"] == task[1]) & (fits["dataset"] == task[2])]
        tasks.append(task_table(task, g, f, stab_by_task.get(_task_label(task))))
    return Leaderboards(overall_table(summary, stability), stability_table(stability), tasks, summary, stability)


def build_leaderboards(
    scores: pd.DataFrame,
    fits: pd.DataFrame,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
    digest: str | None = None,
    boards: Leaderboards | None = None,
) -> str:
    """Write every table in ``formats`` to ``out_dir`` and return the Markdown of all of them.

    Files: ``README.md`` (all tables), ``overall.*``, ``stability.*``, ``<model>__<layer>__<dataset>.*``
    (``.md``, ``.csv``, ``.tex``), and ``summary.csv`` (the long table: one row per task, method,
    params and metric, with median, interval, chance and rank).

    ``digest``: :func:`benchmark.results.run_digest` of the tables' run; when ``out_dir`` was
    written from the same digest, nothing is computed again. ``boards``: the tables, when the
    caller has computed them already.
    """
    from benchmark.results import outputs_fresh, stamp_outputs

    for f in formats:
        if f not in RENDERERS:
            raise UserError(f"unknown leaderboard format {f!r} (valid: {', '.join(FORMATS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = None if digest is None else f"{digest}|{','.join(formats)}"
    if key is not None and outputs_fresh(out_dir, key, ["README.md", "summary.csv"]):
        return (out_dir / "README.md").read_text(encoding="utf-8")
    boards = boards if boards is not None else compute_leaderboards(scores, fits)
    stamp_outputs(out_dir, None)  # until every file is rewritten
    for table in boards.all_tables():
        for f in formats:
            _write(out_dir / f"{table.slug}.{_SUFFIX[f]}", RENDERERS[f](table))
    ranks = rank_table(boards.summary)
    long = boards.summary.merge(ranks, on=[*TASK_KEYS, "method", "method_params", "metric"], how="left")
    buf = io.StringIO()
    long.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    _write(out_dir / "summary.csv", buf.getvalue())
    text = boards.render("md")
    _write(out_dir / "README.md", text)
    if key is not None:
        stamp_outputs(out_dir, key)
    return text


def _write(path: Path, text: str) -> None:
    """Write only when the content changed (keeps mtimes of unchanged files)."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.write_text(text, encoding="utf-8")


def write_results_readme(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Fill ``out_dir`` (the committed ``results/``) from a run: leaderboards, plots, README.md.

    See :func:`benchmark.report.readme.write_results_readme`.
    """
    from benchmark.report.readme import write_results_readme as write

    return write(run_dir, out_dir)


def hygiene_note(manifest: dict | None) -> str | None:
    """The leaderboard note on a task's stimuli from its ``datasets.json`` entry (None without hygiene)."""
    h = (manifest or {}).get("hygiene")
    if not h:
        return None
    return (
        f"Stimuli: {manifest.get('stimuli', h['n_kept']):,} distinct after hygiene "
        f"(removed {h['removed']:,} of {h['n_input']:,}: {h['exact_duplicates']:,} exact duplicates, "
        f"{h['near_duplicates']:,} near-duplicates, {h['blank']:,} blank, "
        f"{h['label_conflicts']:,} in label-conflict groups)."
    )


def add_dataset_notes(boards: Leaderboards, manifests: dict[str, dict]) -> Leaderboards:
    """Append each task's stimulus-hygiene note (:func:`hygiene_note`) to its table; ``manifests``
    is a run's ``datasets.json`` (keyed ``model/layer/dataset``)."""
    for table in boards.tasks:
        note = hygiene_note(manifests.get("/".join(table.task))) if table.task else None
        if note and note not in table.notes:
            table.notes.append(note)
    return boards
