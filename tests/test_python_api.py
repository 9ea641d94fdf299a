"""The Python API: run / load_results / Results, the docs' example, plugins named by a config."""

from __future__ import annotations

import re
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest

import interpbench
from benchmark.config import load_config, parse_config
from benchmark.errors import UserError
from benchmark.leaderboard import summarise
from benchmark.results import SCORE_COLUMNS
from interpbench import Results, to_toml
from methods.base import LinearBasis
from tests.conftest import REPO

DOC = REPO / "docs" / "python-api.md"

TASK = {
    "model": "shapes_cnn_untrained",
    "model_params": {"width": 8},
    "layers": ["conv2"],
    "dataset": "shapes",
    "dataset_params": {"n": 600, "size": 16},
}
CONFIG = {
    "name": "api",
    "seeds": [0],
    "chance_sets": 4,
    "tasks": [TASK],
    "methods": [{"name": "neurons"}, {"name": "pca", "params": {"n_components": 6}}],
    "metrics": [{"name": "label_consistency"}],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Results:
    root = tmp_path_factory.mktemp("api")
    return interpbench.run(CONFIG, cache_dir=root / "cache", results_dir=root / "results", progress=False)


def test_run_returns_the_tables(run):
    assert list(run.scores.columns) == SCORE_COLUMNS
    assert set(run.scores["method"]) == {"neurons", "pca"}
    assert (run.scores["status"] == "ok").all()
    assert run.scores[run.scores["method"] == "pca"]["direction"].nunique() == 6
    assert set(run.fits["method"]) == {"neurons", "pca"}
    assert (run.run_dir / "scores.parquet").is_file()


def test_leaderboard_holds_the_median_per_method(run):
    board = run.leaderboard()
    metric = "label_consistency[consistency]"
    summary = summarise(run.scores).set_index("method")
    for method in ("neurons", "pca"):
        row = board.xs(
            ("shapes_cnn_untrained", "conv2", "shapes", method if method == "neurons" else "pca(n_components=6)")
        )
        assert row[metric] == pytest.approx(summary.loc[method, "median"])
        assert row["k"] == (6 if method == "pca" else run.fits.set_index("method").loc["neurons", "n_directions"])
    first = board[metric].to_numpy()
    assert (np.diff(first) <= 0).all()  # best first
    assert f"{metric} chance" in run.leaderboard(chance=True).columns


def test_html_view_has_the_leaderboard_and_image_galleries(run):
    page = run._repr_html_()
    assert "<table" in page and "label_consistency[consistency]" in page and "pca(n_components=6)" in page
    assert len(run.galleries) == 2
    assert page.count('src="data:image/png;base64,') == sum(
        len(d["images"]) for g in run.galleries for d in g["directions"]
    )
    assert all(len(d["images"]) == 6 for g in run.galleries for d in g["directions"])


def test_load_results_gives_the_same_tables_and_galleries(run):
    for path in (run.run_dir, run.run_dir.parent.parent):  # a run directory, or a results directory
        loaded = interpbench.load_results(path)
        pd.testing.assert_frame_equal(loaded.scores, run.scores)
        pd.testing.assert_frame_equal(loaded.fits, run.fits)
        assert loaded.galleries == run.galleries
    with pytest.raises(UserError, match="scores.parquet"):
        interpbench.load_results(run.run_dir / "nothing")


def test_basis_comes_back_from_the_cache(run):
    basis = interpbench.load_results(run.run_dir).basis("pca")
    assert isinstance(basis, LinearBasis) and basis.k == 6
    assert float(run.fits.set_index("method").loc["pca", "fvu"]) == pytest.approx(basis.stats["fvu"])
    with pytest.raises(UserError, match="no basis"):
        run.basis("ica")


def test_method_filter(run, tmp_path):
    shared_cache = run.run_dir.parents[2] / "cache"  # the module run's activations are reused
    res = interpbench.run(
        CONFIG, cache_dir=shared_cache, results_dir=tmp_path / "r", methods=["neurons"], progress=False, gallery=False
    )
    assert set(res.scores["method"]) == {"neurons"} and res.galleries == []


def test_html_escapes_everything_from_the_run():
    row = {c: None for c in SCORE_COLUMNS}
    row.update(
        schema_version=1, run_id="r<1>", model="m<script>", layer="l", dataset="d", modality="language",
        method="<b>x</b>", method_params="{}", n_directions=1, seed=0, metric="met<i>", higher_is_better=True,
        direction=0, value=0.5, chance_mean=0.1, chance_std=0.0, status="ok",
    )  # fmt: skip
    scores = pd.DataFrame([row])
    fits = pd.DataFrame([{**{k: row[k] for k in ("model", "layer", "dataset", "method", "method_params", "seed")},
                          "n_directions": 1, "fvu": 0.1, "l0": 1.0, "dead_fraction": 0.0}])  # fmt: skip
    gallery = [{"task": "t<script>alert(1)</script>", "method": "<b>x</b>", "directions": [
        {"direction": 0, "metric": "met<i>", "value": 0.5, "texts": ["<script>alert('ctx')</script> & more"],
         "tokens": ["<tok>"], "images": ['x" onerror="alert(1)']}]}]  # fmt: skip
    page = Results("/tmp/run<x>", scores, fits, None, gallery)._repr_html_()
    assert "<script>" not in page and "<b>x</b>" not in page and "<tok>" not in page and "onerror" not in page
    assert "&lt;script&gt;alert(&#x27;ctx&#x27;)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


# -- dict configs ---------------------------------------------------------------------------------
def test_dict_config_parses_like_its_toml_file(tmp_path):
    text = to_toml(CONFIG)
    (tmp_path / "api.toml").write_text(text)
    from_dict = interpbench.load_config(CONFIG).resolved()
    from_file = load_config(tmp_path / "api.toml").resolved()
    from_dict.pop("source"), from_file.pop("source")
    assert from_dict == from_file
    assert from_dict["methods"][1]["params"] == {"n_components": 6}


def test_dict_config_errors_name_the_key():
    with pytest.raises(UserError, match=r"methods\[0\]\.nmae: unknown key; did you mean 'name'"):
        interpbench.load_config({**CONFIG, "methods": [{"nmae": "pca"}]})
    with pytest.raises(UserError, match="None has no TOML form"):
        interpbench.load_config({**CONFIG, "max_fit_samples": [None]})


# -- plugins named by a config ---------------------------------------------------------------------
PLUGIN = '''
from dataclasses import dataclass

import torch

from benchmark.registry import METHODS
from methods.base import LinearBasis, Method


@METHODS.register("api_test_first_units")
@dataclass(frozen=True)
class FirstUnits(Method):
    """The first n units (a planted answer: directions are unit vectors e_0 .. e_{n-1})."""

    n: int = 3

    def fit(self, acts, *, seed, device="cpu"):
        store = self.prepare(acts)
        return LinearBasis(directions=torch.eye(store.d)[: self.n])
'''


def test_plugin_module_named_in_a_config_is_usable(tmp_path, cache_dir, monkeypatch):
    (tmp_path / "api_test_plugins.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = to_toml(
        {**CONFIG, "plugins": ["api_test_plugins"], "methods": [{"name": "api_test_first_units", "params": {"n": 3}}]}
    )
    (tmp_path / "plug.toml").write_text(text)
    res = interpbench.run(tmp_path / "plug.toml", results_dir=tmp_path / "r", progress=False, gallery=False)
    assert set(res.scores["method"]) == {"api_test_first_units"}
    assert sorted(res.scores["direction"].unique()) == [0, 1, 2]
    basis = res.basis("api_test_first_units")
    assert np.array_equal(basis.directions.numpy(), np.eye(basis.d)[:3])


def test_config_text_is_never_evaluated(tmp_path, monkeypatch):
    sentinel = tmp_path / "EVALUATED"
    code = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    monkeypatch.chdir(tmp_path)
    # code in values is data: the config keeps it as a string
    config = parse_config(to_toml({**CONFIG, "name": code}) + f"# {code}\n")
    assert config.name == code
    # code as a plugin "module" is only ever passed to importlib, which refuses it
    with pytest.raises(UserError, match="cannot import plugin module"):
        parse_config(to_toml({**CONFIG, "plugins": [code]}))
    with pytest.raises(UserError, match="cannot import plugin module"):
        parse_config(to_toml({**CONFIG, "plugins": [f"os; {code}"]}))
    assert not sentinel.exists()
    assert "__import__" not in sys.modules


# -- the docs ---------------------------------------------------------------------------------------
def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_toml_blocks_are_valid_toml():
    blocks = doc_blocks("toml")
    assert blocks
    for block in blocks:
        tomllib.loads(block)


@pytest.mark.slow
def test_doc_python_example_runs(tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = doc_blocks("python")
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    board = namespace["board"]
    assert len(board) == 3 and "label_consistency[consistency]" in board.columns
    assert (tmp_path / "saes" / "pca" / "cfg.json").is_file()
    imported = namespace["imported"]
    assert set(imported.scores["method"]) == {"file"} and (imported.scores["status"] == "ok").all()
    assert imported.scores["direction"].nunique() == 2 * namespace["pca"].k  # signed pairs


# -- galleries of text stimuli ----------------------------------------------------------------------
class _Texts:
    """A text stimulus set whose contexts say which sample they are."""

    modality = "language"
    provides = frozenset({"texts", "tokens", "labels"})
    label_names = ["even", "odd"]

    def texts(self, idx):
        return [f"context <{int(i)}>" for i in idx]

    def tokens(self, idx):
        return [f"t{int(i)}" for i in idx]

    def labels(self, idx):
        return np.asarray(idx) % 2


def test_text_galleries_show_the_top_contexts_of_the_best_directions(tmp_path):
    from types import SimpleNamespace

    from benchmark.cache import Cache
    from benchmark.config import TaskSpec
    from benchmark.runner import Cell, Task
    from interpbench.gallery import RecordingExecutor, collect_galleries

    cache = Cache(tmp_path / "cache")
    top_idx = np.arange(40).reshape(4, 10)  # direction j's top samples: 10j .. 10j + 9

    def compute(tmp):
        np.save(tmp / "q0_top_idx.npy", top_idx)

    cache.get_or_compute("top", {"planted": 1}, compute)
    task = Task(TaskSpec(model="bytes", layers=("mlp",), dataset="texts"), "mlp")
    cell = Cell(task, "pca", {}, 0)
    executor = RecordingExecutor(cache)
    executor.stages.append((cell, {"top": cache.records[-1].key}))
    runner = SimpleNamespace(
        config=SimpleNamespace(seeds=(0,)), cache=cache, _task_objects=lambda t: (None, _Texts(), None, None)
    )
    values = [0.1, 0.9, 0.5, 0.7]  # best directions: 1, 3, 2
    scores = pd.DataFrame(
        [dict(model="bytes", layer="mlp", dataset="texts", method="pca", method_params="{}", seed=0, metric="m",
              higher_is_better=True, direction=j, value=v, chance_mean=0.2, chance_std=0.0, status="ok") for j, v in enumerate(values)]
    )  # fmt: skip
    (gallery,) = collect_galleries(runner, executor, scores, n_directions=3, n_stimuli=4)
    assert [d["direction"] for d in gallery["directions"]] == [1, 3, 2]
    assert gallery["directions"][0]["texts"] == [f"context <{i}>" for i in range(10, 14)]
    assert gallery["directions"][0]["tokens"] == ["t10", "t11", "t12", "t13"]
    assert gallery["directions"][0]["labels"] == ["even", "odd", "even", "odd"]
    page = Results(tmp_path, scores.assign(run_id="r"), pd.DataFrame(), None, [gallery])._repr_html_()
    assert "context &lt;10&gt;" in page and "<b>[t10]</b>" in page


def test_command_line_runs_load_with_galleries(run, tmp_path):
    """A run made with `interpbench run` (no gallery.json) shows the galleries the runner saved for the report."""
    from benchmark.cli import main

    (tmp_path / "api.toml").write_text(to_toml(CONFIG))
    code = main(["--cache-dir", str(run.run_dir.parents[2] / "cache"), "run", "--config", str(tmp_path / "api.toml"),
                 "--results-dir", str(tmp_path / "r"), "--quiet"])  # fmt: skip
    assert code == 0
    res = interpbench.load_results(tmp_path / "r")
    assert {g["method"] for g in res.galleries} == {"neurons", "pca(n_components=6)"}
    for g in res.galleries:
        values = [d["value"] for d in g["directions"]]
        assert values == sorted(values, reverse=True) and all(len(d["images"]) == 6 for d in g["directions"])
    assert res._repr_html_().count('src="data:image/png;base64,') == 6 * sum(
        len(g["directions"]) for g in res.galleries
    )
