"""``interpbench compare``: planted medians and intervals give a known coverage, rank-1 changes
and exit status; errors exit 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.compare import compare, load_cells
from benchmark.report.fixtures import sample_tables
from benchmark.results import write_tables

TASK_A = ("shapes_cnn", "conv4", "shapes")
TASK_B = ("bytes_1l", "mlp", "textmix")
METHODS = ["kmeans", "neurons", "pca", "random"]
METRICS = ["label_consistency[consistency]", "token_consistency"]


def _summary(medians: dict[tuple, float], half: float = 0.1) -> pd.DataFrame:
    """A leaderboard summary: one row per (task, method, metric) with ``median ± half``."""
    rows = [
        {
            "model": t[0], "layer": t[1], "dataset": t[2], "method": method, "method_params": "{}",
            "metric": metric, "median": m, "lo": m - half, "hi": m + half, "chance": 0.0, "chance_std": 0.1,
            "higher_is_better": True, "status": "ok", "n_values": 27, "n_seeds": 3,
        }
        for (t, method, metric), m in medians.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _planted() -> tuple[dict, dict]:
    """Reference medians 1, 2, 3, 4 (kmeans .. random) on every (task, metric); the run equals it
    except 3 cells of TASK_A moved out of their interval (one of them makes pca beat random)."""
    ref = {(t, m, metric): float(i + 1) for t in (TASK_A, TASK_B) for i, m in enumerate(METHODS) for metric in METRICS}
    run = dict(ref)
    run[(TASK_A, "kmeans", METRICS[0])] = 1.5
    run[(TASK_A, "neurons", METRICS[1])] = 1.5
    run[(TASK_A, "pca", METRICS[1])] = 4.5
    run[(TASK_B, "pca", METRICS[0])] = 3.05  # inside
    return ref, run


def _write(folder: Path, summary: pd.DataFrame, leaderboards: bool = True) -> Path:
    out = folder / "leaderboards" if leaderboards else folder
    out.mkdir(parents=True)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    return folder


def test_planted_coverage_and_rank1_changes():
    ref, run = _planted()
    result = compare(_summary(run), _summary(ref))
    per_task = result.per_task.set_index("task")
    assert result.cells == 16 and result.inside == 13 and result.coverage == pytest.approx(13 / 16)
    assert per_task.loc["shapes_cnn / conv4 / shapes", "coverage"] == pytest.approx(5 / 8)
    assert per_task.loc["bytes_1l / mlp / textmix", "coverage"] == 1.0
    assert list(result.changes["metric"]) == [METRICS[1]] and result.changes["reference"].iloc[0] == "random"
    assert result.changes["run"].iloc[0] == "pca" and result.missing == 0


def test_cli_exit_status_follows_min_coverage(tmp_path, capsys):
    ref, run = _planted()
    reference = _write(tmp_path / "results", _summary(ref))
    rerun = _write(tmp_path / "rerun", _summary(run), leaderboards=False)
    assert main(["compare", str(rerun), str(reference)]) == 1  # 0.8125 < 0.9
    captured = capsys.readouterr()
    assert "overall coverage: 0.812 (13 of 16 ranked cells)" in captured.out
    assert "pca" in captured.out and captured.err.count("\n") == 1 and "below --min-coverage 0.9" in captured.err
    assert main(["compare", str(rerun), str(reference), "--min-coverage", "0.8"]) == 0
    assert main(["compare", str(reference), str(reference)]) == 0  # itself: every median inside


def test_default_reference_is_the_results_folder(tmp_path, monkeypatch, capsys):
    ref, _ = _planted()
    _write(tmp_path / "results", _summary(ref))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "results"]) == 0
    assert "reference: results/leaderboards/summary.csv" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "not a run" in err and err.count("\n") == 1
    ref, _ = _planted()
    a = _write(tmp_path / "a", _summary({k: v for k, v in ref.items() if k[0] == TASK_A}))
    b = _write(tmp_path / "b", _summary({k: v for k, v in ref.items() if k[0] == TASK_B}))
    assert main(["compare", str(a), str(b)]) == 2
    assert "no ranked cell in common" in capsys.readouterr().err


def test_run_directories_are_recomputed_with_either_interval(tmp_path):
    scores, fits = sample_tables()
    write_tables(tmp_path / "run", scores, fits)
    rerun = load_cells(tmp_path / "run")
    directions = load_cells(tmp_path / "run", interval="directions")
    ok = rerun.summary["status"] == "ok"
    assert set(rerun.summary["interval"][ok]) == {"seeds"} and set(rerun.summary["interval"][~ok]) == {""}
    assert set(directions.summary["interval"][ok]) == {"directions"}
    widths = (rerun.summary["hi"] - rerun.summary["lo"]) >= (directions.summary["hi"] - directions.summary["lo"])
    assert widths[ok].all()  # the rerun interval contains the direction interval
    result = compare(rerun.summary, directions.summary)
    assert result.coverage == 1.0 and result.changes.empty


def test_rounded_summary_csv_still_counts_its_own_medians_inside(tmp_path):
    # an interval that collapses on its median, written with 6 significant digits
    ref = _summary({(TASK_A, "pca", METRICS[0]): 0.123456789}, half=0.0)
    folder = _write(tmp_path / "r", ref)
    result = compare(ref, load_cells(folder).summary)
    assert result.coverage == 1.0
