"""Leaderboard figures (matplotlib, Agg; PNG and SVG), byte-stable across regenerations.

Per task (model x layer x dataset) two figures:

- ``<slug>__pareto``: each metric against L0 (left) and against FVU (right): one point per method
  with its 95% rerun interval, and methods run at several settings (an SAE ``k`` sweep) joined
  into a curve in order of the x value, as SAEBench compares SAEs along the sparsity Pareto
  front; chance is a grey band (mean ± std of the metric on random stimulus sets);
- ``<slug>__scores``: the per-direction scores of every method (box plot with each direction as
  a dot, all seeds pooled; at most :data:`MAX_DOTS` dots per box, a seeded sample, rasterised in
  the SVG), so a median never hides a bimodal method.

Files are deterministic: SVGs use a fixed ``svg.hashsalt`` and no date, PNGs carry no metadata,
and the dot jitter is seeded. Figures are a function of the tables, so :func:`build_plots` skips
drawing when ``out_dir/.tables.sha256`` says these tables were already drawn there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.leaderboard import fit_summary, method_order, metric_order, summarise, task_slug
from benchmark.results import TASK_KEYS, method_label, outputs_fresh, stamp_outputs

PLOT_FORMATS = ("png", "svg")
#: bump when the figures change, so cached figures are redrawn
PLOTS_VERSION = "4"
#: at most this many dots per box (a seeded sample; the box itself uses every direction)
MAX_DOTS = 300
_RC = {
    "svg.hashsalt": "interpbench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}
#: fixed colours for the built-in methods so a method looks the same in every figure
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
_KNOWN = ["neurons", "random", "pca", "ica", "kmeans", "nmf", "sparse_coding", "sae_l1", "sae_topk", "file"]


def method_color(method: str) -> str:
    """A stable colour per method name (built-ins fixed, others by a hash of the name)."""
    if method in _KNOWN:
        return _PALETTE[_KNOWN.index(method) % len(_PALETTE)]
    import hashlib

    return _PALETTE[int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(_PALETTE)]


#: parameters that set a method's sparsity: a sweep over one of them is drawn as one curve
SPARSITY_KEYS = ("k", "l1", "l1_coefficient", "l1_coeff", "alpha", "lam", "sparsity", "penalty", "n_components")


def curve_key(method: str, params_json: str, varying: list[str]) -> str:
    """The curve a point belongs to: the method plus its varying parameters other than the sparsity
    one (``sae_topk(expansion=4.0)`` for a ``k`` sweep at two widths); just the method otherwise."""
    params = json.loads(params_json)
    sweep = next((k for k in SPARSITY_KEYS if k in varying), varying[0] if varying else None)
    rest = {k: params[k] for k in varying if k != sweep and params.get(k) is not None}
    return method if not rest else f"{method}({', '.join(f'{k}={v}' for k, v in sorted(rest.items()))})"


def pareto_points(summary: pd.DataFrame, fits: pd.DataFrame) -> list[dict]:
    """Every scored (method, params, metric) of one task with its fit statistics and its curve, as
    records (plain dicts: the figure loops over them without per-panel pandas work)."""
    fs = fit_summary(fits)
    s = summary[(summary["status"] == "ok") & summary["median"].notna()]
    merged = s.merge(fs, on=[*TASK_KEYS, "method", "method_params"], how="inner")
    records = merged[["method", "method_params", "metric", "median", "lo", "hi", "l0", "fvu"]].to_dict("records")
    by_method: dict[str, set[str]] = {}
    for r in records:
        by_method.setdefault(r["method"], set()).add(r["method_params"])
    varying = {}
    for method, all_params in by_method.items():
        params = [json.loads(p) for p in sorted(all_params)]
        keys = sorted({k for p in params for k in p})
        varying[method] = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
    for r in records:
        r["label"] = method_label(r["method"], r["method_params"])
        r["curve"] = curve_key(r["method"], r["method_params"], varying[r["method"]])
    return records


def _curves(points: list[dict], metric: str, x: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in points:
        if r["metric"] == metric and np.isfinite(r[x]):
            out.setdefault(r["curve"], []).append({**r, "x": float(r[x])})
    return {c: sorted(v, key=lambda r: (r["x"], r["label"])) for c, v in sorted(out.items())}


def pareto_series(summary: pd.DataFrame, fits: pd.DataFrame, metric: str, x: str = "l0") -> dict[str, pd.DataFrame]:
    """Per curve, its points for one task and metric, sorted by ``x``.

    A method run at several settings is one curve along its sparsity parameter (the first of
    :data:`SPARSITY_KEYS` that varies, else the first varying parameter); its other varying
    parameters (e.g. the SAE width) split it into several curves.

    Args:
        summary: :func:`benchmark.leaderboard.summarise` rows of one task.
        fits: fit rows of the same task.
        metric: the metric column.
        x: ``"l0"`` or ``"fvu"``.

    Returns:
        ``{curve: DataFrame[method, x, median, lo, hi, label]}``, one row per parameter setting
        whose metric was scored, sorted by ``x``.
    """
    cols = ["method", "x", "median", "lo", "hi", "label"]
    return {c: pd.DataFrame(v)[cols] for c, v in _curves(pareto_points(summary, fits), metric, x).items()}


def _chance_band(ax, summary: pd.DataFrame, metric: str, horizontal: bool = True) -> None:
    m = summary[(summary["metric"] == metric) & (summary["status"] == "ok")]
    if m.empty or not np.isfinite(m["chance"]).any():
        return
    mean, std = float(m["chance"].mean()), float(np.nan_to_num(m["chance_std"].mean()))
    ax.axhspan(mean - std, mean + std, color="0.6", alpha=0.25, lw=0, zorder=0)
    ax.axhline(mean, color="0.4", lw=0.8, ls="--", zorder=0.5, label="chance ± std")


def _split_metrics(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(drawn metrics, notes on the metrics that were skipped everywhere in this task)``."""
    drawn, notes = [], []
    for metric in metric_order(summary["metric"].unique()):
        reason = _metric_reason(summary, metric)
        (drawn if reason is None else notes).append(metric if reason is None else f"{metric}: {reason}")
    return drawn, notes


