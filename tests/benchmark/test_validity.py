"""The validity study: planted features are recovered by the metrics and the methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.data.shapes import FACTORS, Shapes
from benchmark.results import SCHEMA_VERSION, read_tables, write_tables
from benchmark.validity import (
    auc,
    bootstrap_diff,
    check_quick,
    mean_max_cosine,
    planted_from_factors,
    ranking_stability,
    run_study,
    synthesize,
    verdict,
    write_page,
)


def test_auc_matches_definition():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([1.0, 2.0]), np.array([3.0]), higher_is_better=False) == 1.0


def test_synthesize_plants_features():
    planted = planted_from_factors("shapes", Shapes(n=500, size=16), FACTORS)
    acts, W = synthesize(planted, superposition=1.0, noise=0.0, seed=0, density=1.0)
    assert W.shape == (planted.n_features, planted.n_features) and acts.shape == (500, planted.n_features)
    # with no noise and density 1, activations are a non-negative combination of present features
    coef = np.linalg.lstsq(W.numpy().T, acts.T, rcond=None)[0].T  # [n, F]
    assert np.all((coef > 0.45) == (planted.presence > 0))


def test_mean_max_cosine_both_ways():
    true = torch.eye(4)
    fwd, rev, per = mean_max_cosine(true, torch.eye(4)[:2])
    assert fwd == 0.5 and rev == 1.0 and per.tolist() == [1.0, 1.0]


def test_bootstrap_diff_and_verdict():
    rng = np.random.default_rng(0)
    d, lo, hi = bootstrap_diff(rng.normal(1, 0.1, 200), rng.normal(0, 0.1, 200))
    assert lo < d < hi and lo > 0.9
    table = pd.DataFrame({"lo": [0.1, 0.2], "hi": [0.3, 0.4]})
    assert verdict(table) == "reproduced"
    assert verdict(pd.DataFrame({"lo": [-0.3], "hi": [-0.1]})) == "not reproduced"
    assert verdict(pd.DataFrame({"lo": [0.1, -0.3], "hi": [0.3, -0.1]})) == "mixed"


@pytest.mark.slow
def test_quick_study_oracle_beats_random(tmp_path):
    study = run_study(quick=True, log=lambda m: None)
    assert check_quick(study) == []
    easy = study.auc[(study.auc["noise"] == 0.25) & (study.auc["superposition"] == 1.0)].set_index("metric")
    # planted answers that must come back clearly in the easiest setting
    assert easy.loc["label_consistency[consistency]", "auc_relevant"] >= 0.9
    assert easy.loc["color_consistency[consistency]", "auc_relevant"] >= 0.9
    rec = study.recovery.set_index("method")
    # an overcomplete method recovers the planted features better than the complete baselines
    assert rec.loc["kmeans", "recovery_forward"].iloc[0] > rec.loc["random", "recovery_forward"].iloc[0]
    page = write_page(study, tmp_path, command="interpbench validate --quick", seconds=1.0)
    text = page.read_text()
    assert "## 1. Metrics against planted directions" in text and (tmp_path / "validity" / "auc_vs_noise.png").exists()


def test_ranking_stability_of_tables_read_back(tmp_path):
    """Parts 3-5 read a run's tables (text columns come back as categoricals): methods whose
    medians keep one order in every seed and both protocols give Kendall tau 1."""
    rows = []
    for seed in (0, 1):
        for method, level in [("neurons", 0.2), ("random", 0.4), ("pca", 0.6), ("kmeans", 0.8)]:
            for metric in ("label_consistency[consistency]", "label_consistency[psychophysics]"):
                for direction in range(5):
                    rows.append({
                        "schema_version": SCHEMA_VERSION, "run_id": "r", "model": "shapes_cnn", "layer": "conv2",
                        "dataset": "shapes", "modality": "vision", "method": method, "method_params": "{}",
                        "n_directions": 5, "seed": seed, "metric": metric, "higher_is_better": True,
                        "direction": direction, "value": level + 0.01 * direction + 0.001 * seed,
                        "chance_mean": 0.1, "chance_std": 0.01, "status": "ok",
                    })  # fmt: skip
    scores = pd.DataFrame(rows)
    fits = scores.drop_duplicates(["method", "seed"])[["schema_version", "run_id", "model", "layer", "dataset",
                                                        "modality", "method", "method_params", "n_directions",
                                                        "seed"]].assign(fvu=0.1, explained_variance=0.9, l0=5.0,
                                                                        dead_fraction=0.0, fit_seconds=1.0, n_fit=10,
                                                                        n_probe=10, extra="{}")  # fmt: skip
    write_tables(tmp_path, scores, fits)
    read, _ = read_tables(tmp_path)
    assert isinstance(read["method"].dtype, pd.CategoricalDtype)
    stability = ranking_stability(read)
    assert set(stability["kind"]) == {"seeds", "protocols"}
    assert np.allclose(stability["tau"], 1.0)
