"""The runner end to end on a tiny grid: determinism, seeds, resume after SIGKILL, corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.runner import Runner

TINY = """
name = "tiny"
seeds = {seeds}
chance_sets = 8
{extra}

[[tasks]]
model = "shapes_cnn_untrained"
model_params = {{ width = 8 }}
layers = ["conv2"]
dataset = "shapes"
dataset_params = {{ n = 400, size = 16 }}

[[methods]]
name = "neurons"

[[methods]]
name = "random"

[[methods]]
name = "{third}"

[[metrics]]
name = "label_consistency"
sweep = {{ protocol = ["consistency"] }}
"""


def tiny(seeds="[0]", third="pca", extra="") -> str:
    return TINY.format(seeds=seeds, third=third, extra=extra)


def run(text: str, cache: Path, results: Path, **kw):
    return Runner(parse_config(text, "tiny.toml"), Cache(cache), results_dir=results, progress=False, **kw).run()


def values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["run_id"]).reset_index(drop=True)


def test_writes_tables_and_rows(tmp_path):
    res = run(tiny(), tmp_path / "c", tmp_path / "r")
    assert (res.run_dir / "scores.parquet").exists() and (res.run_dir / "config.json").exists()
    assert (res.run_dir / "environment.json").exists()
    assert set(res.scores["method"]) == {"neurons", "random", "pca"}
    assert (res.scores["status"] == "ok").all()
    assert len(res.scores) == 3 * 16  # 16 channels at width 8 (conv2 = 2 x width)
    pca = res.fits[res.fits["method"] == "pca"].iloc[0]
    assert pca["fvu"] < 1e-6 and pca["n_directions"] == 16


def test_same_config_same_tables_and_no_recompute(tmp_path):
    a = run(tiny(), tmp_path / "c1", tmp_path / "r1")
    b = run(tiny(), tmp_path / "c2", tmp_path / "r2")
    pd.testing.assert_frame_equal(values(a.scores), values(b.scores))
    cache = Cache(tmp_path / "c1")
    Runner(parse_config(tiny(), "tiny.toml"), cache, results_dir=tmp_path / "r1", progress=False).run()
    assert not any(r.computed for r in cache.records)


def test_different_seed_changes_random_baseline(tmp_path):
    res = run(tiny(seeds="[0, 1]"), tmp_path / "c", tmp_path / "r")
    rnd = res.scores[res.scores["method"] == "random"]
    v0 = rnd[rnd["seed"] == 0]["value"].to_numpy()
    v1 = rnd[rnd["seed"] == 1]["value"].to_numpy()
    assert not (v0 == v1).all()
    neu = res.scores[res.scores["method"] == "neurons"]
    assert (neu[neu["seed"] == 0]["value"].to_numpy() == neu[neu["seed"] == 1]["value"].to_numpy()).all()


def test_corrupt_basis_entry_is_recomputed(tmp_path):
    first = run(tiny(), tmp_path / "c", tmp_path / "r")
    tensors = sorted((tmp_path / "c" / "basis").rglob("tensors.safetensors"))
    assert tensors
    data = bytearray(tensors[0].read_bytes())
    data[-3] ^= 0xFF
    tensors[0].write_bytes(bytes(data))
    cache = Cache(tmp_path / "c")
    with pytest.warns(UserWarning, match="corrupt"):
        again = Runner(parse_config(tiny(), "tiny.toml"), cache, results_dir=tmp_path / "r", progress=False).run()
    assert sum(r.computed for r in cache.records if r.stage == "basis") == 1
    pd.testing.assert_frame_equal(values(first.scores), values(again.scores))


KILLER = """
import os, signal
from dataclasses import dataclass
from pathlib import Path
from benchmark.registry import METHODS
from methods.rotation import RandomRotation

