"""clipart: a tiny clip-art tree made in tmp_path (same layout as openclipart-png), and the real one."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.clipart import DEFAULT_ROOT, Clipart, find_authors, title_of
from benchmark.errors import UserError


def make_clipart(root: Path) -> None:
    """Two categories; one author ("jane doe") on four files; one truncated PNG; one grayscale;
    one fully transparent (blank after compositing: removed by hygiene). Each image has a black
    mark at its own place, so no two are duplicates."""
    files = {
        "animals/mammals/cat_jane_doe_01.png": (255, 0, 0, 255),
        "animals/mammals/dog_jane_doe_01.png": (200, 0, 0, 255),
        "animals/birds/owl_jane_doe_02.png": (180, 20, 0, 255),
        "animals/frog.png": (150, 0, 0, 255),
        "food/apple_jane_doe_01.png": (0, 200, 0, 255),
        "food/fruit/banana_split_03.png": (0, 255, 0, 0),  # fully transparent: white after compositing
        "food/fruit/pear.png": (0, 150, 0, 255),
    }
    for i, (rel, rgba) in enumerate(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.new("RGBA", (40, 20), rgba)
        if rgba[3]:
            im.paste((0, 0, 0, 255), (0 if i % 2 else 30, 2 * i, 10 if i % 2 else 40, 2 * i + 6))
        im.save(p)
    plum = Image.new("L", (16, 16), 90)
    plum.paste(0, (0, 0, 4, 4))
    plum.save(root / "food/fruit/grey_plum.png")
    good = root / "food/fruit/pear.png"
    (root / "food/fruit/broken_01.png").write_bytes(good.read_bytes()[:60])  # truncated PNG
    (root / "loose_file.png").write_bytes(good.read_bytes())  # not in a category folder: ignored


def test_labels_captions_and_counted_skip(tmp_path, cache_dir):
    make_clipart(tmp_path / "png")
    data = Clipart(root=str(tmp_path / "png"), size=16)
    assert len(data.notes) == 1 and data.notes[0].startswith("clipart: skipped 1 of 9 files")
    assert len(data) == 7 and len(data.skipped) == 1 and "broken_01.png" in data.skipped[0][0]
    assert data.hygiene.blank == 1 and data.hygiene.removed == 1  # transparent banana: white after compositing
    assert "food/fruit/banana_split_03.png" not in data.paths
    assert data.label_names == ["animals", "food"]
    by_path = dict(zip(data.paths, range(len(data))))
    cat = by_path["animals/mammals/cat_jane_doe_01.png"]
    assert data.captions([cat]) == ["cat (animals / mammals)"]  # author and suffix stripped
    pear = by_path["food/fruit/pear.png"]
    assert data.captions([pear]) == ["pear (food / fruit)"]
    assert data.labels([cat, pear]).tolist() == [0, 1]
    x = data.images(np.array([cat, pear, by_path["food/fruit/grey_plum.png"]]))
    assert x.shape == (3, 3, 16, 16)
    assert x[0, 0, 8, 8] > 0.95 and x[0, 1, 8, 8] < 0.05  # red cat in the middle
    assert x[0, 0, 0, 0] > 0.95 and x[0, 1, 0, 0] > 0.95  # 40x20 padded into a square with white
    assert np.allclose(x[2, :, 8, 8].numpy(), 90 / 255, atol=1 / 255)  # grayscale replicated to RGB


def test_subfolder_labels_and_min_per_class(tmp_path, cache_dir):
    make_clipart(tmp_path / "png")
    data = Clipart(root=str(tmp_path / "png"), size=8, label="subfolder", min_per_class=2)
    assert data.label_names == ["animals/mammals", "food/fruit"]
    assert len(data) == 4  # the blank banana is removed before min_per_class counts


def test_second_load_uses_the_cache(tmp_path, cache_dir):
    from benchmark.cache import Cache, using_cache

    make_clipart(tmp_path / "png")
    cache = Cache(cache_dir)
    with using_cache(cache):
        a = Clipart(root=str(tmp_path / "png"), size=8)
        b = Clipart(root=str(tmp_path / "png"), size=8)
    assert [(r.stage, r.computed) for r in cache.records] == [
        ("stimuli", True), ("hygiene", True), ("stimuli", False), ("hygiene", False)
    ]
    assert np.array_equal(a.images_uint8(np.arange(len(a))), b.images_uint8(np.arange(len(b))))
    assert a.identity() == b.identity()


def test_missing_or_empty_root(tmp_path, cache_dir):
    with pytest.raises(UserError, match="apt-get install openclipart-png"):
        Clipart(root=str(tmp_path / "absent"))
    (tmp_path / "empty" / "animals").mkdir(parents=True)
    with pytest.raises(UserError, match="no PNG files"):
        Clipart(root=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="label"):
        Clipart(root=str(tmp_path), label="author")


def test_author_detection_needs_several_titles():
    stems = ["cat_jane_doe_01", "dog_jane_doe_01", "owl_jane_doe_02", "red_house_01", "blue_house_01"]
    authors = find_authors(stems)
    assert ("jane", "doe") in authors and ("house",) not in authors
    assert title_of("cat_jane_doe_01", authors) == "cat"
    assert title_of("red_house_01", authors) == "red house"
    assert title_of("star_95pt06step", authors) == "star ptstep"


@pytest.mark.integration
@pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason="Debian package openclipart-png not installed")
def test_real_package_subset(tmp_path, cache_dir):
    """Three real categories (linked into tmp_path, same layout) load; real author names are stripped."""
    root = tmp_path / "png"
    root.mkdir()
    for cat in ("science", "logos", "buttons"):
        (root / cat).symlink_to(Path(DEFAULT_ROOT) / cat)
    data = Clipart(root=str(root), size=32)
    # 31 files: each is kept, skipped (unreadable) or removed by stimulus hygiene, and counted
    assert len(data) + len(data.skipped) + data.hygiene.removed == 31
    assert data.hygiene.removed > 0 and data.hygiene.n_kept >= len(data)
    assert data.label_names == ["buttons", "logos", "science"]
    caps = dict(zip(data.paths, data.captions(np.arange(len(data)))))
    assert caps["science/astronomy/saturn_dan_gerhards_01.png"] == "saturn (science / astronomy)"
    x = data.images(np.arange(len(data)))
    assert x.shape == (len(data), 3, 32, 32) and float(x.mean()) > 0.5  # mostly white backgrounds
    names = [p.stem for p in Path(DEFAULT_ROOT).rglob("*.png")]
    authors = find_authors(names)
    assert title_of("cavallo_architetto_franc_01", authors) == "cavallo"
