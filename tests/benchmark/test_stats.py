"""benchmark.stats: the rerun interval (t prediction interval from per-seed medians) against
planted seed offsets, its determinism, NaN handling and the one-seed fallback."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t

from benchmark.leaderboard import interval_note, summarise
from benchmark.stats import (
    INTERVAL_DIRECTIONS,
    INTERVAL_SEEDS,
    bootstrap_median_ci,
    rerun_interval,
    seed_prediction_halfwidth,
    stable_seed,
)


def test_halfwidth_is_the_t_prediction_interval_by_hand():
    # cell 0: three seeds; cell 1: one seed (no spread: NaN); cell 2: a NaN seed is ignored
    cell = np.array([0, 0, 0, 1, 2, 2, 2])
    med = np.array([1.0, 2.0, 4.0, 5.0, 1.0, np.nan, 3.0])
    half, n = seed_prediction_halfwidth(cell, med, 3)
    sd0 = np.std([1.0, 2.0, 4.0], ddof=1)
    assert half[0] == pytest.approx(t.ppf(0.975, 2) * sd0 * math.sqrt(2 / 3))
    assert math.isnan(half[1])
    assert half[2] == pytest.approx(t.ppf(0.975, 1) * np.std([1.0, 3.0], ddof=1) * 1.0)
    assert list(n) == [3, 1, 2]
    one, _ = seed_prediction_halfwidth(cell, med, 3, n_new=1)  # a single new seed: sqrt(1/3 + 1)
    assert one[0] == pytest.approx(t.ppf(0.975, 2) * sd0 * math.sqrt(4 / 3))


def test_rerun_interval_contains_the_direction_interval_and_falls_back_with_one_seed():
    lo, hi, kind = rerun_interval(
        np.array([1.0, 1.0, 1.0, np.nan]),
        np.array([0.5, 0.9, 0.8, np.nan]),
        np.array([1.5, 1.1, 1.3, np.nan]),
        np.array([0.2, 0.3, np.nan, np.nan]),
    )
    assert list(lo[:3]) == [0.5, 0.7, 0.8] and list(hi[:3]) == [1.5, 1.3, 1.3]
    assert list(kind) == [INTERVAL_SEEDS, INTERVAL_SEEDS, INTERVAL_DIRECTIONS, ""]
    assert math.isnan(lo[3]) and math.isnan(hi[3])


def _planted(rng: np.random.Generator, n_cells: int, n_seeds: int, k: int, offset_sd: float) -> np.ndarray:
    """Scores ``[n_cells, n_seeds, k]``: per seed a planted offset ~ N(0, offset_sd), then k
    heavy-tailed direction scores around it."""
    offsets = rng.normal(0, offset_sd, size=(n_cells, n_seeds, 1))
    return offsets + rng.standard_t(4, size=(n_cells, n_seeds, k))


def _intervals(x: np.ndarray, n_new: int | None = None) -> tuple[np.ndarray, ...]:
    """Old (directions) and new (rerun) intervals of each cell of ``x [n_cells, S, k]``."""
    n_cells, n_seeds, _ = x.shape
    median = np.median(x.reshape(n_cells, -1), axis=1)
    d = np.array([bootstrap_median_ci(c.ravel(), n_boot=2000, seed=i) for i, c in enumerate(x)])
    cell = np.repeat(np.arange(n_cells), n_seeds)
    half, _ = seed_prediction_halfwidth(cell, np.median(x, axis=2).ravel(), n_cells, n_new=n_new)
    lo, hi, _ = rerun_interval(median, d[:, 0], d[:, 1], half)
    return d[:, 0], d[:, 1], lo, hi


@pytest.mark.parametrize("offset_sd", [0.0, 1.0])
def test_rerun_interval_holds_a_fresh_rerun_at_the_nominal_rate_and_the_old_one_does_not(offset_sd):
    rng = np.random.default_rng(7)
    n_cells, n_seeds, k = 400, 3, 32
    old_lo, old_hi, lo, hi = _intervals(_planted(rng, n_cells, n_seeds, k, offset_sd))
    rerun = np.median(_planted(rng, n_cells, n_seeds, k, offset_sd).reshape(n_cells, -1), axis=1)
    new_cover = np.mean((lo <= rerun) & (rerun <= hi))
    old_cover = np.mean((old_lo <= rerun) & (rerun <= old_hi))
    assert 0.91 <= new_cover <= 0.99, new_cover  # nominal 0.95 (400 cells: sd 0.011)
    if offset_sd > 0:
        assert old_cover < 0.5, old_cover  # the direction bootstrap ignores seed-to-seed variation
    else:
        assert old_cover < 0.92, old_cover  # even without offsets: a CI is not a prediction interval


def test_single_new_seed_interval_holds_a_fresh_seed_median():
    rng = np.random.default_rng(11)
    n_cells, n_seeds, k = 400, 3, 32
    _, _, lo, hi = _intervals(_planted(rng, n_cells, n_seeds, k, 1.0), n_new=1)
    fresh = np.median(_planted(rng, n_cells, 1, k, 1.0).reshape(n_cells, -1), axis=1)
    assert 0.91 <= np.mean((lo <= fresh) & (fresh <= hi)) <= 0.99


def _scores(n_seeds: int, offsets=(0.0, 0.3, -0.2), nan_seed: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        values = 0.6 + offsets[seed] + rng.normal(0, 0.05, size=16)
        if seed == nan_seed:
            values[:] = np.nan
        for d, v in enumerate(values):
            rows.append(
                {
                    "model": "m", "layer": "l", "dataset": "d", "method": "pca", "method_params": "{}",
                    "metric": "label", "seed": seed, "direction": d, "value": v, "higher_is_better": True,
                    "chance_mean": 0.5, "chance_std": 0.1, "status": "ok",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_uses_the_rerun_interval_and_is_deterministic():
    scores = _scores(3)
    a = summarise(scores)
    b = summarise(scores.sample(frac=1.0, random_state=3).reset_index(drop=True))
    pd.testing.assert_frame_equal(a, b)
    row = a.iloc[0]
    per_seed = scores.groupby("seed")["value"].median().to_numpy()
    half = t.ppf(0.975, 2) * np.std(per_seed, ddof=1) * math.sqrt(2 / 3)
    key = ("m", "l", "d", "pca", "{}", "label")
    d_lo, d_hi = bootstrap_median_ci(scores["value"].to_numpy(), seed=stable_seed(*key))
    assert row["interval"] == INTERVAL_SEEDS
    assert row["lo"] == pytest.approx(min(row["median"] - half, d_lo))
    assert row["hi"] == pytest.approx(max(row["median"] + half, d_hi))
    assert row["hi"] - row["lo"] > 3 * (d_hi - d_lo)  # the planted seed offsets widen it
    assert "rerun interval" in interval_note(a)


def test_one_seed_falls_back_to_the_direction_bootstrap_and_says_so():
    scores = _scores(1)
    row = summarise(scores).iloc[0]
    key = ("m", "l", "d", "pca", "{}", "label")
    assert row["interval"] == INTERVAL_DIRECTIONS
    assert (row["lo"], row["hi"]) == bootstrap_median_ci(scores["value"].to_numpy(), seed=stable_seed(*key))
    assert "one seed, so it does not cover seed-to-seed variation" in interval_note(summarise(scores))


def test_a_seed_without_finite_values_does_not_count():
    # seed 2 all NaN: two seeds left, so still a seed interval, from those two
    row = summarise(_scores(3, nan_seed=2)).iloc[0]
    assert row["interval"] == INTERVAL_SEEDS and row["n_values"] == 32
    only_one = summarise(_scores(2, nan_seed=1)).iloc[0]
    assert only_one["interval"] == INTERVAL_DIRECTIONS and np.isfinite(only_one["lo"])
