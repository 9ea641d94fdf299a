"""fashion_mnist: IDX files written by the test, bad files, the missing package, the real package."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.fashion_mnist import CLASSES, DEFAULT_ROOT, FashionMNIST, read_idx
from benchmark.errors import UserError


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_fashion(root: Path, n: int = 20, seed: int = 0, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A tiny Fashion-MNIST folder: image i is noise (distinct images, none blank: hygiene keeps all)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    ext = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_reads_images_labels_and_captions(tmp_path, compress):
    images, labels = make_fashion(tmp_path, compress=compress)
    data = FashionMNIST(split="test", root=str(tmp_path))
    assert len(data) == 20 and data.provides >= {"images", "labels", "captions"}
    assert "rgb_images" not in data.provides  # grayscale: color metrics must skip
    idx = np.array([3, 0, 19])
    x = data.images(idx)
    assert x.shape == (3, 1, 28, 28)
    assert np.allclose(x[:, 0, 0, 0].numpy(), images[idx, 0, 0] / 255, atol=1e-6)
    assert np.array_equal(data.labels(idx), labels[idx])
    assert data.captions(idx) == [f"a photo of a {CLASSES[i]}" for i in labels[idx]]
    assert data.label_names[0] == "t-shirt/top" and len(data.label_names) == 10


def test_truncated_or_wrong_files_are_user_errors(tmp_path):
    make_fashion(tmp_path, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="data bytes"):
        read_idx(path)
    path.write_bytes(b"\x12\x34\x08\x03")
    with pytest.raises(UserError, match="magic"):
        FashionMNIST(root=str(tmp_path))


def test_mismatched_counts_are_a_user_error(tmp_path):
    make_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(UserError, match="do not match"):
        FashionMNIST(root=str(tmp_path))


def test_missing_package_says_which_apt_get(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=str(tmp_path / "empty"))


def test_bad_split(tmp_path):
    with pytest.raises(UserError, match="split"):
        FashionMNIST(split="val", root=str(tmp_path))


@pytest.mark.integration
@pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_package():
    test, train = FashionMNIST("test"), FashionMNIST("train")
    # hygiene removes a few near-duplicate pairs (counted); the classes stay balanced
    assert test.hygiene.n_input == 10000 and train.hygiene.n_input == 60000
    assert len(test) == 10000 - test.hygiene.removed and 9990 <= len(test) and 59900 <= len(train)
    assert np.bincount(test.labels(np.arange(len(test))), minlength=10).min() >= 990
    x = test.images(np.arange(8))
    assert x.shape == (8, 1, 28, 28) and 0.1 < float(x.mean()) < 0.6
