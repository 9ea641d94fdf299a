"""Results tables -> leaderboards (Markdown and CSV), one per task.

Each metric cell is the median over directions (all seeds pooled) with a bootstrap 95%
interval over directions, and the metric's chance level beside it; the best method in each
column is marked. Fit statistics (directions, FVU, L0, dead fraction, fit time) sit beside
the metrics so interpretability is read next to reconstruction cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.results import TASK_KEYS, method_label

N_BOOT = 1000


def bootstrap_median_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of ``values [m]`` (NaNs dropped)."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class Cell:
    median: float
    lo: float
    hi: float
    chance: float
    status: str


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, params, metric): median, CI, chance, status."""
    rows = []
    keys = [*TASK_KEYS, "method", "method_params", "metric"]
    for key, g in scores.groupby(keys, sort=True):
        status = g["status"].iloc[0]
        values = g["value"].to_numpy(dtype=float)
        med = float(np.nanmedian(values)) if status == "ok" and np.isfinite(values).any() else np.nan
        lo, hi = bootstrap_median_ci(values) if status == "ok" else (np.nan, np.nan)
        rows.append(
            {
                **dict(zip(keys, key)),
                "median": med,
                "lo": lo,
                "hi": hi,
                "chance": float(g["chance_mean"].mean()),
                "higher_is_better": bool(g["higher_is_better"].iloc[0]),
                "status": status,
                "n_values": int(np.isfinite(values).sum()),
            }
        )
    return pd.DataFrame(rows)


def fit_summary(fits: pd.DataFrame) -> pd.DataFrame:
    cols = ["n_directions", "fvu", "l0", "dead_fraction", "fit_seconds"]
    return fits.groupby([*TASK_KEYS, "method", "method_params"], sort=True)[cols].mean().reset_index()


def task_table(summary: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Methods x (metrics + fit stats) for one task, as display strings."""
    metrics = list(dict.fromkeys(summary["metric"]))
    rows = []
    fit_s = fit_summary(fits)
    for (method, params), g in summary.groupby(["method", "method_params"], sort=True):
        row = {"method": method_label(method, params)}
        for metric in metrics:
            m = g[g["metric"] == metric]
            if m.empty:
                row[metric] = ""
                continue
            r = m.iloc[0]
            row[metric] = f"{r['median']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]" if r["status"] == "ok" else r["status"]
        f = fit_s[(fit_s["method"] == method) & (fit_s["method_params"] == params)]
        if not f.empty:
            f = f.iloc[0]
            row.update(
                {
                    "k": int(f["n_directions"]),
                    "FVU": f"{f['fvu']:.3f}",
                    "L0": f"{f['l0']:.1f}",
                    "dead": f"{f['dead_fraction']:.2f}",
                    "fit s": f"{f['fit_seconds']:.1f}",
                }
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    # mark the best per metric column
    for metric in metrics:
        m = summary[(summary["metric"] == metric) & (summary["status"] == "ok")]
        if m.empty or m["median"].isna().all():
            continue
        best = m.loc[m["median"].idxmax() if m["higher_is_better"].iloc[0] else m["median"].idxmin()]
        label = method_label(best["method"], best["method_params"])
        table.loc[table["method"] == label, metric] = "**" + table.loc[table["method"] == label, metric] + "**"
    header = {}
    for metric in metrics:
        m = summary[summary["metric"] == metric].iloc[0]
        arrow = "↑" if m["higher_is_better"] else "↓"
        header[metric] = (
            f"{metric} {arrow} (chance {m['chance']:.3f})" if np.isfinite(m["chance"]) else f"{metric} {arrow}"
        )
    return table.rename(columns=header)


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def build_leaderboards(scores: pd.DataFrame, fits: pd.DataFrame, out_dir: Path) -> str:
    """Write one Markdown + CSV leaderboard per task into ``out_dir``; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(scores)
    summary.to_csv(out_dir / "summary.csv", index=False)
    parts = []
    for (model, layer, dataset), g in summary.groupby(TASK_KEYS, sort=True):
        f = fits[(fits["model"] == model) & (fits["layer"] == layer) & (fits["dataset"] == dataset)]
        table = task_table(g, f)
        slug = f"{model}__{layer}__{dataset}".replace("/", "_").replace(":", "_")
        table.to_csv(out_dir / f"{slug}.csv", index=False)
        md = f"## {model} / {layer} / {dataset}\n\nMedian over directions [bootstrap 95% CI]; best per column in bold.\n\n"
        md += to_markdown(table)
        (out_dir / f"{slug}.md").write_text(md)
        parts.append(md)
    text = "# Leaderboards\n\n" + "\n".join(parts)
    (out_dir / "README.md").write_text(text)
    return text
