"""Build the static HTML report of a run: ``interpbench report RUN [--out DIR]``.

The report is a folder that works opened from disk or served by ``python -m http.server``::

    index.html                         what was run, overall ranking, seed stability, per task the
                                       leaderboard and both figures, links to the method pages
    tasks/<task>/<method>.html         one page per task x method: fit statistics, the method's
                                       metric cells, and a gallery of its first directions (top and
                                       bottom stimuli: image thumbnails or text contexts with the
                                       active token highlighted) with each direction's scores
    plots/*.png|svg                    the figures of :mod:`benchmark.plots`
    galleries/<task>/<method>.png      thumbnail sprites copied from the run directory
    static/style.css

Pages are rendered by Jinja2 with autoescaping on (corpus text and captions may hold ``<script>``,
quotes, any Unicode) and carry a Content-Security-Policy that allows no script at all: the report
needs none. Galleries come from the run directory (see :mod:`benchmark.report.gallery`); a run
without them still gets a report, with a note on the method pages.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.leaderboard import Table, add_dataset_notes, compute_leaderboards, fmt, metric_order
from benchmark.report.gallery import THUMB_PX, method_slug, read_galleries
from benchmark.report.readme import describe_run
from benchmark.results import FIT_KEYS, method_label, outputs_fresh, read_tables, run_digest, stamp_outputs

HERE = Path(__file__).parent


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(fmt=fmt, thumb_px=THUMB_PX)
    return env


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _copy(src: Path, dst: Path) -> None:
    """Copy unless ``dst`` already has the same size and is not older (thumbnails are made once)."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _direction_scores(fit_scores: pd.DataFrame) -> dict[int, list]:
    """Per direction: ``[(metric, value text, chance text, css class)]`` from the score rows
    of one fit (one task, method, params and seed)."""
    out: dict[int, list] = {}
    position = {m: i for i, m in enumerate(metric_order(fit_scores["metric"].unique()))}
    s = fit_scores.assign(_order=[position[m] for m in fit_scores["metric"]])
    for r in s.sort_values(["direction", "_order"], kind="stable").itertuples():
        if r.status != "ok":
            continue
        value, chance = float(r.value), float(r.chance_mean)
        better = (value > chance) if r.higher_is_better else (value < chance)
        css = "" if not (np.isfinite(value) and np.isfinite(chance)) else ("above" if better else "below")
        out.setdefault(int(r.direction), []).append((r.metric, fmt(value), fmt(chance), css))
    return out


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` into ``out_dir`` (default ``run_dir/report``); returns index.html."""
    from benchmark.plots import PLOT_FORMATS, build_plots, figures_ready, tables_digest

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    digest = run_digest(run_dir, "report", folders=("galleries", "plots"))
    if outputs_fresh(out, digest, ["index.html"]):
        return out / "index.html"  # made from these very tables, galleries and figures already
    scores, fits = read_tables(run_dir)
    info = describe_run(run_dir, fits)
    boards = add_dataset_notes(compute_leaderboards(scores, fits), info["datasets"])
    galleries = read_galleries(run_dir)
    rows_of_fit = scores.groupby(FIT_KEYS, observed=True, sort=False).indices
    env = _environment()

    out.mkdir(parents=True, exist_ok=True)
    stamp_outputs(out, None)
    _copy(HERE / "static" / "style.css", out / "static" / "style.css")
    # the run's own figures are copied when they match these tables; else PNGs only are drawn (half the time)
    tables = tables_digest(scores, fits)
    formats = PLOT_FORMATS if figures_ready(scores, fits, run_dir / "plots", tables=tables) else ("png",)
    plots = build_plots(scores, fits, out / "plots", formats=formats, reuse=run_dir / "plots", tables=tables)

    tasks_ctx = []
    for table in boards.tasks:
        task = table.task
        assert task is not None
        links = {}
        for row in table.rows:
            if row.kind != "method":
                continue
            mslug = method_slug(row.method, row.params)
            href = f"tasks/{table.slug}/{mslug}.html"
            links[(row.method, row.params)] = href
            gallery = galleries.get((table.slug, mslug))
            _method_page(env, out, table, row, gallery, scores, rows_of_fit, info, href)
        p = plots.get(table.slug, {})
        tasks_ctx.append(
            {
                "table": table,
                "links": {f"{m}\0{p_}": h for (m, p_), h in links.items()},
                "pareto": f"plots/{p['pareto'].name}" if p else None,
                "scores": f"plots/{p['scores'].name}" if p else None,
                "svg": "svg" in formats,
            }
        )
    html = env.get_template("index.html").render(
        root=".",
        title=f"interpbench report: {info['config_name']}",
        info=info,
        overall=boards.overall,
        stability=boards.stability,
        tasks=tasks_ctx,
    )
    _write(out / "index.html", html)
    stamp_outputs(out, digest)
    return out / "index.html"


def _method_page(
    env, out: Path, table: Table, row, gallery: dict | None, scores: pd.DataFrame, rows_of_fit: dict, info, href
) -> None:
    """One method's page; ``rows_of_fit`` maps ``(*task, method, params, seed)`` to its rows of ``scores``."""
    task = table.task
    label = method_label(row.method, row.params)
    metric_cols = [c for c in table.columns if c.kind == "metric"]
    stat_cols = [c for c in table.columns if c.kind in ("int", "float") and c.key != "rank"]
    chance_row = next(r for r in table.rows if r.kind == "chance")
    directions = []
    sprite = None
    if gallery is not None:
        seed = int(gallery["seed"])
        rows = rows_of_fit.get((*task, row.method, row.params, seed), [])
        per_dir = _direction_scores(scores.iloc[rows])
        src = gallery["dir"] / f"{method_slug(row.method, row.params)}.png"
        if src.exists():
            rel = f"galleries/{table.slug}/{src.name}"
            _copy(src, out / rel)
            sprite = f"../../{rel}"
        for d in gallery["directions"]:
            directions.append({**d, "scores": per_dir.get(int(d["direction"]), [])})
    html = env.get_template("method.html").render(
        root="../..",
        title=f"{label} on {table.title}",
        info=info,
        table=table,
        row=row,
        label=label,
        metric_cols=metric_cols,
        stat_cols=stat_cols,
        chance_row=chance_row,
        gallery=gallery,
        directions=directions,
        sprite=sprite,
        isfinite=lambda x: x is not None and math.isfinite(x),
    )
    _write(out / href, html)


def report_size(path: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``path``."""
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
