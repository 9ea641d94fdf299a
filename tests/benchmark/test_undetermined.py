"""Directions whose top set is decided by ties: detected, left out, never a winner.

Planted answers: a code matrix with known ties (the determined depth is computed by hand from a
full sort), and a small task where a basis with 70% dead latents would win a column through its
tied draws if they were scored, built with the real top-k, scoring and leaderboard code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.data.base import StimulusSet
from benchmark.leaderboard import summarise, task_table
from benchmark.results import UNDETERMINED
from benchmark.runner import evaluate, mark_undetermined
from benchmark.topk import limits_from_codes, random_sets, top_examples
from methods.base import LinearBasis
from metrics.base import Ranked, TopExamples
from metrics.label import LabelConsistency

N_TOP = 8


# -- (c) the determined depth on planted ties ------------------------------------------------------
def _planted_codes() -> np.ndarray:
    """``[600, 6]`` codes with known ties at the top (see each column's comment)."""
    rng = np.random.default_rng(0)
    n = 600
    codes = np.zeros((n, 6), dtype=np.float32)  # 0: dead
    codes[rng.choice(n, 5, replace=False), 1] = [5, 4, 3, 2, 1]  # 1: active on 5 < N_TOP samples
    codes[:, 2] = rng.permutation(n) - n / 2  # 2: dense, all distinct
    codes[:, 3] = rng.permutation(n) / n  # 3: a tie at ranks 2-3 above distinct values
    top3 = np.argsort(-codes[:, 3])[:3]
    codes[top3, 3] = [9.0, 7.0, 7.0]
    codes[rng.choice(n, N_TOP, replace=False), 4] = np.arange(N_TOP, 0, -1)  # 4: exactly N_TOP active
    codes[:, 5] = rng.permutation(n) / n  # 5: ranks N_TOP and N_TOP + 1 tie
    top = np.argsort(-codes[:, 5])[: N_TOP + 1]
    codes[top, 5] = np.concatenate([np.arange(N_TOP - 1, 0, -1) + 10.0, [5.0, 5.0]])
    return codes


def _by_hand(column: np.ndarray, m: int, side: str) -> bool:
    """Is the top-``m`` (bottom-``m``) set decided by values? From a full sort."""
    s = np.sort(column)[::-1] if side == "top" else np.sort(column)
    return bool(m >= len(s) or s[m - 1] != s[m])


@pytest.mark.parametrize("quantile", [0.0, 0.25])
def test_determined_sets_match_a_full_sort(quantile):
    codes = _planted_codes()
    store, basis = ActivationStore(codes), LinearBasis(directions=torch.eye(codes.shape[1]))
    r = top_examples(basis, store, N_TOP, (0.0, quantile), batch_size=256, seed=1)[quantile]
    lo, hi = limits_from_codes(torch.from_numpy(codes), (quantile,))[quantile] or (None, None)
    for j in range(codes.shape[1]):
        col = codes[:, j]
        if lo is not None:
            col = col[(col >= lo[j].item()) & (col <= hi[j].item())]
        for side in ("top", "bottom"):
            for m in range(1, N_TOP + 1):
                assert r.determined(m, side)[j] == _by_hand(col, m, side), (j, side, m)
    if quantile == 0.0:  # the planted answers themselves: how many leading top-m sets are determined
        ok = np.stack([r.determined(m) for m in range(1, N_TOP + 1)], axis=1)  # [k, N_TOP]
        depth = np.where(ok.all(axis=1), N_TOP, np.argmin(ok, axis=1))
        assert depth.tolist() == [0, 5, N_TOP, 1, N_TOP, N_TOP - 1]
        assert r.determined(N_TOP).tolist() == [False, False, True, True, True, False]


def test_unknown_next_value_counts_as_determined():
    top = np.arange(6).reshape(2, 3)
    r = Ranked(top, np.zeros((2, 3)), top, np.zeros((2, 3)))  # random sets, hand-made examples
    assert r.determined(3).all() and not r.determined(2).any()


def test_mark_undetermined_keeps_skips():
    v, st = mark_undetermined(np.array([0.5, 0.7, 0.9]), "ok", np.array([True, False, True]))
    assert np.isnan(v[1]) and v[0] == 0.5 and st.tolist() == ["ok", UNDETERMINED, "ok"]
    v, st = mark_undetermined(np.full(2, np.nan), "skipped: no labels", np.array([False, False]))
    assert st.tolist() == ["skipped: no labels"] * 2


# -- (a), (d): a planted task through top-k, scoring and the leaderboard ---------------------------
class _Labelled(StimulusSet):
    """``n`` stimuli with 8 equally frequent labels."""

    provides = frozenset({"labels"})

    def __init__(self, n: int = 800) -> None:
        self.label_of = np.random.default_rng(3).permutation(np.arange(n) % 8)

    def __len__(self) -> int:
        return len(self.label_of)

    def identity(self) -> dict:
        return {"name": "labelled", "n": len(self)}

    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self.label_of[np.asarray(idx)]


def _plant(stimuli: _Labelled, counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """One sparse code ``[n]`` active on 16 samples whose labels come ``counts`` per label."""
    picks = np.concatenate(
        [rng.choice(np.flatnonzero(stimuli.label_of == lab), c, replace=False) for lab, c in enumerate(counts)]
    )
    code = np.zeros(len(stimuli), dtype=np.float32)
    code[rng.permutation(picks)] = np.arange(16, 0, -1)
    return code


def _bases(stimuli: _Labelled) -> dict[str, np.ndarray]:
    """Codes ``[n, 10]`` per basis. Label consistency of 16 samples with ``c`` per label is
    ``sum c (c - 1) / 240``: ``[2] * 8``: 0.067; ``live``'s mixtures 0.092 to 0.108; one label: 1.0;
    a random set (a tied draw): about 99/799 = 0.124."""
    rng = np.random.default_rng(4)
    spread, pure = [2] * 8, [16]
    mixed = [[3, 3, 3, 2, 2, 1, 1, 1], [3, 3, 2, 2, 2, 2, 1, 1], [4, 3, 3, 2, 1, 1, 1, 1]]  # 0.092, 0.1, 0.108
    dead70 = np.zeros((len(stimuli), 10), dtype=np.float32)
    for j in range(3):  # 70% dead, 3 live directions, less coherent than `live`'s
        dead70[:, j] = _plant(stimuli, spread, rng)
    return {
        "dead70": dead70,
        "live": np.stack([_plant(stimuli, mixed[j % 3], rng) for j in range(10)], 1),
        "pure": np.stack([_plant(stimuli, [0] * (j % 8) + pure, rng) for j in range(10)], 1),
        "all_dead": np.zeros((len(stimuli), 10), dtype=np.float32),
    }


def _score_rows(stimuli, method: str, codes: np.ndarray, seed: int) -> pd.DataFrame:
    """Results rows of one basis, as :meth:`benchmark.runner.Runner.run_cell` writes them."""
    metric = LabelConsistency(n=16)
    k = codes.shape[1]
    store, ids = ActivationStore(codes), np.arange(len(stimuli))
    examples = TopExamples(stimuli, top_examples(LinearBasis(directions=torch.eye(k)), store, 16, seed=seed), pool=ids)
    scored, status = evaluate(metric, stimuli, examples)
    values, st = mark_undetermined(scored[""], status, metric.determined_sets(examples)[""])
    chance_sets = TopExamples(stimuli, {0.0: random_sets(ids, 32, 16, seed)}, is_random=True, pool=ids)
    chance = evaluate(metric, stimuli, chance_sets)[0][""]
    return pd.DataFrame(
        {
            "model": "m",
            "layer": "l",
            "dataset": "labelled",
            "method": method,
            "method_params": "{}",
            "seed": seed,
            "metric": "label_consistency",
            "higher_is_better": True,
            "direction": np.arange(k),
            "value": values,
            "chance_mean": chance.mean(),
            "chance_std": chance.std(ddof=1),
            "status": st,
            "raw": scored[""],  # the score of the tied draw too, for the as-if comparison
        }
    )


@pytest.fixture(scope="module")
def planted():
    stimuli = _Labelled()
    rows = pd.concat(
        [_score_rows(stimuli, name, codes, seed) for name, codes in _bases(stimuli).items() for seed in (0, 1)],
        ignore_index=True,
    )
    return rows, summarise(rows).set_index("method")


def test_a_mostly_dead_basis_cannot_win_through_ties(planted):
    rows, summary = planted
    # the plant is sharp: scored as if they had a concept, the tied draws would carry dead70
    # past `live` (the median of its 14 tied draws and 6 live values is above live's median)
    as_if = summarise(rows.assign(value=rows["raw"], status="ok")).set_index("method")
    assert as_if.loc["dead70", "median"] > as_if.loc["live", "median"]
    d = summary.loc["dead70"]
    assert d["status"] == "ok" and d["n_values"] == 6 and d["undetermined"] == pytest.approx(0.7)
    assert d["median"] == pytest.approx(16 / 240) and d["median"] < summary.loc["live", "median"]
    assert summary.loc["all_dead", "status"] == UNDETERMINED and np.isnan(summary.loc["all_dead", "median"])
    # chance is the same for every basis, whatever share of it was undetermined
    assert summary["chance"].nunique() == 1 and np.isfinite(summary.loc["all_dead", "chance"])

    fits = pd.DataFrame(
        [
            {"model": "m", "layer": "l", "dataset": "labelled", "method": name, "method_params": "{}", "seed": 0,
             "n_directions": 10, "fvu": 0.0, "l0": 1.0, "dead_fraction": dead, "fit_seconds": 1.0, "extra": "{}"}
            for name, dead in (("dead70", 0.7), ("live", 0.0), ("pure", 0.0), ("all_dead", 1.0))
        ]
    )  # fmt: skip
    table = task_table(("m", "l", "labelled"), summarise(rows), fits)
    cells = {r.method: r.values for r in table.rows if r.kind == "method"}
    assert [m for m, v in cells.items() if v["label_consistency"].best] == ["pure"]
    assert cells["dead70"]["undetermined"] == pytest.approx(0.7) and cells["all_dead"]["undetermined"] == 1.0
    assert cells["all_dead"]["label_consistency"].text() == UNDETERMINED
    assert "undet." in [c.title for c in table.columns]
    # without `pure`, `live` wins the column, not dead70
    table = task_table(("m", "l", "labelled"), summarise(rows[rows["method"] != "pure"]), fits)
    cells = {r.method: r.values.get("label_consistency") for r in table.rows if r.kind == "method"}
    assert [m for m, c in cells.items() if c is not None and c.best] == ["live"]


def test_zero_width_intervals_only_where_values_are_identical(planted):
    rows, summary = planted
    zero = summary[summary["lo"] == summary["hi"]]
    # pure: all 20 values are 1.0; dead70: its 6 determined values are all 0.067 (its 14 tied
    # draws, which differ from each other, are not in the interval)
    assert sorted(zero.index) == ["dead70", "pure"]
    for method in summary.index[summary["status"] == "ok"]:
        v = rows.loc[(rows["method"] == method) & (rows["status"] == "ok"), "value"].to_numpy()
        assert (np.ptp(v) == 0) == (method in zero.index), method
    # no two bases share a median through a shared "random" draw
    ok = summary[summary["status"] == "ok"]
    assert ok["median"].nunique() == len(ok)


def test_a_mostly_dead_basis_is_not_ranked_on_its_survivors(planted):
    """Left out of the median, undetermined directions would let a mostly dead basis rank on its
    few live ones: 3 perfect survivors of 10 would beat every basis. Such a cell is shown, marked,
    never bold, and ranked last."""
    from benchmark.leaderboard import SURVIVORS, rank_table

    rows, _ = planted
    stimuli, rng = _Labelled(), np.random.default_rng(9)
    codes = np.zeros((len(stimuli), 10), dtype=np.float32)
    for j in range(3):
        codes[:, j] = _plant(stimuli, [0] * j + [16], rng)
    rows = pd.concat([rows, *(_score_rows(stimuli, "survivors", codes, seed) for seed in (0, 1))], ignore_index=True)
    summary = summarise(rows)
    s = summary.set_index("method").loc["survivors"]
    assert s["median"] == 1.0 and s["undetermined"] == pytest.approx(0.7)  # as good as `pure` on what is left
    ranks = rank_table(summary).set_index("method")["rank"]
    # pure and live take ranks 1-2; the three mostly undetermined bases share the last ones (3-5)
    assert ranks.to_dict() == {"pure": 1.0, "live": 2.0, "dead70": 4.0, "all_dead": 4.0, "survivors": 4.0}
    fits = pd.DataFrame(
        [
            {"model": "m", "layer": "l", "dataset": "labelled", "method": name, "method_params": "{}", "seed": 0,
             "n_directions": 10, "fvu": 0.0, "l0": 1.0, "dead_fraction": 0.0, "fit_seconds": 1.0, "extra": "{}"}
            for name in sorted(set(rows["method"]))
        ]
    )  # fmt: skip
    table = task_table(("m", "l", "labelled"), summary, fits)
    cells = {r.method: r.values.get("label_consistency") for r in table.rows if r.kind == "method"}
    assert not cells["survivors"].best and cells["survivors"].text().endswith(SURVIVORS)
    assert [m for m, c in cells.items() if c is not None and c.best] == ["pure"]
