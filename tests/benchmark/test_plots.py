"""Leaderboard figures: Pareto series from a sweep, files written, byte-stable, skipped metrics left out."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from benchmark.leaderboard import summarise
from benchmark.plots import _split_metrics, build_plots, curve_key, method_color, pareto_series
from benchmark.report.fixtures import COLOR, COLOR_SKIP, LANGUAGE, PSY, PSY_Q, VISION, sample_tables


@pytest.fixture(scope="module")
def tables():
    return sample_tables(seeds=(0, 1))


def _task(df, task):
    return df[(df["model"] == task[0]) & (df["layer"] == task[1]) & (df["dataset"] == task[2])]


def test_a_sweep_forms_one_curve_sorted_by_l0(tables):
    scores, fits = tables
    series = pareto_series(_task(summarise(scores), VISION), _task(fits, VISION), PSY, "l0")
    assert sorted(series) == ["neurons", "pca", "random", "sae_topk"]
    sae = series["sae_topk"]
    assert list(sae["x"]) == [2.0, 4.0, 8.0]  # L0 = k in the fixture
    assert list(sae["median"].round(6)) == [0.74, 0.77, 0.72]  # planted
    assert (sae["lo"] < sae["median"]).all() and (sae["median"] < sae["hi"]).all()
    by_fvu = pareto_series(_task(summarise(scores), VISION), _task(fits, VISION), PSY, "fvu")["sae_topk"]
    assert list(by_fvu["x"]) == sorted(by_fvu["x"]) and list(by_fvu["label"])[0] == "sae_topk(k=8)"
    assert len(series["pca"]) == 1


def test_skipped_metrics_are_not_drawn_but_named(tables):
    drawn, notes = _split_metrics(_task(summarise(tables[0]), LANGUAGE))
    assert drawn == [PSY, PSY_Q] and notes == [f"{COLOR}: {COLOR_SKIP}"]


def test_colours_are_stable():
    assert method_color("pca") == method_color("pca") != method_color("neurons")
    assert method_color("my_plugin_method").startswith("#")


def test_figures_are_written_valid_and_byte_stable(tables, tmp_path):
    scores, fits = tables
    written = build_plots(scores, fits, tmp_path / "a")
    assert sorted(written) == ["bytes_1l__mlp__textmix", "shapes_cnn__conv2__shapes"]
    files = sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith("."))
    assert len(files) == 8  # 2 tasks x (pareto, scores) x (png, svg)
    scores, fits = _task(scores, LANGUAGE), _task(fits, LANGUAGE)  # the check of stability: one task is enough
    files = [f for f in files if f.startswith("bytes_1l")]
    for name in files:
        path = tmp_path / "a" / name
        if name.endswith(".png"):
            with Image.open(path) as im:
                assert im.size[0] > 300 and im.size[1] > 200
                assert "Software" not in im.info
        else:
            text = path.read_text()
            assert text.lstrip().startswith("<?xml") and "<dc:date>" not in text
    build_plots(scores.sample(frac=1.0, random_state=1), fits, tmp_path / "b")  # other row order, other dir
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_same_tables_are_not_redrawn_and_can_be_reused(tables, tmp_path):
    scores, fits = _task(tables[0], VISION), _task(tables[1], VISION)
    build_plots(scores, fits, tmp_path / "run", formats=("png",))
    png = tmp_path / "run" / "shapes_cnn__conv2__shapes__pareto.png"
    stamp = png.stat().st_mtime_ns
    build_plots(scores, fits, tmp_path / "run", formats=("png",))
    assert png.stat().st_mtime_ns == stamp
    build_plots(scores, fits, tmp_path / "report", formats=("png",), reuse=tmp_path / "run")
    assert (tmp_path / "report" / png.name).read_bytes() == png.read_bytes()
    changed = scores.assign(value=scores["value"] + 0.01)
    build_plots(changed, fits, tmp_path / "run", formats=("png",))
    assert png.stat().st_mtime_ns != stamp


def test_a_sweep_at_two_widths_forms_two_curves(tables):
    scores, fits = (_task(t, VISION) for t in tables)
    wide_s = scores[scores["method"] == "sae_topk"].copy()
    wide_f = fits[fits["method"] == "sae_topk"].copy()
    for df in (wide_s, wide_f):
        df["method_params"] = df["method_params"].str.replace("}", ', "expansion": 4}')
    wide_f["l0"] += 0.5
    scores, fits = pd.concat([scores, wide_s]), pd.concat([fits, wide_f])
    series = pareto_series(summarise(scores), fits, PSY, "l0")
    assert sorted(series) == ["neurons", "pca", "random", "sae_topk", "sae_topk(expansion=4)"]
    assert list(series["sae_topk(expansion=4)"]["x"]) == [2.5, 4.5, 8.5]
    assert curve_key("sae_l1", '{"l1": 0.1, "expansion": 2}', ["expansion", "l1"]) == "sae_l1(expansion=2)"


def test_layers_with_dots_get_their_own_files(tables, tmp_path):
    # two layers "_blocks.4" and "_blocks.13" once shared one file: Path.with_suffix cut the name at the dot
    scores, fits = tables
    renamed = []
    for layer in ("_blocks.4", "_blocks.13"):
        s, f = _task(scores, VISION).copy(), _task(fits, VISION).copy()
        s["layer"], f["layer"] = layer, layer
        renamed.append((s, f))
    scores = pd.concat([s for s, _ in renamed], ignore_index=True)
    fits = pd.concat([f for _, f in renamed], ignore_index=True)
    written = build_plots(scores, fits, tmp_path, formats=("png",))
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(written) == 2 and len(names) == 4, names
    assert all(name.endswith(("__pareto.png", "__scores.png")) for name in names)
