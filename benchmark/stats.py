"""The statistics behind a leaderboard cell: seeds, the direction bootstrap and the rerun interval.

A cell is the median of the per-direction scores of all seeds pooled. Two intervals go with it:

- :func:`bootstrap_median_ci`: the percentile bootstrap over directions, as if the ``seeds x k``
  pooled directions were independent draws. It ignores seed-to-seed variation (another seed fits
  another basis), so a rerun with new seeds falls outside it far more often than 5% of the time.
- :func:`seed_prediction_halfwidth` and :func:`rerun_interval`: the **rerun interval**, a t-based
  prediction interval from the per-seed medians for the cell median of a rerun with as many new
  seeds, widened where needed to contain the direction interval. It is what ``interpbench
  compare`` checks a rerun against, and what the leaderboards publish when a cell has two or
  more seeds.

Why a prediction interval and not a hierarchical bootstrap: with the 3 seeds of the default
benchmark, resampling seeds with replacement sees only ``(S - 1) / S`` of the between-seed
variance and nothing of the uncertainty of that variance; in a simulation with planted seed
offsets a hierarchical-bootstrap interval held only about 65% of fresh reruns, the direction
bootstrap 17-86%, the t prediction interval 94-96% at every offset size (see
``tests/benchmark/test_stats.py``). Everything here is vectorised over cells and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

N_BOOT = 10_000
CI_LEVEL = 0.95

#: how a cell's interval was made (the ``interval`` column of the summary table)
INTERVAL_SEEDS = "seeds"
INTERVAL_DIRECTIONS = "directions"


def stable_seed(*parts: Any) -> int:
    """A 32-bit seed from the JSON of ``parts`` (same parts, same seed, on every machine)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def bootstrap_median_ci(
    values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values [m]`` (NaNs dropped).

    The bootstrap distribution is that of ``np.median`` of ``m`` values drawn with replacement,
    sampled ``n_boot`` times; the interval is its ``(1 - level) / 2`` and ``(1 + level) / 2``
    percentiles (linear interpolation). ``(nan, nan)`` when no value is finite.

    Each resample's median is drawn directly, in O(1) instead of O(m): drawing ``m`` indices
    uniformly is ``floor(m * U)`` for ``m`` iid uniforms ``U``, and the middle order statistics of
    uniforms are ``U_(r) ~ Beta(r, m - r + 1)`` and ``U_(r+1) = U_(r) + (1 - U_(r)) Beta(1, m - r)``;
    the median is the sorted value at ``floor(m U_(r))`` (odd ``m``, ``r = (m + 1) / 2``) or the
    mean of those at ``U_(r)`` and ``U_(r+1)`` (even ``m``, ``r = m / 2``). Same distribution as
    resampling, without the ``n_boot x m`` work (tests check both agree).
    """
    v = np.sort(np.asarray(values, dtype=float).ravel())
    v = v[np.isfinite(v)]
    m = len(v)
    if m == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    r = (m + 1) // 2
    u_low = rng.beta(r, m - r + 1, size=n_boot)
    low = v[np.minimum((u_low * m).astype(np.int64), m - 1)]
    if m % 2:
        medians = low
    else:
        u_high = u_low + (1.0 - u_low) * rng.beta(1, m - r, size=n_boot)
        medians = (low + v[np.minimum((u_high * m).astype(np.int64), m - 1)]) / 2
    lo, hi = np.percentile(medians, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def t_quantile(p: float, df: np.ndarray) -> np.ndarray:
    """Student-t quantile ``[n]`` for degrees of freedom ``df [n]`` (NaN where ``df < 1``)."""
    from scipy.stats import t  # scipy comes with scikit-learn; imported only when needed

    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, math.nan)
    ok = df >= 1
    out[ok] = t.ppf(p, df[ok])
    return out


def seed_prediction_halfwidth(
    cell: np.ndarray, seed_median: np.ndarray, n_cells: int, n_new: int | None = None, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Half-width ``[n_cells]`` of the t prediction interval of a rerun's cell median, and the
    number of seeds ``[n_cells]`` it is based on.

    ``cell [m]`` (ints in ``[0, n_cells)``) and ``seed_median [m]``: one row per (cell, seed), the
    median of that seed's directions (non-finite rows are ignored). With ``S`` seeds of mean ``x̄``
    and standard deviation ``s``, the mean of ``n_new`` new seeds' medians falls within
    ``t_{S-1, (1+level)/2} * s * sqrt(1/S + 1/n_new)`` of ``x̄`` with probability ``level``
    (normal seeds); ``n_new`` defaults to ``S`` (a rerun of the same grid), ``n_new = 1`` gives
    the interval of a single new seed. The half-width is NaN where ``S < 2`` (no seed spread to
    measure). Sums run in the order of the rows, so the same rows give the same bits.
    """
    cell = np.asarray(cell, dtype=np.int64)
    x = np.asarray(seed_median, dtype=float)
    use = np.isfinite(x)
    cell, x = cell[use], x[use]
    n = np.bincount(cell, minlength=n_cells).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(cell, weights=x, minlength=n_cells) / n
        ss = np.bincount(cell, weights=(x - mean[cell]) ** 2, minlength=n_cells)
        sd = np.sqrt(ss / (n - 1))
        new = n if n_new is None else np.full(n_cells, float(n_new))
        half = t_quantile((1 + level) / 2, n - 1) * sd * np.sqrt(1 / n + 1 / new)
    half[n < 2] = math.nan
    return half, n.astype(np.int64)


def rerun_interval(
    median: np.ndarray, lo: np.ndarray, hi: np.ndarray, halfwidth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The published interval ``(lo, hi, kind)`` of each cell ``[n]``.

    Where ``halfwidth`` is finite (two or more seeds): ``median ± halfwidth``, widened to contain
    the direction interval ``[lo, hi]`` (so seeds that happen to agree never give an interval
    narrower than the directions' own noise); ``kind`` is :data:`INTERVAL_SEEDS`. Elsewhere (one
    seed) the direction interval as it is, ``kind`` :data:`INTERVAL_DIRECTIONS`; ``kind`` is ``""``
    for a cell without a median. Centred on the cell median, which a rerun's cell median is
    compared with (the planted-offset simulation in the tests holds the nominal rate this way).
    """
    median, lo, hi, halfwidth = (np.asarray(a, dtype=float) for a in (median, lo, hi, halfwidth))
    seeds = np.isfinite(halfwidth) & np.isfinite(median)
    out_lo = np.where(seeds, np.fmin(median - halfwidth, lo), lo)
    out_hi = np.where(seeds, np.fmax(median + halfwidth, hi), hi)
    kind = np.where(seeds, INTERVAL_SEEDS, np.where(np.isfinite(median), INTERVAL_DIRECTIONS, "")).astype(object)
    return out_lo, out_hi, kind