def _footnote(fig, notes: list[str]) -> None:
    """A grey line at the bottom of the figure (the layouts keep 0.3 inch free for it)."""
    if notes:
        fig.text(0.01, 0.06 / fig.get_figheight(), "not shown: " + "; ".join(notes), fontsize=8, color="0.35")


def _grid(width: float, height: float, rows: int, cols: int, *, left: float, right: float, top: float,
          bottom: float, hgap: float, wgap: float) -> dict:  # fmt: skip
    """``gridspec_kw`` for margins and gaps given in inches (a fixed layout: no extra draw to measure)."""
    axis_h = (height - top - bottom - (rows - 1) * hgap) / rows
    axis_w = (width - left - right - (cols - 1) * wgap) / cols
    return {
        "left": left / width,
        "right": 1 - right / width,
        "top": 1 - top / height,
        "bottom": bottom / height,
        "hspace": hgap / axis_h,
        "wspace": wgap / axis_w,
    }


def _log_x(ax) -> None:
    from matplotlib.ticker import LogLocator, NullLocator, StrMethodFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())  # minor ticks cost a line each and say nothing here


def _metric_reason(summary: pd.DataFrame, metric: str) -> str | None:
    m = summary[summary["metric"] == metric]
    if (m["status"] == "ok").any() and m["median"].notna().any():
        return None
    return str(m["status"].iloc[0]) if len(m) and m["status"].iloc[0] != "ok" else "no finite scores"


