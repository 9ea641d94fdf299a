"""The vision metrics inside the harness: every metric gives rows with a chance level, the
psychophysics band gets its own column (here too small: "insufficient" rows), and a metric that
cannot run is a skipped row."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.runner import Runner

GRID = """
name = "metrics"
seeds = [0]
chance_sets = 8

[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 900, size = 32 }

[[methods]]
name = "pca"
params = { n_components = 6 }

[[metrics]]
name = "color_consistency"
sweep = { protocol = ["consistency", "psychophysics"] }
params = { n_trials = 10, n_references = 5 }  # bands need > 240 samples: q=0 has 450, q=0.25 about 225

[[metrics]]
name = "caption_compressibility"

[[metrics]]
name = "perceptual_consistency"
params = { model = "shapes_cnn_untrained", layers = ["conv1", "conv3"] }

[[metrics]]
name = "lpips_consistency"
params = { weights = "/nonexistent/alexnet-owt-7be5be79.pth" }
"""


@pytest.mark.slow
def test_metrics_in_the_harness(tmp_path):
    res = Runner(
        parse_config(GRID, "metrics.toml"), Cache(tmp_path / "c"), results_dir=tmp_path / "r", progress=False
    ).run()
    df = res.scores
    by_metric = {m: g for m, g in df.groupby("metric")}
    print(sorted(by_metric))
    assert "color_consistency[psychophysics q=0.25]" in by_metric
    for name, g in by_metric.items():
        if name.startswith("lpips_consistency"):
            assert (g["status"].str.startswith("skipped: AlexNet ImageNet weights not found")).all()
            assert g["value"].isna().all()
            continue
        if name == "color_consistency[psychophysics q=0.25]":  # the published band rule, per direction
            assert (
                g["status"]
                .str.fullmatch(
                    r"insufficient: band q=0.25 holds 2\d\d samples, needs more than 240 "
                    r"\(4 x 10 trials x \(5 references \+ 1\)\)"
                )
                .all()
            ), g["status"].iloc[0]
            assert g["value"].isna().all() and np.isfinite(g["chance_mean"]).all()
            continue
        assert (g["status"] == "ok").all(), name
        assert np.isfinite(g["value"]).all() and np.isfinite(g["chance_mean"]).all(), name
    psych = by_metric["color_consistency[psychophysics]"]
    assert abs(psych["chance_mean"].iloc[0] - 0.5) < 0.1
    caption = by_metric["caption_compressibility"]
    assert abs(caption["chance_mean"].iloc[0]) < 3 * caption["chance_std"].iloc[0] + 1
