"""The static HTML report: pages and links, escaping of hostile text, galleries, a real quick run."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.report.build import build_report, report_size
from benchmark.report.fixtures import XSS, TinyImages, TinyTexts, write_sample_run
from benchmark.report.gallery import N_SHOW, THUMB_PX, read_galleries, split_marked, write_gallery
from metrics.base import Ranked

REPO = Path(__file__).resolve().parents[2]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    write_sample_run(run, seeds=(0, 1))
    return build_report(run)


def test_every_page_link_and_image_resolves_and_no_page_has_a_script(report):
    pages = sorted(report.parent.rglob("*.html"))
    assert len(pages) == 1 + 2 * 6  # index + (2 tasks x 6 method rows)
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.scripts == 0, page
        for ref in parser.refs:
            url = urlparse(ref)
            if url.scheme or not url.path:
                continue
            assert (page.parent / unquote(url.path)).resolve().exists(), f"{page.name}: broken {ref}"


def test_hostile_text_is_escaped_everywhere(report):
    vision = next(report.parent.glob("tasks/shapes_cnn__conv2__shapes/neurons-*.html")).read_text(encoding="utf-8")
    language = next(report.parent.glob("tasks/bytes_1l__mlp__textmix/neurons-*.html")).read_text(encoding="utf-8")
    for html in (vision, language):
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "Content-Security-Policy" in html and "script-src 'none'" in html
    assert "&#34;red&#34; square" in vision or "&quot;red&quot; square" in vision  # quotes escaped
    assert "&lt;b&gt;</mark>" in language and "ünïcödé" in language  # active token highlighted, Unicode kept


def test_method_page_shows_directions_with_scores_and_sprite_cells(report):
    page = next(report.parent.glob("tasks/shapes_cnn__conv2__shapes/pca-*.html")).read_text(encoding="utf-8")
    assert page.count('class="direction"') == 9
    assert "object-position: -64px -0px" in page  # second thumbnail of direction 0
    assert "label_consistency[psychophysics]" in page and "chance 0.500" in page
    index = (report.parent / "index.html").read_text(encoding="utf-8")
    assert "Overall ranking" in index and "unstable (tau &lt; 0.6)" in index
    assert index.count('<table class="board">') == 4 and 'src="plots/shapes_cnn__conv2__shapes__pareto.png"' in index


def test_size_and_rebuild_is_identical(report):
    files, size = report_size(report.parent)
    assert size < 20 * 2**20 and files > 10
    before = {p: p.read_bytes() for p in sorted(report.parent.rglob("*")) if p.is_file()}
    build_report(report.parent.parent)
    after = {p: p.read_bytes() for p in sorted(report.parent.rglob("*")) if p.is_file()}
    assert before == after


def test_gallery_sprite_layout(tmp_path):
    k = 3
    top = np.arange(k * 10).reshape(k, 10) % 60
    ranked = Ranked(top, np.ones((k, 10)), top[:, ::-1].copy(), -np.ones((k, 10)))
    write_gallery(tmp_path, TinyImages(), ranked, {"seed": 0})
    doc = json.loads((tmp_path / "gallery.json").read_text())
    assert doc["n_directions"] == k and len(doc["directions"]) == k
    d1 = doc["directions"][1]
    assert [e["index"] for e in d1["top"]] == list(top[1, :N_SHOW])
    assert d1["bottom"][0]["sprite"] == [1, N_SHOW] and d1["top"][0]["label"] in TinyImages.label_names
    with Image.open(tmp_path / "sprite.png") as im:
        assert im.size == (2 * N_SHOW * THUMB_PX, k * THUMB_PX)
        # row 1, column 0 holds stimulus 10 (direction 1's top): even index, so a black centre square
        assert im.getpixel((THUMB_PX // 2, THUMB_PX + THUMB_PX // 2)) == (0, 0, 0)
        assert im.getpixel((THUMB_PX + THUMB_PX // 2, THUMB_PX + THUMB_PX // 2)) == (255, 255, 255)  # stimulus 11


def test_language_gallery_keeps_the_highlight(tmp_path):
    top = np.array([[1, 2, 3]])
    write_gallery(tmp_path, TinyTexts(), Ranked(top, np.ones((1, 3)), top, np.ones((1, 3))), {"seed": 0})
    doc = json.loads((tmp_path / "gallery.json").read_text())
    assert doc["directions"][0]["top"][0]["text"] == ["def f1(x):\n    ", "return", " x + 1  # ünïcödé"]
    assert not (tmp_path / "sprite.png").exists()
    assert split_marked("no mark") == ["no mark", "", ""]


def test_run_without_galleries_still_gets_a_report(report, tmp_path):
    shutil.copytree(report.parent.parent, tmp_path / "run", ignore=shutil.ignore_patterns("report", "galleries"))
    shutil.copytree(report.parent / "plots", tmp_path / "run" / "plots")  # same tables: figures are reused
    index = build_report(tmp_path / "run", tmp_path / "out")
    page = next((tmp_path / "out").glob("tasks/*/pca-*.html")).read_text(encoding="utf-8")
    assert "No gallery for this method" in page and index.exists()


TINY = """
name = "tiny"
seeds = [0, 1]
chance_sets = 4

[[tasks]]
model = "shapes_cnn_untrained"
layers = ["conv3"]
dataset = "shapes"
dataset_params = { n = 400, size = 32 }

[[methods]]
name = "neurons"

[[methods]]
name = "pca"

[[metrics]]
name = "label_consistency"
"""


def test_a_run_writes_galleries_and_the_cli_builds_the_report(tmp_path, cache_dir, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["--cache-dir", str(cache_dir), "run", "--config", str(tmp_path / "tiny.toml")]
    assert main([*args, "--results-dir", str(tmp_path), "--quiet"]) == 0
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.is_symlink())
    assert (run / "plots").is_dir() and (run / "leaderboards" / "overall.md").exists()
    galleries = read_galleries(run)
    assert len(galleries) == 2 and all(g["seed"] == 0 for g in galleries.values())  # first seed only
    assert all(len(g["directions"]) == 12 for g in galleries.values())
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == tmp_path / "report" / "index.html"
    pages = list((tmp_path / "report" / "tasks").rglob("*.html"))
    assert len(pages) == 2 and 'class="thumb"' in pages[0].read_text(encoding="utf-8")
    assert report_size(tmp_path / "report")[1] < 20 * 2**20