def pareto_figure(summary: pd.DataFrame, fits: pd.DataFrame, title: str):
    """The metric-vs-L0 and metric-vs-FVU figure of one task (rows = metrics)."""
    import matplotlib.pyplot as plt

    metrics, notes = _split_metrics(summary)
    rows = max(1, len(metrics))
    foot = 0.3 if notes else 0.0
    height = 2.3 * rows + 0.55 * (rows - 1) + 0.8 + 0.6 + foot
    layout = _grid(10, height, rows, 2, left=0.75, right=0.25, top=0.8, bottom=0.6 + foot, hgap=0.55, wgap=0.7)
    fig, axes = plt.subplots(rows, 2, figsize=(10, height), squeeze=False, gridspec_kw=layout)
    handles: dict[str, object] = {}
    points = pareto_points(summary, fits)
    for i, metric in enumerate(metrics):
        hib = bool(summary.loc[summary["metric"] == metric, "higher_is_better"].iloc[0])
        for j, (x, xlabel) in enumerate((("l0", "L0 (active directions per sample)"), ("fvu", "FVU"))):
            ax = axes[i, j]
            ax.set_title(f"{metric} {'↑' if hib else '↓'}", loc="left")
            _chance_band(ax, summary, metric)
            xs = []
            styles: dict[str, int] = {}
            for curve, recs in _curves(points, metric, x).items():
                pts = {k: np.array([r[k] for r in recs]) for k in ("x", "median", "lo", "hi")}
                method = recs[0]["method"]
                nth = styles[method] = styles.get(method, -1) + 1
                yerr = np.vstack([pts["median"] - pts["lo"], pts["hi"] - pts["median"]])
                line = ax.errorbar(
                    pts["x"],
                    pts["median"],
                    yerr=np.clip(np.nan_to_num(yerr), 0, None),
                    color=method_color(method),
                    marker="osD^v"[nth % 5],
                    ms=5,
                    lw=1.4 if len(recs) > 1 else 0,
                    ls=("-", "--", ":", "-.")[nth % 4],
                    elinewidth=0.9,
                    capsize=2,
                    label=curve,
                )
                handles.setdefault(curve, line)
                xs += list(pts["x"])
            positive = [v for v in xs if v > 0]
            if x == "l0" and positive and max(positive) / min(positive) > 20:
                _log_x(ax)
            if x == "fvu" and xs and max(xs) < 0.02:  # full-rank bases: FVU ~ 1e-13, not a range to zoom into
                ax.set_xlim(-0.002, 0.02)
            if i == len(metrics) - 1:
                ax.set_xlabel(xlabel)
    if not metrics:
        for ax in axes[0]:
            ax.set_axis_off()
    chance = [h for ax in axes.ravel() for h in ax.get_lines() if h.get_label() == "chance ± std"][:1]
    labels = list(handles) + (["chance ± std"] if chance else [])
    if labels:
        ncol = min(5, len(labels))
        fig.legend(list(handles.values()) + chance, labels, loc="upper right", ncol=ncol, frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10, x=0.01, y=1.0 - 0.08 / height, ha="left", va="top")

    _footnote(fig, notes)
    return fig


