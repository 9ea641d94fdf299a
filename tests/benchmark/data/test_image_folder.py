"""image_folder and cifar10: small folders and batch files written by the test; bad input."""

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.image_folder import CIFAR10, ImageFolder
from benchmark.errors import UserError


def _marked(mode: str, size: tuple[int, int], fill, at: tuple[int, int]) -> Image.Image:
    """A plain image with a 6 x 6 black mark at ``at``: distinct images, none blank (hygiene keeps them)."""
    im = Image.new(mode, size, fill)
    im.paste(0 if mode == "L" else (0, 0, 0), (*at, at[0] + 6, at[1] + 6))
    return im


def make_folder(root: Path) -> None:
    """Class 'n02123045' (tabby, ImageNet id) in red JPEGs, class 'sky_blue' in blue PNGs (one grayscale)."""
    (root / "n02123045").mkdir(parents=True)
    (root / "sky_blue" / "deeper").mkdir(parents=True)
    for i in range(3):
        _marked("RGB", (48, 32), (220, 10, 10), (10 + 10 * i, 4)).save(root / "n02123045" / f"{i}.jpg", quality=95)
        _marked("RGB", (32, 48), (10, 10, 220), (4, 10 + 10 * i)).save(root / "sky_blue" / f"{i}.png")
    _marked("RGB", (20, 20), (0, 0, 200), (12, 12)).save(root / "sky_blue" / "deeper" / "nested.png")
    _marked("L", (20, 20), 128, (2, 12)).save(root / "sky_blue" / "gray.png")
    (root / "sky_blue" / "notes.txt").write_text("not an image")


def test_labels_captions_and_grayscale_counted(tmp_path, cache_dir):
    make_folder(tmp_path / "data")
    data = ImageFolder(str(tmp_path / "data"), size=16)
    assert len(data) == 8 and data.n_grayscale == 1 and data.skipped == [] and data.notes == ()
    assert data.label_names == ["n02123045", "sky_blue"]
    labels = data.labels(np.arange(8))
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert data.captions([0, 7]) == ["a photo of a tabby", "a photo of a sky blue"]
    x = data.images(np.arange(8))
    assert x.shape == (8, 3, 16, 16)
    red = x[labels == 0].mean(dim=(0, 2, 3))
    assert red[0] > 0.8 and red[2] < 0.1
    assert "1 grayscale files converted" in data.describe()


def test_grayscale_skip_and_error(tmp_path, cache_dir):
    make_folder(tmp_path / "data")
    data = ImageFolder(str(tmp_path / "data"), size=8, grayscale="skip")
    assert len(data.notes) == 1 and "skipped 1 of 8 files" in data.notes[0]
    assert len(data) == 7 and "grayscale" in data.skipped[0][1]
    with pytest.raises(UserError, match="grayscale image"):
        ImageFolder(str(tmp_path / "data"), size=8, grayscale="error")


def test_truncated_png_is_a_counted_skip(tmp_path, cache_dir):
    make_folder(tmp_path / "data")
    good = (tmp_path / "data" / "sky_blue" / "0.png").read_bytes()
    (tmp_path / "data" / "sky_blue" / "truncated.png").write_bytes(good[: len(good) // 2])
    data = ImageFolder(str(tmp_path / "data"), size=8)
    assert data.notes == (f"image_folder: skipped 1 of 9 files that could not be read (first: {data.skipped[0][0]}: "
                          f"{data.skipped[0][1]})",)
    assert len(data) == 8 and data.skipped[0][0] == "sky_blue/truncated.png"


def test_empty_folders_are_user_errors(tmp_path, cache_dir):
    with pytest.raises(UserError, match="not a folder"):
        ImageFolder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class sub-folders"):
        ImageFolder(str(tmp_path / "empty"))
    (tmp_path / "empty" / "cats").mkdir()
    with pytest.raises(UserError, match="no image files"):
        ImageFolder(str(tmp_path / "empty"))
    (tmp_path / "empty" / "cats" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(UserError, match="could be read"):
        ImageFolder(str(tmp_path / "empty"))


def _cifar_arrays(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n)


def test_cifar10_binary_files(tmp_path):
    images, labels = _cifar_arrays(12)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rows = np.concatenate([labels[:, None].astype(np.uint8), images], axis=1)
    rows.tofile(folder / "test_batch.bin")
    data = CIFAR10(str(tmp_path), split="test")
    assert len(data) == 12 and np.array_equal(data.labels(np.arange(12)), labels)
    assert np.allclose(data.images([3]).numpy().reshape(-1), images[3] / 255, atol=1e-6)
    assert data.captions([0])[0].startswith("a photo of a ")
    (folder / "test_batch.bin").write_bytes(rows.tobytes()[:-7])
    with pytest.raises(UserError, match="3073"):
        CIFAR10(str(tmp_path), split="test")


def test_cifar10_python_batches_load_only_arrays(tmp_path):
    images, labels = _cifar_arrays(5, seed=1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": images, "labels": labels.tolist()}))
    data = CIFAR10(str(tmp_path))
    assert np.array_equal(data.labels(np.arange(5)), labels)

    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    buf = io.BytesIO()
    pickle.dump({"data": Evil(), "labels": []}, buf)
    (folder / "test_batch").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="refusing"):
        CIFAR10(str(tmp_path))


def test_cifar10_missing(tmp_path):
    with pytest.raises(UserError, match="no CIFAR-10 files"):
        CIFAR10(str(tmp_path))
