"""Stimulus hygiene: planted duplicates, near-duplicates, a blank image and a label conflict in a
small image_folder; the rule on arrays; the real clip-art set."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data import hygiene
from benchmark.data.image_folder import ImageFolder


def drawing(seed: int, side: int = 64) -> np.ndarray:
    """A distinct picture ``[side, side, 3]`` uint8: a few coloured rectangles on white."""
    rng = np.random.default_rng(seed)
    img = np.full((side, side, 3), 255, dtype=np.uint8)
    for _ in range(4):
        x, y = rng.integers(0, side - 16, size=2)
        w, h = rng.integers(8, 24, size=2)
        img[y : y + h, x : x + w] = rng.integers(0, 200, size=3)
    return img


def save(path: Path, img: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format=fmt, quality=92)


def make_dirty_folder(root: Path) -> dict[str, list[str]]:
    """Classes a, b, c with planted problems; returns which files should survive and why others go."""
    base = {i: drawing(i) for i in range(8)}
    save(root / "a/0.png", base[0])
    save(root / "a/0_copy.png", base[0])  # exact duplicate (same pixels)
    save(root / "a/0_copy2.png", base[0])  # a second exact duplicate
    noisy = np.clip(base[1].astype(int) + np.random.default_rng(9).integers(-3, 4, base[1].shape), 0, 255)
    save(root / "a/1.png", base[1])
    save(root / "a/1_noisy.png", noisy.astype(np.uint8))  # near-duplicate: tiny noise
    save(root / "a/2.png", base[2])
    save(root / "a/2_shifted.png", np.roll(base[2], 1, axis=1))  # near-duplicate: one-pixel shift
    save(root / "b/3.png", base[3])
    save(root / "b/3_reencoded.jpg", base[3], "JPEG")  # near-duplicate: JPEG re-encode
    transparent = Image.new("RGBA", (64, 64), (10, 200, 30, 0))  # blank once composited on white
    transparent.save(root / "b/blank.png")
    save(root / "b/4.png", base[4])
    save(root / "c/4.png", base[4])  # label conflict: one copy in b, one in c (tie: group dropped)
    save(root / "b/5.png", base[5])
    save(root / "c/5.png", base[5])
    save(root / "c/5_again.png", base[5])  # conflict with a strict majority (c: 2 of 3): kept as c
    recolored = base[6].copy()
    recolored[recolored[..., 0] < 255] = [200, 0, 0]  # same layout, other colours: not a duplicate
    save(root / "c/6.png", base[6])
    save(root / "c/6_red.png", recolored)
    detail = base[7].copy()
    detail[20:28, 20:28] = 0  # one changed detail: not a duplicate
    save(root / "c/7.png", base[7])
    save(root / "c/7_detail.png", detail)
    return {
        "kept": ["a/0.png", "a/1.png", "a/2.png", "b/3.png", "c/5.png", "c/6.png", "c/6_red.png", "c/7.png",
                 "c/7_detail.png"],  # fmt: skip
    }


def test_planted_problems_are_removed_and_counted(tmp_path, cache_dir):
    expected = make_dirty_folder(tmp_path / "data")
    data = ImageFolder(str(tmp_path / "data"), size=64, fit="pad")
    assert sorted(data.paths) == sorted(expected["kept"])
    r = data.hygiene
    assert r.n_input == 19 and r.n_kept == 9 == len(data)
    # exact: a/0 x2, b/5 (minority copy), c/5_again; near: noisy, shifted, re-encoded; conflict: b/4 + c/4
    assert (r.exact_duplicates, r.near_duplicates, r.blank, r.label_conflicts) == (4, 3, 1, 2)
    assert (r.conflict_groups_resolved, r.conflict_groups_dropped) == (1, 1)
    assert r.n_kept + r.removed == r.n_input
    # b/5.png (the minority copy) goes as an exact duplicate of c/5.png, which keeps label c
    assert data.labels([data.paths.index("c/5.png")]).tolist() == [data.label_names.index("c")]
    assert r.by_label["b"] == {"exact_duplicates": 1, "near_duplicates": 1, "blank": 1, "label_conflicts": 1}
    assert r.by_label["a"] == {"exact_duplicates": 2, "near_duplicates": 2}
    m = data.manifest()
    assert m["hygiene"]["removed"] == 10 and m["stimuli"] == 9 and m["labels"] == {"a": 3, "b": 1, "c": 5}
    json.dumps(m)  # JSON-able for datasets.json


def test_survivor_images_are_the_representatives(tmp_path, cache_dir):
    make_dirty_folder(tmp_path / "data")
    data = ImageFolder(str(tmp_path / "data"), size=64, fit="pad")
    x = data.images_uint8(np.arange(len(data)))
    first = np.asarray(Image.open(tmp_path / "data" / data.paths[0]).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(x[0], first)
    flat = x.reshape(len(x), -1)
    assert len(np.unique(flat, axis=0)) == len(x)


def test_rule_on_arrays_is_deterministic_and_order_keeps_the_first():
    imgs = np.stack([drawing(i).transpose(2, 0, 1) for i in (0, 1, 0, 1, 2)])
    kept, labels, report = hygiene.clean_images(imgs, np.array([0, 1, 0, 1, 1]), ["x", "y"])
    assert kept.tolist() == [0, 1, 4] and labels.tolist() == [0, 1, 1]
    assert report.exact_duplicates == 2 and report.near_duplicates == 0
    kept2, _, report2 = hygiene.clean_images(imgs, np.array([0, 1, 0, 1, 1]), ["x", "y"])
    assert kept2.tolist() == kept.tolist() and report2.as_dict() == report.as_dict()


def test_grayscale_and_unlabelled_sets():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 1, 28, 28)).astype(np.uint8)
    imgs[3] = imgs[1]
    imgs[5] = 7  # constant: blank
    kept, labels, report = hygiene.clean_images(imgs)
    assert kept.tolist() == [0, 1, 2, 4] and labels is None
    assert (report.exact_duplicates, report.blank) == (1, 1)


def test_near_duplicates_survive_jpeg_and_shift_but_not_a_detail():
    a = drawing(3)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=85)
    jpeg = np.asarray(Image.open(buf).convert("RGB"))
    other = a.copy()
    other[30:40, 30:40] = 0
    imgs = np.stack([a, jpeg, np.roll(a, (1, -1), axis=(0, 1)), other]).transpose(0, 3, 1, 2)
    d = hygiene.local_difference(imgs[[0, 0, 0]], imgs[[1, 2, 3]])
    assert d[0] <= hygiene.NEAR_DIFF and d[1] <= hygiene.NEAR_DIFF and d[2] > hygiene.NEAR_DIFF


@pytest.mark.integration
@pytest.mark.skipif(not Path("/usr/share/openclipart/png").is_dir(), reason="Debian package openclipart-png absent")
def test_real_clipart_has_no_duplicates_after_hygiene(cache_dir):
    from benchmark.data.clipart import Clipart

    data = Clipart(size=64)
    r = data.hygiene
    print(f"clipart hygiene: {r.summary()}")
    assert r.n_kept + r.removed == r.n_input and len(data) == r.n_kept
    assert r.exact_duplicates > 500 and r.blank > 100 and r.label_conflicts > 0  # the set is known dirty
    x = data.images_uint8(np.arange(len(data)))
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)  # no identical pixels
    std, phash, _ = hygiene.image_features(x)
    assert std.min() >= hygiene.BLANK_STD
    assert len(hygiene.near_pairs(x, phash, np.arange(len(x)))) == 0  # no near-duplicates
    # no two kept files are byte-identical
    import hashlib

    digests = [hashlib.sha256((data.root / p).read_bytes()).hexdigest() for p in data.paths]
    assert len(set(digests)) == len(digests)
