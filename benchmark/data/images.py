"""Image files -> uint8 arrays: decoding, compositing, resizing, and a cached, counted bulk loader.

Shared by ``clipart`` and ``image_folder``. A file that cannot be decoded (truncated, not an
image) is skipped and counted, never fatal: :func:`load_folder_cached` returns the images that
loaded and the list of ``(path, reason)`` that did not (:func:`skipped_note` words it for a
set's ``notes``, which the runner logs once per run). The decoded set is stored in the stage
cache (``stimuli`` stage: ``images.npy`` uint8 ``[n, 3, s, s]`` + ``index.json``), keyed by the
file list (names, sizes, modification times) and the loading options, so decoding happens once.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
#: how a non-square image becomes square: "pad" (fit inside, pad with the background) or "crop" (centre crop)
FITS = ("pad", "crop")
#: what to do with a grayscale file where RGB is needed: "convert" (replicate, counted), "skip", "error"
GRAYSCALE = ("convert", "skip", "error")


#: images with more pixels than this are counted as skipped, not decoded
MAX_PIXELS = 40_000_000


class ImageError(Exception):
    """A file that cannot be used as an image (the reason is the message)."""


def load_image(
    path: str | Path, size: int, *, fit: str = "crop", background: float = 1.0, grayscale: str = "convert"
) -> tuple[np.ndarray, bool]:
    """Decode ``path`` into ``[3, size, size]`` uint8 RGB.

    Transparency is composited on a ``background`` grey level (1.0 = white). Returns the image
    and whether it was grayscale (converted by replicating the channel).

    Raises:
        ImageError: the file is unreadable or truncated, or grayscale with ``grayscale="skip"``.
        UserError: grayscale with ``grayscale="error"``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size is checked here: PIL's own warning would repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.size[0] * im.size[1] > MAX_PIXELS:  # decoding would take seconds and gigabytes
                raise ImageError(f"too large to decode: {im.size[0]} x {im.size[1]} pixels (limit {MAX_PIXELS:,})")
            im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale when possible
            mode = im.mode
            im.load()
            was_gray = mode in ("1", "L", "LA", "I", "I;16", "F") or (mode == "P" and _palette_is_gray(im))
            rgba = im.convert("RGBA")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{type(exc).__name__}: {exc}") from None
    if was_gray and grayscale != "convert":
        if grayscale == "error":
            raise UserError(
                f"{path}: grayscale image (mode {mode}) where RGB is needed (grayscale='convert' or 'skip')"
            )
        raise ImageError(f"grayscale image (mode {mode})")
    bg = Image.new("RGBA", rgba.size, (round(background * 255),) * 3 + (255,))
    rgb = Image.alpha_composite(bg, rgba).convert("RGB")
    rgb = _square(rgb, size, fit, round(background * 255))
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy(), was_gray


def _palette_is_gray(im) -> bool:
    pal = im.getpalette() or []
    rgb = np.asarray(pal[: len(pal) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb.max(axis=1) == rgb.min(axis=1)).all())


def _square(im, size: int, fit: str, fill: int):
    from PIL import Image

    w, h = im.size
    if fit == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        return im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = im.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (size, size), (fill,) * 3)
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, by extension), sorted by relative path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def _fingerprint(root: Path, paths: Sequence[Path]) -> str:
    from benchmark.cache import hash_key

    rows = []
    for p in paths:
        st = p.stat()
        rows.append([str(p.relative_to(root)), st.st_size, int(st.st_mtime)])
    return hash_key(rows)


def load_folder_cached(
    root: Path,
    paths: Sequence[Path],
    size: int,
    *,
    fit: str,
    background: float,
    grayscale: str,
    what: str,
    workers: int = 4,
) -> tuple[np.ndarray, list[int], list[tuple[str, str]], int]:
    """Decode ``paths`` (under ``root``) through the stage cache.

    Returns:
        ``(images, kept, skipped, n_gray)``: a read-only uint8 memory map ``[n_kept, 3, s, s]``,
        the positions in ``paths`` that loaded, ``(relative path, reason)`` for each skipped
        file, and how many grayscale files were converted.
    """
    from numpy.lib.format import open_memmap

    from benchmark.cache import current_cache
    from benchmark.codedigest import code_digest

    if fit not in FITS:
        raise UserError(f"{what}: unknown fit {fit!r} (valid: {', '.join(FITS)})")
    if grayscale not in GRAYSCALE:
        raise UserError(f"{what}: unknown grayscale {grayscale!r} (valid: {', '.join(GRAYSCALE)})")
    parts = {
        "root": str(root),
        "files": _fingerprint(root, paths),
        "n": len(paths),
        "size": size,
        "fit": fit,
        "background": background,
        "grayscale": grayscale,
        "version": 2,  # 2: files over MAX_PIXELS are skipped
        "code": code_digest(__name__),
    }

    def compute(tmp: Path) -> None:
        out = open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        kept: list[int] = []
        skipped: list[tuple[str, str]] = []
        n_gray = 0

        def one(p: Path):
            try:
                return load_image(p, size, fit=fit, background=background, grayscale=grayscale)
            except ImageError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, result in enumerate(pool.map(one, paths)):
                if isinstance(result, ImageError):
                    skipped.append((str(paths[i].relative_to(root)), str(result)))
                    continue
                out[len(kept)] = result[0]
                n_gray += int(result[1])
                kept.append(i)
        out.flush()
        del out
        if not kept:
            np.save(tmp / "images.npy", np.zeros((0, 3, size, size), dtype=np.uint8))
        elif len(kept) < len(paths):  # shrink to the kept rows
            full = np.load(tmp / "images.npy", mmap_mode="r")
            small = open_memmap(tmp / "kept.npy", mode="w+", dtype=np.uint8, shape=(len(kept), 3, size, size))
            for s in range(0, len(kept), 1024):
                e = min(s + 1024, len(kept))
                small[s:e] = full[s:e]
            small.flush()
            del small, full
            os.replace(tmp / "kept.npy", tmp / "images.npy")
        (tmp / "index.json").write_text(json.dumps({"kept": kept, "skipped": skipped, "n_gray": n_gray}))

    path = current_cache().get_or_compute("stimuli", parts, compute)
    index = json.loads((path / "index.json").read_text())
    skipped = [tuple(s) for s in index["skipped"]]
    if not index["kept"]:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UserError(f"{what}: none of the {len(paths)} image files under {root} could be read{first}")
    return np.load(path / "images.npy", mmap_mode="r"), index["kept"], skipped, int(index["n_gray"])


def skipped_note(what: str, skipped: Sequence[tuple[str, str]], n_files: int) -> tuple[str, ...]:
    """The :attr:`~benchmark.data.base.StimulusSet.notes` line for the files
    :func:`load_folder_cached` skipped (none when it skipped nothing)."""
    if not skipped:
        return ()
    first, reason = skipped[0]
    return (f"{what}: skipped {len(skipped)} of {n_files} files that could not be read (first: {first}: {reason})",)


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` (``[m, ...]``) from a memory-mapped ``[n, ...]`` array, read in file order."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[rows[order]]
    return out


def to_float(images_uint8: np.ndarray) -> torch.Tensor:
    """``[m, C, H, W]`` uint8 -> float32 tensor in [0, 1]: ``x * float32(1 / 255)`` (the values
    numpy gives, 4x faster: torch's cast and product are vectorised over threads)."""
    return torch.from_numpy(np.require(images_uint8, requirements=["C", "W"])).float().mul_(1 / 255)
