"""Stimulus hygiene: blank images, exact and near-duplicates, and label conflicts, removed and counted.

A leaderboard cell holds only if the stimuli are distinct (DESIGN.md, "Science rules"): a
direction whose top set is many copies of one picture looks coherent for no reason. Every image
set runs :func:`clean_images` on its decoded uint8 images (after alpha compositing on the
background and resizing, i.e. exactly what the models and metrics see) and keeps the survivors.

The rule, in order:

1. **blank**: an image whose pixel standard deviation (over all pixels and channels, 0-255
   scale) is below :data:`BLANK_STD` is removed: it shows nothing (e.g. a white drawing on a
   transparent background, composited on white).
2. **exact duplicates**: images with identical pixels are one group.
3. **near-duplicates**: two images are near-duplicates when their perceptual hashes (64-bit DCT
   pHash of the grayscale image at 32 x 32, as in the ``imagehash`` package) differ in at most
   :data:`NEAR_HAMMING` bits **and** their local difference (:func:`local_difference`: the
   absolute colour difference, averaged in each cell of a 12 x 12 grid, worst cell, at the best
   of the nine shifts by up to one pixel) is at most :data:`NEAR_DIFF` (values in [0, 1]). The
   hash finds candidates cheaply; the local check keeps apart images that differ in one detail
   (a smiling and a frowning face, the 8 and the 9 of diamonds) or only in colour, and forgives
   noise, re-encoding and a one-pixel shift. Groups are the connected components of exact and
   near-duplicate pairs.
4. **label conflicts**: a group whose members carry several labels is kept only if one label
   has a strict majority of its members (the representative then carries that label); otherwise
   the whole group is dropped, since no label can be trusted.

One representative per group is kept: the first member (lowest index, i.e. first in file
order) among those with the group's label. The other members are counted as exact duplicates
(identical pixels to the representative's) or near-duplicates; the members of a dropped group
as label conflicts. ``n_input = n_kept + blank + exact_duplicates + near_duplicates +
label_conflicts`` always holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

#: bumped when the rule or a threshold changes (part of every dataset's identity)
VERSION = 1
#: images with a pixel standard deviation below this (0-255 scale) are blank
BLANK_STD = 2.0
#: pHash Hamming distance (of 64 bits) up to which two images are near-duplicate candidates
NEAR_HAMMING = 6
#: worst 12 x 12-grid cell mean absolute difference (values in [0, 1]) up to which candidates are near-duplicates
NEAR_DIFF = 0.05
_HASH_SIDE = 32
_GRID = 12
_BATCH = 1024


@dataclass
class HygieneReport:
    """What :func:`clean_images` removed, in numbers of stimuli (and per label, by label name)."""

    n_input: int
    n_kept: int
    blank: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    label_conflicts: int = 0
    #: duplicate groups that spanned several labels: resolved by a strict majority, or dropped
    conflict_groups_resolved: int = 0
    conflict_groups_dropped: int = 0
    #: per label name: ``{"blank": .., "exact_duplicates": .., "near_duplicates": .., "label_conflicts": ..}``
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)
    rule: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.blank + self.exact_duplicates + self.near_duplicates + self.label_conflicts

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the dataset manifest's ``hygiene`` entry)."""
        return {**asdict(self), "removed": self.removed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HygieneReport:
        return cls(**{k: v for k, v in d.items() if k != "removed"})

    def summary(self) -> str:
        """One line: ``"removed 1,402 of 8,103: 1,221 exact duplicates, ..."``."""
        parts = [
            f"{self.exact_duplicates:,} exact duplicates",
            f"{self.near_duplicates:,} near-duplicates",
            f"{self.blank:,} blank",
            f"{self.label_conflicts:,} in label-conflict groups",
        ]
        return f"removed {self.removed:,} of {self.n_input:,} stimuli: {', '.join(parts)}"


def rule() -> dict[str, Any]:
    """The thresholds in force (recorded in every report and cache key)."""
    return {
        "version": VERSION,
        "blank_std": BLANK_STD,
        "near_hamming": NEAR_HAMMING,
        "near_diff": NEAR_DIFF,
        "hash": f"dct-phash-64@{_HASH_SIDE}",
        "grid": _GRID,
        "conflicts": "strict majority, else drop group",
    }


# -- features ------------------------------------------------------------------------------
def _dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[n, n]`` (row k = frequency k)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(torch.pi * (2 * i + 1) * k / (2 * n)) * (2.0 / n) ** 0.5
    m[0] /= 2**0.5
    return m.float()


def image_features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """Per-image hygiene features of uint8 images ``[n, C, H, W]`` (C = 1 or 3).

    Returns:
        ``(std [n] float64 on the 0-255 scale, phash [n] uint64, digests)`` where ``digests[i]``
        is a 16-byte hash of image ``i``'s pixels.
    """
    import torch.nn.functional as F

    n = len(images)
    std = np.empty(n, dtype=np.float64)
    phash = np.empty(n, dtype=np.uint64)
    digests: list[bytes] = []
    dct = _dct_matrix(_HASH_SIDE)
    for s in range(0, n, _BATCH):
        block = np.array(images[s : s + _BATCH], dtype=np.uint8)  # one read of a memory map, writable
        digests += [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in block]
        x = torch.from_numpy(block).reshape(len(block), -1, *block.shape[-2:])
        std[s : s + len(block)] = x.flatten(1).double().std(dim=1, unbiased=False).numpy()
        gray = x.float().div_(255).mean(dim=1, keepdim=True)
        gray = F.interpolate(gray, size=_HASH_SIDE, mode="bilinear", antialias=True)[:, 0]
        low = (dct @ gray @ dct.T)[:, :8, :8].flatten(1)  # [b, 64] lowest frequencies
        bits = (low > low.median(dim=1, keepdim=True).values).numpy()
        phash[s : s + len(block)] = np.packbits(bits, axis=1).view(">u8")[:, 0]
    return std, phash, digests


def hash_pairs(phash: np.ndarray, max_hamming: int) -> np.ndarray:
    """Pairs ``[p, 2]`` (``i < j``) of hashes ``phash [n]`` (uint64) at Hamming distance <= ``max_hamming``.

    All pairs are compared by XOR and popcount in row blocks (n = 60,000: about 20 s on one core).
    """
    n = len(phash)
    found = [np.zeros((0, 2), dtype=np.int64)]
    rows = 1024
    for s in range(0, n, rows):
        dist = np.bitwise_count(phash[s : s + rows, None] ^ phash[None, s:])  # j >= s only
        i, j = np.nonzero(dist <= max_hamming)
        keep = i < j
        found.append(np.stack([i[keep] + s, j[keep] + s], axis=1).astype(np.int64))
    return np.concatenate(found)


def local_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far images ``a[p, C, H, W]`` and ``b[p, C, H, W]`` (uint8) are from being one picture: ``[p]``.

    The absolute difference (mean over channels, values in [0, 1]) is averaged in each cell of a
    12 x 12 grid and the worst cell is taken, at the best of the nine relative shifts by up to one
    pixel (one-pixel borders excluded). Noise and re-encoding spread thinly over all cells; a
    changed detail fills one cell.
    """
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(a, dtype=np.float32)).div_(255)
    y = torch.from_numpy(np.asarray(b, dtype=np.float32)).div_(255)
    h, w = x.shape[-2:]
    ref = y[:, :, 1 : h - 1, 1 : w - 1]
    best = torch.full((len(x),), float("inf"))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            d = (x[:, :, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] - ref).abs().mean(dim=1, keepdim=True)
            best = torch.minimum(best, F.adaptive_avg_pool2d(d, _GRID).flatten(1).amax(dim=1))
    return best.numpy().astype(np.float64)


def near_pairs(images: np.ndarray, phash: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Near-duplicate pairs ``[p, 2]`` (positions in ``rows``, ``i < j``) among ``images[rows]``:
    pHash distance <= :data:`NEAR_HAMMING` and :func:`local_difference` <= :data:`NEAR_DIFF`."""
    cand = hash_pairs(phash[rows], NEAR_HAMMING)
    keep = np.zeros(len(cand), dtype=bool)
    step = max(1, 2**22 // int(np.prod(images.shape[1:])))  # about 16 MB of pixels per side
    for s in range(0, len(cand), step):
        c = cand[s : s + step]
        a = _read(images, rows[c[:, 0]])
        b = _read(images, rows[c[:, 1]])
        keep[s : s + len(c)] = local_difference(a, b) <= NEAR_DIFF
    return cand[keep]


def _read(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` read in file order (memory maps), as ``[m, C, H, W]``."""
    from benchmark.data.images import read_rows

    out = read_rows(images, rows)
    return out.reshape(len(rows), -1, *out.shape[-2:])


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component id ``[n]`` of the graph with ``pairs`` as edges: the smallest member index."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(pairs):
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n, dtype=np.int64))
    return first[comp]


# -- the rule -------------------------------------------------------------------------------
def clean_images(
    images: np.ndarray, labels: np.ndarray | None = None, label_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, HygieneReport]:
    """Apply the hygiene rule (module docstring) to uint8 images ``[n, C, H, W]`` with optional
    integer ``labels [n]``.

    Returns:
        ``(kept [m], kept_labels [m] or None, report)``: the sorted indices of the survivors, their
        labels (the group's majority label), and the counts.
    """
    std, phash, digests = image_features(images)
    n = len(std)
    lab = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    names = label_names if label_names is not None else [str(i) for i in range(int(lab.max(initial=-1)) + 1)]
    blank = std < BLANK_STD
    alive = np.flatnonzero(~blank)
    exact_of = _exact_groups(digests, alive)
    heads = alive[exact_of[alive] == alive]
    pairs = near_pairs(images, phash, heads)
    group = np.full(n, -1, dtype=np.int64)
    group[heads] = heads[_components(len(heads), pairs)]  # head -> smallest head of its component
    group[alive] = group[exact_of[alive]]
    reason = np.full(n, "", dtype=object)  # why each removed stimulus went
    reason[blank] = "blank"
    kept, kept_labels, resolved, dropped = _resolve(alive, group, exact_of, lab, reason)
    report = HygieneReport(
        n_input=n, n_kept=len(kept), conflict_groups_resolved=resolved, conflict_groups_dropped=dropped, rule=rule()
    )
    for what in ("blank", "exact_duplicates", "near_duplicates", "label_conflicts"):
        hit = reason == what
        setattr(report, what, int(hit.sum()))
        for li, c in zip(*np.unique(lab[hit], return_counts=True)):
            report.by_label.setdefault(names[int(li)], {})[what] = int(c)
    return kept, (None if labels is None else kept_labels), report


def _exact_groups(digests: list[bytes], alive: np.ndarray) -> np.ndarray:
    """``exact_of [n]``: for each stimulus in ``alive``, the first stimulus with the same pixel digest."""
    first_seen: dict[bytes, int] = {}
    exact_of = np.arange(len(digests), dtype=np.int64)
    for i in alive:
        exact_of[i] = first_seen.setdefault(digests[i], int(i))
    return exact_of


def _resolve(
    alive: np.ndarray, group: np.ndarray, exact_of: np.ndarray, lab: np.ndarray, reason: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One representative per group (see the module docstring); fills ``reason [n]`` for the others.

    Returns ``(kept [m] sorted, their labels [m], conflict groups resolved, conflict groups dropped)``.
    """
    sizes = np.bincount(group[alive], minlength=len(group))
    single = alive[sizes[group[alive]] == 1]
    kept, kept_lab = [single], [lab[single]]
    resolved = dropped = 0
    multi = alive[sizes[group[alive]] > 1]
    order = multi[np.argsort(group[multi], kind="stable")]  # members in index order within a group
    for members in np.split(order, np.flatnonzero(np.diff(group[order])) + 1) if len(order) else []:
        counts = np.bincount(lab[members])
        winner = int(np.argmax(counts))
        if np.count_nonzero(counts) > 1:
            if counts[winner] * 2 <= len(members):  # no strict majority: drop the group
                dropped += 1
                reason[members] = "label_conflicts"
                continue
            resolved += 1
        rep = members[lab[members] == winner][:1]
        kept.append(rep)
        kept_lab.append(np.asarray([winner], dtype=np.int64))
        others = members[members != rep[0]]
        same = exact_of[others] == exact_of[rep[0]]
        reason[others[same]] = "exact_duplicates"
        reason[others[~same]] = "near_duplicates"
    idx, labs = np.concatenate(kept).astype(np.int64), np.concatenate(kept_lab).astype(np.int64)
    order = np.argsort(idx, kind="stable")
    return idx[order], labs[order], resolved, dropped


def clean_cached(
    images: np.ndarray, labels: np.ndarray | None, label_names: list[str] | None, parts: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray | None, HygieneReport]:
    """:func:`clean_images` through the stage cache (stage ``hygiene``).

    ``parts`` must fix the images (e.g. the dataset's file fingerprint and loading options, or,
    for images drawn by code, that code's :func:`~benchmark.codedigest.code_digest` as
    ``"code"``); the labels, the rule and this module's code digest are added to the key here.
    """
    import json

    from benchmark.cache import current_cache
    from benchmark.codedigest import code_digest

    lab = None if labels is None else np.asarray(labels, dtype=np.int64)
    key = {
        **parts,
        "n": len(images),
        "labels": None if lab is None else hashlib.blake2b(lab.tobytes(), digest_size=16).hexdigest(),
        "label_names": label_names,
        "rule": rule(),
        "hygiene_code": code_digest(__name__),
    }

    def compute(tmp) -> None:
        kept, kept_labels, report = clean_images(images, lab, label_names)
        np.save(tmp / "kept.npy", kept)
        np.save(tmp / "labels.npy", kept_labels if kept_labels is not None else np.zeros(0, dtype=np.int64))
        (tmp / "report.json").write_text(json.dumps(report.as_dict(), indent=1, sort_keys=True))

    path = current_cache().get_or_compute("hygiene", key, compute)
    report = HygieneReport.from_dict(json.loads((path / "report.json").read_text()))
    kept = np.load(path / "kept.npy")
    return kept, (None if lab is None else np.load(path / "labels.npy")), report


def image_manifest(stimuli, **extra: Any) -> dict[str, Any]:
    """The ``datasets.json`` entry of an image set with a :class:`HygieneReport` in ``stimuli.hygiene``:
    name, identity, stimuli per label, the hygiene counts, and ``extra`` (e.g. unreadable files)."""
    out: dict[str, Any] = {"name": stimuli.identity().get("name", type(stimuli).__name__), "identity": stimuli.identity()}
    out["stimuli"] = len(stimuli)
    if "labels" in stimuli.provides and stimuli.label_names:
        counts = np.bincount(stimuli.labels(np.arange(len(stimuli))), minlength=len(stimuli.label_names))
        out["labels"] = {name: int(c) for name, c in zip(stimuli.label_names, counts)}
    out.update(extra)
    out["hygiene"] = stimuli.hygiene.as_dict()
    return out