def scores_figure(scores: pd.DataFrame, summary: pd.DataFrame, title: str):
    """Per metric, the per-direction score distribution of every method (box + dots)."""
    import matplotlib.pyplot as plt

    metrics, notes = _split_metrics(summary)
    pairs = method_order(summary)
    labels = [method_label(m, p) for m, p in pairs]
    width = max(6.0, 0.6 * len(pairs) + 2.5)
    rows = max(1, len(metrics))
    tilt = len(pairs) > 4
    foot = 0.3 if notes else 0.0
    label_room = (0.25 + 0.075 * max((len(x) for x in labels), default=4)) if tilt else 0.45
    height = 2.3 * rows + 0.45 * (rows - 1) + 0.6 + label_room + foot
    layout = _grid(width, height, rows, 1, left=0.75, right=0.2, top=0.6, bottom=label_room + foot, hgap=0.45, wgap=0)
    fig, axes = plt.subplots(rows, 1, figsize=(width, height), squeeze=False, gridspec_kw=layout)
    rng = np.random.default_rng(0)
    for i, metric in enumerate(metrics):
        ax = axes[i, 0]
        hib = bool(summary.loc[summary["metric"] == metric, "higher_is_better"].iloc[0])
        ax.set_title(f"{metric} {'↑' if hib else '↓'}: per-direction scores", loc="left")
        _chance_band(ax, summary, metric)
        m = scores[(scores["metric"] == metric) & (scores["status"] == "ok")]
        m = m.sort_values(["method", "method_params", "seed", "direction"], kind="stable")  # input order never matters
        data = []
        for method, params in pairs:
            v = m.loc[(m["method"] == method) & (m["method_params"] == params), "value"].to_numpy(dtype=float)
            data.append(v[np.isfinite(v)])
        positions = np.arange(1, len(pairs) + 1)
        keep = [k for k, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot(
                [data[k] for k in keep],
                positions=positions[keep],
                widths=0.6,
                showfliers=False,
                medianprops={"color": "black", "lw": 1.4},
                boxprops={"color": "0.3"},
                whiskerprops={"color": "0.3"},
                capprops={"color": "0.3"},
            )
        for k, ((method, _), d) in enumerate(zip(pairs, data)):
            if len(d) > MAX_DOTS:  # the box uses every direction; the dots show a seeded sample
                d = np.sort(rng.choice(d, MAX_DOTS, replace=False))
            jitter = rng.uniform(-0.22, 0.22, size=len(d))
            ax.scatter(
                positions[k] + jitter, d, s=8, alpha=0.6, color=method_color(method), lw=0, zorder=3, rasterized=True
            )
        show_labels = i == len(metrics) - 1
        ax.set_xticks(positions, labels if show_labels else [""] * len(labels), rotation=30 if tilt else 0,
                      ha="right" if tilt else "center")  # fmt: skip
        ax.set_xlim(0.4, len(pairs) + 0.6)
    if not metrics:
        axes[0, 0].set_axis_off()
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")

    _footnote(fig, notes)
    return fig


def save_figure(fig, base: Path, formats: tuple[str, ...] = PLOT_FORMATS) -> list[Path]:
    """Save ``fig`` as ``base.<fmt>`` without dates or software tags; closes the figure."""
    import matplotlib.pyplot as plt

    paths = []
    for f in formats:
        path = base.parent / f"{base.name}.{f}"  # not with_suffix: layer names hold dots (_blocks.13)
        meta = {"Date": None, "Creator": None} if f == "svg" else {"Software": None}
        if f == "pdf":
            meta = {"CreationDate": None, "Creator": None, "Producer": None}
        fig.savefig(path, format=f, metadata=meta, dpi=100)
        paths.append(path)
    plt.close(fig)
    return paths


def build_plots(
    scores: pd.DataFrame,
    fits: pd.DataFrame,
    out_dir: Path,
    formats: tuple[str, ...] = PLOT_FORMATS,
    reuse: Path | None = None,
    tables: str | None = None,
) -> dict[str, dict[str, Path]]:
    """Write both figures of every task into ``out_dir``.

    ``reuse``: another plots folder (e.g. the run's own ``plots/``); when it holds the figures of
    these very tables, they are copied instead of drawn. ``tables``: :func:`tables_digest` of
    ``scores, fits`` when the caller has it already (hashing 4M score rows takes a second).

    Returns:
        ``{task_slug: {"pareto": base path, "scores": base path}}`` (paths without suffix).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Path]] = {}
    for task in sorted(scores[TASK_KEYS].drop_duplicates().itertuples(index=False, name=None)):
        slug = task_slug(task)
        written[slug] = {"pareto": out_dir / f"{slug}__pareto", "scores": out_dir / f"{slug}__scores"}
    digest = _figures_digest(tables or tables_digest(scores, fits), formats)
    expected = [f"{p.name}.{f}" for d in written.values() for p in d.values() for f in formats]
    if outputs_fresh(out_dir, digest, expected):
        return written  # the same tables were already drawn: figures are a function of them
    stamp_outputs(out_dir, None)
    if reuse is not None and outputs_fresh(reuse, digest, expected):
        import shutil

        for name in expected:
            shutil.copyfile(Path(reuse) / name, out_dir / name)
        stamp_outputs(out_dir, digest)
        return written
    summary = summarise(scores)
    with plt.rc_context(_RC):
        for task, g in summary.groupby(TASK_KEYS, sort=True):
            slug = task_slug(task)
            title = " / ".join(task)
            in_task = (fits["model"] == task[0]) & (fits["layer"] == task[1]) & (fits["dataset"] == task[2])
            s_task = scores[
                (scores["model"] == task[0]) & (scores["layer"] == task[1]) & (scores["dataset"] == task[2])
            ]
            pareto = out_dir / f"{slug}__pareto"
            dist = out_dir / f"{slug}__scores"
            save_figure(pareto_figure(g, fits[in_task], title), pareto, formats)
            save_figure(scores_figure(s_task, g, title), dist, formats)
    stamp_outputs(out_dir, digest)
    return written


def figures_ready(
    scores: pd.DataFrame,
    fits: pd.DataFrame,
    folder: Path,
    formats: tuple[str, ...] = PLOT_FORMATS,
    tables: str | None = None,
) -> bool:
    """Whether ``folder`` already holds every figure of these tables in ``formats``
    (``tables``: their :func:`tables_digest`, when known)."""
    slugs = [task_slug(t) for t in scores[TASK_KEYS].drop_duplicates().itertuples(index=False, name=None)]
    names = [f"{slug}__{kind}.{f}" for slug in slugs for kind in ("pareto", "scores") for f in formats]
    return outputs_fresh(folder, _figures_digest(tables or tables_digest(scores, fits), formats), names)


def tables_digest(scores: pd.DataFrame, fits: pd.DataFrame) -> str:
    """Content hash of the results tables (values and column names)."""
    import hashlib

    h = hashlib.sha256()
    for df in (scores, fits):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
        h.update("|".join(df.columns).encode())
    return h.hexdigest()


def _figures_digest(tables: str, formats: tuple[str, ...]) -> str:
    """What the figures are a function of: the tables' digest, the plotting code version,
    matplotlib's version and the formats."""
    import hashlib

    import matplotlib

    return hashlib.sha256(f"{PLOTS_VERSION}|{matplotlib.__version__}|{formats}|{tables}".encode()).hexdigest()
