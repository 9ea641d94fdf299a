"""Leaderboards from a small hand-made results table: golden files, ranks, intervals, arrows, skips.

Regenerate the golden files after an intended change with
``INTERPBENCH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/benchmark/test_leaderboard.py`` and review the diff.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, kendalltau

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.leaderboard import (
    DAGGER,
    bootstrap_median_ci,
    build_leaderboards,
    compute_leaderboards,
    headline_metrics,
    kendall_tau,
    metric_order,
    rank_table,
    render_csv,
    render_latex,
    stable_seed,
    summarise,
    write_results_readme,
)
from benchmark.report.fixtures import COLOR, COLOR_SKIP, LANGUAGE, PSY, PSY_Q, VISION, sample_tables, write_sample_run
from benchmark.results import SCHEMA_VERSION, read_tables, write_tables

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FILES = [
    "overall.md",
    "stability.md",
    "shapes_cnn__conv2__shapes.md",
    "shapes_cnn__conv2__shapes.csv",
    "shapes_cnn__conv2__shapes.tex",
    "bytes_1l__mlp__textmix.md",
]


@pytest.fixture(scope="module")
def tables():
    return sample_tables()


@pytest.fixture(scope="module")
def boards(tables):
    return compute_leaderboards(*tables)


def _row(table, label):
    return next(r for r in table.rows if r.values.get("method") == label)


# -- intervals -------------------------------------------------------------------------------------
def test_bootstrap_interval_equals_the_exact_bootstrap_quantiles_for_odd_n():
    # n = 9 distinct values: the resample median is x_(j) with P(median <= x_(j)) = P(Bin(9, j/9) >= 5)
    x = np.array([3.0, -1.0, 4.0, 1.5, 9.0, 2.6, 5.0, -3.0, 0.5])
    lo, hi = bootstrap_median_ci(x, n_boot=20_000, seed=3)
    xs = np.sort(x)
    cdf = np.array([binom.sf(4, 9, j / 9) for j in range(1, 10)])  # P(at least 5 draws <= x_(j))
    assert lo == xs[np.argmax(cdf >= 0.025)]  # x_(3): cdf(x_(2)) = 0.011, cdf(x_(3)) = 0.145
    assert hi == xs[np.argmax(cdf >= 0.975)]  # x_(7)


@pytest.mark.parametrize("n", [2, 10, 64, 257])
def test_bootstrap_interval_matches_direct_resampling(n):
    x = np.random.default_rng(n).standard_t(3, size=n)
    lo, hi = bootstrap_median_ci(x, n_boot=40_000, seed=1)
    rng = np.random.default_rng(2)
    direct = np.median(x[rng.integers(0, n, size=(40_000, n))], axis=1)
    d_lo, d_hi = np.percentile(direct, [2.5, 97.5])
    tol = 0.08 * (np.percentile(x, 75) - np.percentile(x, 25)) + 1e-12
    assert abs(lo - d_lo) < tol and abs(hi - d_hi) < tol


def test_bootstrap_handles_nans_and_empty():
    assert all(math.isnan(v) for v in bootstrap_median_ci(np.array([np.nan, np.nan])))
    lo, hi = bootstrap_median_ci(np.array([1.0, np.nan, 1.0, 1.0]))
    assert lo == hi == 1.0


def test_summary_cells_are_median_and_seeded_bootstrap_over_pooled_directions(tables):
    scores, _ = tables
    summary = summarise(scores)
    key = (*VISION, "pca", "{}", PSY)
    row = summary.set_index(["model", "layer", "dataset", "method", "method_params", "metric"]).loc[key]
    values = scores[(scores["model"] == VISION[0]) & (scores["method"] == "pca") & (scores["metric"] == PSY)][
        "value"
    ].to_numpy()
    assert len(values) == 27  # 9 directions x 3 seeds pooled
    assert row["median"] == pytest.approx(0.80)  # planted
    # the planted seeds agree, so the rerun interval is the direction bootstrap it must contain
    assert (row["lo"], row["hi"]) == bootstrap_median_ci(values, seed=stable_seed(*key))
    assert row["lo"] < 0.80 < row["hi"] and row["interval"] == "seeds"
    assert row["chance"] == 0.5 and row["n_values"] == 27 and row["n_seeds"] == 3


# -- ranks -----------------------------------------------------------------------------------------
def test_planted_ranks_on_the_vision_task(boards):
    table = next(t for t in boards.tasks if t.task == VISION)
    ranks = {r.values["method"]: r.values["rank"] for r in table.rows if r.kind == "method"}
    # planted order on both ranked metrics: pca > sae k=4 > sae k=2 > sae k=8 > neurons > random
    assert ranks == {
        "pca": 1.0,
        "sae_topk(k=4)": 2.0,
        "sae_topk(k=2)": 3.0,
        "sae_topk(k=8)": 4.0,
        "neurons": 5.0,
        "random": 6.0,
    }


def test_ties_share_their_mean_rank_and_both_win():
    scores, fits = sample_tables(seeds=(0,))
    scores = scores[scores["model"] == VISION[0]].copy()
    # make neurons and pca identical on every metric: a tie for first on each
    pca = scores[scores["method"] == "pca"].copy()
    scores = scores[scores["method"] != "neurons"]
    scores = pd.concat([scores, pca.assign(method="neurons")], ignore_index=True)
    ranks = rank_table(summarise(scores))
    r = ranks.groupby("method")["rank"].unique()
    assert list(r["pca"]) == [1.5] and list(r["neurons"]) == [1.5]
    overall = compute_leaderboards(scores, fits).overall
    wins = {row.values["method"]: row.values["wins"] for row in overall.rows}
    assert wins["pca"] == wins["neurons"] == 2


def test_overall_is_the_mean_rank_over_tasks_and_headline_metrics(boards, tables):
    overall = boards.overall
    rows = {r.values["method"]: r.values for r in overall.rows}
    # vision: 2 ranked metrics (color, psychophysics headline); language: 1 (color skipped, q=0.25 not ranked)
    assert all(v["n_ranked"] == 3 for v in rows.values())
    ranks = rank_table(summarise(tables[0]))
    pca = ranks[ranks["method"] == "pca"]["rank"]
    assert rows["pca"]["mean_rank"] == pytest.approx(pca.mean())
    positions = [r.values["position"] for r in overall.rows]
    means = [r.values["mean_rank"] for r in overall.rows]
    assert positions == list(range(1, len(positions) + 1)) and means == sorted(means)


def test_extra_quantile_columns_are_shown_but_not_ranked():
    metrics = [PSY_Q, COLOR, PSY, "x[q=0.25]", "y[psychophysics n=3 q=0.1]"]
    assert headline_metrics(metrics) == [COLOR, PSY, "x[q=0.25]", "y[psychophysics n=3 q=0.1]"]
    assert metric_order([PSY_Q, PSY, COLOR]) == [COLOR, PSY, PSY_Q]


# -- arrows, best, chance, skipped ---------------------------------------------------------------
def test_arrows_and_best_follow_higher_is_better(tables):
    scores, fits = tables
    scores = scores.copy()
    lower = scores["metric"] == COLOR
    scores.loc[lower, "higher_is_better"] = False  # now lower is better: random wins
    table = next(t for t in compute_leaderboards(scores, fits).tasks if t.task == VISION)
    col = next(c for c in table.columns if c.key == COLOR)
    assert col.arrow == "↓" and next(c for c in table.columns if c.key == PSY).arrow == "↑"
    best = [r.values["method"] for r in table.rows if r.kind == "method" and r.values[COLOR].best]
    assert best == ["random"]


def test_best_is_bold_and_interval_with_chance_gets_a_dagger(boards):
    table = next(t for t in boards.tasks if t.task == VISION)
    md = (GOLDEN / "shapes_cnn__conv2__shapes.md").read_text() if not _updating() else ""
    cell = _row(table, "pca").values[PSY]
    assert cell.best and not cell.includes_chance
    random_q = _row(table, "random").values[PSY_Q]  # planted at 0.50 = chance
    assert random_q.includes_chance and random_q.text().endswith(DAGGER)
    if md:
        assert f"**{cell.text()}**" in md


def test_metric_skipped_for_the_whole_task_gets_a_note_not_a_column(boards):
    table = next(t for t in boards.tasks if t.task == LANGUAGE)
    assert COLOR not in [c.key for c in table.columns]
    reason = COLOR_SKIP.removeprefix("skipped: ")
    assert any(COLOR.split("[")[0] in n and reason in n and "Not applicable" in n for n in table.notes)
    assert reason in render_latex(table).replace("\\", "")
    csv = pd.read_csv(pd.io.common.StringIO(render_csv(table)))
    assert not [c for c in csv.columns if c.startswith(COLOR.split("[")[0])]


def test_chance_row_and_fit_columns(boards):
    table = next(t for t in boards.tasks if t.task == VISION)
    chance = next(r for r in table.rows if r.kind == "chance")
    assert chance.values[PSY].text() == "0.500 ± 0.020"
    sae = _row(table, "sae_topk(k=4)").values
    assert sae["l0"] == 4.0 and sae["fvu"] == pytest.approx(0.125) and sae["accuracy_recovered"] == pytest.approx(0.94)
    keys = [c.key for c in table.columns]
    assert keys[-7:] == ["k", "fvu", "l0", "dead_fraction", "undetermined", "fit_seconds", "accuracy_recovered"]


# -- stability -------------------------------------------------------------------------------------
def test_kendall_tau_b_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        ref = kendalltau(a, b).statistic
        ours = kendall_tau(a, b)
        assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref)


def test_unstable_task_is_flagged(boards):
    stab = boards.stability_frame.set_index("task")
    assert stab.loc[" / ".join(VISION), "tau_mean"] == pytest.approx(1.0)
    assert stab.loc[" / ".join(LANGUAGE), "tau_mean"] < 0.6 and stab.loc[" / ".join(LANGUAGE), "unstable"]
    assert not stab.loc[" / ".join(VISION), "unstable"]
    assert "Unstable across seeds" in " ".join(boards.overall.notes)
    lang = next(t for t in boards.tasks if t.task == LANGUAGE)
    assert "unstable: tau < 0.6" in " ".join(lang.notes)


def test_one_seed_has_no_stability_rows():
    boards = compute_leaderboards(*sample_tables(seeds=(0,)))
    assert boards.stability.rows == [] and "Only one seed" in boards.stability.notes[0]


# -- files -----------------------------------------------------------------------------------------
def _updating() -> bool:
    return os.environ.get("INTERPBENCH_UPDATE_GOLDEN") == "1"


def test_golden_files(tables, tmp_path):
    build_leaderboards(*tables, tmp_path)
    if _updating():
        GOLDEN.mkdir(exist_ok=True)
        for name in GOLDEN_FILES:
            (GOLDEN / name).write_bytes((tmp_path / name).read_bytes())
    for name in GOLDEN_FILES:
        assert (tmp_path / name).read_text(encoding="utf-8") == (GOLDEN / name).read_text(encoding="utf-8"), name


def test_regeneration_is_byte_identical_whatever_the_row_order(tables, tmp_path):
    scores, fits = tables
    build_leaderboards(scores, fits, tmp_path / "a")
    shuffled = scores.sample(frac=1.0, random_state=7).reset_index(drop=True)
    build_leaderboards(shuffled, fits.iloc[::-1].reset_index(drop=True), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) == 14
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_csv_is_numeric_for_pandas(tables, tmp_path):
    build_leaderboards(*tables, tmp_path)
    df = pd.read_csv(tmp_path / "shapes_cnn__conv2__shapes.csv")
    pca = df[df["method"] == "pca"].iloc[0]
    assert pca[PSY] == pytest.approx(0.8) and pca[f"{PSY} chance"] == 0.5 and bool(pca[f"{PSY} best"])
    assert pca["method_params"] == "{}" and df["rank"].dtype.kind in "if" and pca["rank"] == 1
    long = pd.read_csv(tmp_path / "summary.csv")
    assert {"median", "lo", "hi", "chance", "rank", "status"} <= set(long.columns)


def test_latex_escapes_and_uses_booktabs(boards):
    tex = render_latex(next(t for t in boards.tasks if t.task == VISION))
    assert "\\toprule" in tex and "\\textbf{0.800" in tex and "label\\_consistency" in tex
    assert "$\\uparrow$" in tex and "±" not in tex


def test_other_schema_version_is_a_clear_error(tables, tmp_path):
    scores, fits = tables
    write_tables(tmp_path, scores.assign(schema_version=SCHEMA_VERSION + 1), fits)
    with pytest.raises(UserError, match=r"schema_version.*re-run"):
        read_tables(tmp_path)
    assert main(["leaderboard", str(tmp_path)]) == 2


def test_cli_formats(tables, tmp_path, capsys):
    write_tables(tmp_path, *tables)
    assert main(["leaderboard", str(tmp_path), "--format", "latex", "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert out.count("\\begin{table}") == 4  # overall, stability, two tasks
    assert main(["leaderboard", str(tmp_path), "--format", "csv"]) == 0
    assert "label_consistency[psychophysics] ci_low" in capsys.readouterr().out
    assert (tmp_path / "leaderboards" / "overall.tex").exists()


def test_results_readme(tmp_path):
    write_sample_run(tmp_path / "run")
    path = write_results_readme(tmp_path / "run", tmp_path / "results")
    text = path.read_text()
    for part in (
        "## What was run",
        "## Environment",
        "| interpbench | 0 |",
        "## Overall ranking",
        "sae_topk(k in [2, 4, 8])",
    ):
        assert part in text, part
    assert "(plots/shapes_cnn__conv2__shapes__pareto.png)" in text
    assert (tmp_path / "results" / "leaderboards" / "overall.csv").exists()
    assert (tmp_path / "results" / "plots" / "bytes_1l__mlp__textmix__scores.svg").exists()
    first = {p: p.read_bytes() for p in sorted((tmp_path / "results").rglob("*")) if p.is_file()}
    (tmp_path / "results" / "README.md").unlink()
    write_results_readme(tmp_path / "run", tmp_path / "results")  # figures: same tables, not redrawn
    second = {p: p.read_bytes() for p in sorted((tmp_path / "results").rglob("*")) if p.is_file()}
    assert first == second
    assert "CHANGES.md" not in second[tmp_path / "results" / "README.md"].decode()
    # a hand-written changelog beside it is linked, and left as it is
    (tmp_path / "results" / "CHANGES.md").write_text("# what moved\n")
    (tmp_path / "results" / "README.md").unlink()
    text = write_results_readme(tmp_path / "run", tmp_path / "results").read_text()
    assert "[CHANGES.md](CHANGES.md)" in text
    assert (tmp_path / "results" / "CHANGES.md").read_text() == "# what moved\n"


def test_hygiene_counts_reach_the_readme_the_leaderboard_notes_and_the_report(tmp_path):
    import json

    from benchmark.report.build import build_report
    from benchmark.report.fixtures import VISION

    write_sample_run(tmp_path / "run")
    hygiene = {"n_input": 70, "n_kept": 60, "blank": 1, "exact_duplicates": 5, "near_duplicates": 3,
               "label_conflicts": 1, "removed": 10}  # fmt: skip
    manifests = {"/".join(VISION): {"name": "shapes", "stimuli": 60, "hygiene": hygiene}}
    (tmp_path / "run" / "datasets.json").write_text(json.dumps(manifests))
    text = write_results_readme(tmp_path / "run", tmp_path / "results").read_text()
    assert "70 -> 60 (5 exact, 3 near, 1 blank, 1 label conflicts)" in text
    note = "Stimuli: 60 distinct after hygiene (removed 10 of 70: 5 exact duplicates, 3 near-duplicates"
    assert note in text
    assert note in (tmp_path / "results" / "leaderboards" / "shapes_cnn__conv2__shapes.md").read_text()
    html = build_report(tmp_path / "run", tmp_path / "report").read_text()
    assert "70 -&gt; 60 (5 exact" in html and note in html
