"""The examples in docs/extending.md run, and their plugins reach the results table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "extending.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def run_config(config: Path, results: Path, env: dict) -> pd.DataFrame:
    """``interpbench run --config CONFIG`` in a subprocess with ``env``; the run's scores table."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.cli",
            "run",
            "--config",
            str(config),
            "--results-dir",
            str(results),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return pd.read_parquet(next((results / "runs").iterdir()) / "scores.parquet")


TASK = """
name = "ext"
seeds = [0]
chance_sets = 4

[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 1800, size = 16 }
"""


@pytest.mark.slow
def test_doc_examples_run_and_appear_in_results(tmp_path):
    py = blocks("python")
    assert len(py) == 2
    (tmp_path / "my_methods.py").write_text(py[0])
    (tmp_path / "my_metrics.py").write_text(py[1])
    config_snippet = blocks("toml")[0]
    (tmp_path / "ext.toml").write_text(
        config_snippet.split("\n[[")[0] + "\n" + TASK + "\n[[" + "\n[[".join(config_snippet.split("\n[[")[1:])
    )
    env = {"PYTHONPATH": str(tmp_path), "INTERPBENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    scores = run_config(tmp_path / "ext.toml", tmp_path / "r", env)
    assert set(scores["method"]) == {"top_variance_units"}
    assert set(scores["metric"]) == {
        "brightness_consistency[consistency]",
        "brightness_consistency[psychophysics]",
        "brightness_consistency[psychophysics q=0.25]",
    }
    # the probe half holds 900 stimuli: enough for the whole-range task (> 800, the published
    # rule), not for the q=0.25 band (450), which is reported, never silently scored
    band = scores["metric"] == "brightness_consistency[psychophysics q=0.25]"
    scored = scores.loc[~band, "status"] == "ok"  # the rest: units whose top set ties decide (undetermined)
    assert set(scores.loc[~band, "status"]) <= {"ok", "undetermined"} and scored.mean() > 0.5
    assert scores.loc[~band, "value"][scored].notna().all()
    assert scores.loc[band, "status"].str.startswith("insufficient: band q=0.25 holds 450 samples").all()
    assert scores["direction"].nunique() == 16


ENTRY_POINTS = """[interpbench.methods]
ep_units = my_pkg.my_methods:TopVarianceUnits

[interpbench.metrics]
ep_brightness = my_pkg.my_metrics:BrightnessConsistency
"""


@pytest.mark.slow
def test_entry_point_package_is_discovered(tmp_path):
    """A separate installed distribution (a dist-info on sys.path) registers only through entry points."""
    pkg = tmp_path / "site" / "my_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    # the classes without the decorator: only the entry point registers them
    strip = re.compile(r"^@(METHODS|METRICS)\.register\(.*\)\n", flags=re.M)
    (pkg / "my_methods.py").write_text(strip.sub("", blocks("python")[0]))
    (pkg / "my_metrics.py").write_text(strip.sub("", blocks("python")[1]))
    dist = tmp_path / "site" / "my_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    env = {"PYTHONPATH": str(tmp_path / "site"), "INTERPBENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "benchmark.cli", "list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"ep_units .*entry point my-pkg", listed.stdout)
    assert re.search(r"ep_brightness .*entry point my-pkg", listed.stdout)
    cfg = TASK + '\n[[methods]]\nname = "ep_units"\n\n[[metrics]]\nname = "ep_brightness"\n'
    (tmp_path / "ep.toml").write_text(cfg)
    scores = run_config(tmp_path / "ep.toml", tmp_path / "r", env)
    assert set(scores["method"]) == {"ep_units"} and set(scores["metric"]) == {"ep_brightness[consistency]"}
    assert (scores["status"] == "ok").all()