@METHODS.register("killer")
@dataclass(frozen=True)
class Killer(RandomRotation):
    '''A random rotation that SIGKILLs its process the first time it fits seed 1.'''
    def fit(self, acts, *, seed, device="cpu"):
        marker = Path(os.environ["KILL_MARKER"])
        if seed == 1 and not marker.exists():
            marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(acts, seed=seed, device=device)
"""


@pytest.mark.slow
def test_resume_after_sigkill_recomputes_nothing_finished(tmp_path):
    (tmp_path / "killer_plugin.py").write_text(textwrap.dedent(KILLER))
    cfg = tmp_path / "kill.toml"
    cfg.write_text(tiny(seeds="[0, 1]", third="killer", extra='plugins = ["killer_plugin"]'))
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "KILL_MARKER": str(tmp_path / "marker"),
        "INTERPBENCH_CACHE": str(tmp_path / "cache"),
    }
    cmd = [
        sys.executable,
        "-m",
        "benchmark.cli",
        "run",
        "--config",
        str(cfg),
        "--results-dir",
        str(tmp_path / "r"),
        "--quiet",
    ]
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done_before = {p.name for p in (tmp_path / "cache" / "basis").rglob("*") if (p / "MANIFEST.json").exists()}
    assert len(done_before) == 5  # cells run method by method, seed by seed: only killer/seed 1 is missing
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    stages = pd.read_csv(next((tmp_path / "r" / "runs").iterdir()) / "stages.csv").set_index("stage")
    assert stages.loc["basis", "computed"] == 1 and stages.loc["basis", "reused"] == 5
    assert stages.loc["activations", "computed"] == 0
    # identical to an uninterrupted run in a fresh cache
    env2 = {**env, "INTERPBENCH_CACHE": str(tmp_path / "cache2")}
    clean = subprocess.run(
        [*cmd[:-3], "--results-dir", str(tmp_path / "r2"), "--quiet"], env=env2, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    a = pd.read_parquet(next((tmp_path / "r" / "runs").iterdir()) / "scores.parquet")
    b = pd.read_parquet(next((tmp_path / "r2" / "runs").iterdir()) / "scores.parquet")
    pd.testing.assert_frame_equal(values(a), values(b))


def test_task_with_missing_data_is_skipped_not_fatal(tmp_path):
    text = tiny() + textwrap.dedent(
        """
        [[tasks]]
        model = "shapes_cnn_untrained"
        layers = ["conv2"]
        dataset = "image_folder"
        dataset_params = { root = "/nonexistent/images" }
        """
    )
    res = run(text, tmp_path / "c", tmp_path / "r")
    assert set(res.scores["dataset"]) == {"shapes"}
    skipped = __import__("json").loads((res.run_dir / "skipped_tasks.json").read_text())
    assert list(skipped) == ["shapes_cnn_untrained/conv2/image_folder"]
    assert "/nonexistent/images" in next(iter(skipped.values()))


def test_data_notes_once_and_not_applicable_metrics_once_per_task(tmp_path, monkeypatch):
    from benchmark.data.shapes import Shapes

    monkeypatch.setattr(Shapes, "notes", ("shapes: 2 files left out",))
    text = tiny().replace('layers = ["conv2"]', 'layers = ["conv1", "conv2"]') + '\n[[metrics]]\nname = "token_consistency"\n'
    lines: list[str] = []
    res = run(text, tmp_path / "c", tmp_path / "r", log=lines.append)
    assert lines.count("interpbench: data: shapes: 2 files left out") == 1  # two tasks, one note
    na = [line for line in lines if "not applicable" in line]
    assert na == [
        f"interpbench: task shapes_cnn_untrained/{layer}/shapes: not applicable: token_consistency "
        "(vision stimuli; metric is for language)"
        for layer in ("conv1", "conv2")
    ]
    cells = [line for line in lines if " seed=0: k=" in line]
    assert len(cells) == 6 and all("label_consistency" in c and "token_consistency" not in c for c in cells)
    assert set(res.scores.loc[res.scores["metric"] == "token_consistency", "status"]) == {
        "skipped: vision stimuli; metric is for language"
    }
