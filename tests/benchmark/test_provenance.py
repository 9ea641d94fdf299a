"""A run's provenance.json: commit and dirty flag, source digest, constraints hash, content hashes
of stimuli and weights, model quality, seeds; and the results README's "Provenance" section."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.provenance import ROOT, constraints_state, git_state, run_provenance
from benchmark.results import RUN_INPUTS, source_digest
from benchmark.runner import LocalExecutor, Runner

TINY = """
name = "tiny_provenance"
seeds = [0, 1]
chance_sets = 4

[[tasks]]
model = "shapes_cnn_untrained"
model_params = { width = 8 }
layers = ["conv2"]
dataset = "shapes"
dataset_params = { n = 300, size = 16 }

[[methods]]
name = "pca"

[[metrics]]
name = "label_consistency"
sweep = { protocol = ["consistency"] }
"""

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _runner(cache: Path, results: Path) -> Runner:
    return Runner(parse_config(TINY, "tiny.toml"), Cache(cache), results_dir=results, progress=False,
                  executor=LocalExecutor())  # fmt: skip


def test_a_run_records_its_provenance(tmp_path):
    result = _runner(tmp_path / "c", tmp_path / "r").run()
    assert "provenance.json" in RUN_INPUTS  # a new record re-publishes
    prov = json.loads((result.run_dir / "provenance.json").read_text())
    ib = prov["interpbench"]
    assert ib["source_digest"] == source_digest()
    assert ib["git"] == git_state()  # None where interpbench is not a git checkout
    if ib["git"] is not None:
        assert len(ib["git"]["commit"]) == 40 and isinstance(ib["git"]["dirty"], bool)
    lock = ROOT / "constraints.txt"
    if lock.exists():
        assert prov["constraints"]["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
        assert prov["constraints"]["pins"] > 50
    assert prov["seeds"] == [0, 1] and prov["chance_sets"] == 4
    (name, data), = prov["datasets"].items()  # fmt: skip
    assert name == "shapes(n=300, size=16)"
    assert data["hash_of"] == "images+labels" and len(data["hash"]) == 32
    n_fit, n_probe = int(result.fits["n_fit"].iloc[0]), int(result.fits["n_probe"].iloc[0])
    assert data["n_stimuli"] == n_fit + n_probe == sum(data["label_counts"].values())
    (model,) = prov["models"].values()
    assert model["name"] == "shapes_cnn_untrained" and len(model["weights"]) == 16 and model["quality"] == {}
    task = prov["tasks"]["shapes_cnn_untrained/conv2/shapes"]
    assert (task["n_fit"], task["n_probe"], task["split_seed"]) == (n_fit, n_probe, 0)
    # content hashes, not paths or times: a second run elsewhere gives the same record
    again = _runner(tmp_path / "c2", tmp_path / "r2").run()
    prov2 = json.loads((again.run_dir / "provenance.json").read_text())
    for key in ("datasets", "models", "tasks"):
        assert prov2[key] == prov[key], key


def test_a_trained_model_reports_its_quality(tmp_path, monkeypatch):
    runner = _runner(tmp_path / "c", tmp_path / "r")
    (task,) = runner.tasks()
    model = runner._task_objects(task)[0]
    monkeypatch.setattr(model, "heldout_accuracy", 0.9512345678, raising=False)
    monkeypatch.setattr(model, "training_report", {"model_bpb": 2.5, "train_seconds": 3.0}, raising=False)
    (record,) = run_provenance(runner, [task])["models"].values()
    assert record["quality"] == {"heldout_accuracy": 0.951235, "model_bpb": 2.5}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@needs_git
def test_git_state_flags_a_dirty_tree(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmark").mkdir(parents=True)
    (repo / "benchmark" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = git_state(repo)
    assert clean is not None and clean["dirty"] is False and clean["changed_files"] == 0
    assert len(clean["commit"]) == 40
    (repo / "benchmark" / "a.py").write_text("x = 2\n")  # an edit not committed
    dirty = git_state(repo)
    assert dirty["dirty"] is True and dirty["changed_files"] == 1 and dirty["commit"] == clean["commit"]
    # not the top of a checkout (a copy installed inside another repository), or no repository
    assert git_state(repo / "benchmark") is None
    assert git_state(tmp_path / "elsewhere") is None


def test_git_state_is_none_without_git(monkeypatch, tmp_path):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert git_state(tmp_path) is None


def test_constraints_state_names_versions_that_differ(tmp_path):
    import numpy

    path = tmp_path / "constraints.txt"
    path.write_text(f"# header\nnumpy=={numpy.__version__}\nPyArrow==0.0.1\nnot-installed-pkg==1.0\n")
    state = constraints_state(path)
    assert state["pins"] == 3 and state["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(state["mismatched"]) == ["pyarrow"] and state["mismatched"]["pyarrow"]["pinned"] == "0.0.1"
    assert constraints_state(tmp_path / "missing.txt") is None


PROVENANCE = {
    "interpbench": {"version": "0.1.0", "source_digest": "ab" * 32,
                    "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True, "changed_files": 3}},
    "constraints": {"file": "constraints.txt", "sha256": "cd" * 32, "pins": 164, "mismatched": {}},
    "datasets": {"shapes(n=60)": {"hash": "ef" * 16, "hash_of": "images+labels", "n_stimuli": 60,
                                  "label_counts": {"circle": 30, "square": 30}}},
    "models": {"shapes_cnn": {"name": "shapes_cnn", "weights": "1234abcd1234abcd", "quality": {"heldout_accuracy": 0.95}}},
    "tasks": {}, "seeds": [0, 1, 2], "chance_sets": 16,
}  # fmt: skip


def test_results_readme_shows_the_provenance(tmp_path):
    from benchmark.report.fixtures import write_sample_run
    from benchmark.report.readme import write_results_readme

    write_sample_run(tmp_path / "run")
    (tmp_path / "run" / "provenance.json").write_text(json.dumps(PROVENANCE))
    text = write_results_readme(tmp_path / "run", tmp_path / "results").read_text()
    section = text.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    assert "commit: `0123456789ab` (dirty: 3 files changed)" in section
    assert "source digest `abababababababab`" in section
    assert "`constraints.txt` sha256 `cdcdcdcdcdcdcdcd` (164 pins; all installed as pinned)" in section
    assert "| shapes(n=60) | `efefefefefefefef` | images+labels | 60 | 2 |" in section
    assert "| shapes_cnn | `1234abcd1234abcd` | heldout_accuracy 0.95 |" in section
    assert json.loads((tmp_path / "results" / "provenance.json").read_text()) == PROVENANCE
    # a run made before provenance.json existed: no section, no error
    (tmp_path / "run" / "provenance.json").unlink()
    assert "## Provenance" not in write_results_readme(tmp_path / "run", tmp_path / "results2").read_text()
