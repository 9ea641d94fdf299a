"""The stimulus-set contract.

A :class:`StimulusSet` is an indexable collection of ``len(s)`` stimuli. It says what it can
provide in :attr:`provides` (a subset of ``"images"``, ``"rgb_images"``, ``"labels"``,
``"captions"``, ``"texts"``, ``"factors"``, ``"tokens"``) and serves it for any array of indices.
All accessors take ``idx: ndarray[m]`` of int indices and return data in that order.

What a set had to leave out while it was built (unreadable files, sources missing on this
machine) is kept in :attr:`StimulusSet.notes`, one line each; the runner logs each note once
per run (:func:`data_notes` finds them through wrappers such as token samples and subsets).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from benchmark.errors import UserError

CAPABILITIES = frozenset({"images", "rgb_images", "labels", "captions", "texts", "factors", "tokens"})


class StimulusSet:
    """Base class: a finite, indexable set of stimuli.

    Subclasses set :attr:`modality` and :attr:`provides`, implement ``__len__`` and
    :meth:`identity`, and the accessors for what they provide.
    """

    modality: ClassVar[str] = "vision"  # "vision" or "language"
    provides: frozenset[str] = frozenset()
    #: names of the classes, index = label id (when "labels" is provided)
    label_names: list[str] = []
    #: what was left out while building the set, one line each ("clipart: skipped 3 of 8,100 files ...")
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def identity(self) -> dict:
        """JSON-able description that fixes the content (used in cache keys)."""
        raise NotImplementedError

    def images(self, idx: np.ndarray):
        """Images as a float tensor ``[m, C, H, W]`` in [0, 1] (C = 3, or 1 for grayscale)."""
        raise self._missing("images")

    def labels(self, idx: np.ndarray) -> np.ndarray:
        """Integer labels ``[m]`` indexing :attr:`label_names`."""
        raise self._missing("labels")

    def captions(self, idx: np.ndarray) -> list[str]:
        """A short text description per stimulus."""
        raise self._missing("captions")

    def texts(self, idx: np.ndarray) -> list[str]:
        """Text stimuli (for tokens: the context window)."""
        raise self._missing("texts")

    def tokens(self, idx: np.ndarray) -> list[str]:
        """For token samples: the string of the token itself."""
        raise self._missing("tokens")

    def factors(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Ground-truth generative factors, each ``[m]`` (synthetic sets only)."""
        raise self._missing("factors")

    def groups(self) -> np.ndarray | None:
        """Group id per stimulus ``[n]`` (e.g. the document of a token): splits never cut a group."""
        return None

    def _missing(self, what: str) -> Exception:
        return UserError(f"{type(self).__name__} does not provide {what} (it provides {sorted(self.provides)})")

    def describe(self) -> str:
        return f"{type(self).__name__}: {len(self)} stimuli, provides {', '.join(sorted(self.provides))}"


class Subset(StimulusSet):
    """A view on ``parent`` restricted to ``indices`` (e.g. the probe split)."""

    def __init__(self, parent: StimulusSet, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.modality = parent.modality  # type: ignore[misc]
        self.provides = parent.provides
        self.label_names = parent.label_names

    def __len__(self) -> int:
        return len(self.indices)

    def identity(self) -> dict:
        import hashlib

        digest = hashlib.sha256(self.indices.tobytes()).hexdigest()[:16]
        return {"parent": self.parent.identity(), "indices": digest, "n": len(self.indices)}

    def _map(self, idx: np.ndarray) -> np.ndarray:
        return self.indices[np.asarray(idx, dtype=np.int64)]

    def images(self, idx):
        return self.parent.images(self._map(idx))

    def labels(self, idx):
        return self.parent.labels(self._map(idx))

    def captions(self, idx):
        return self.parent.captions(self._map(idx))

    def texts(self, idx):
        return self.parent.texts(self._map(idx))

    def tokens(self, idx):
        return self.parent.tokens(self._map(idx))

    def factors(self, idx):
        return self.parent.factors(self._map(idx))

    def groups(self):
        g = self.parent.groups()
        return None if g is None else g[self.indices]


def data_notes(stimuli: StimulusSet) -> list[str]:
    """The :attr:`~StimulusSet.notes` of ``stimuli`` and of the sets it wraps (a :class:`Subset`'s
    ``parent``, token samples' ``documents``), innermost first, each once."""
    chain: list[StimulusSet] = []
    obj: StimulusSet | None = stimuli
    while obj is not None and all(obj is not seen for seen in chain):
        chain.append(obj)
        inner = getattr(obj, "documents", None)
        obj = inner if inner is not None else getattr(obj, "parent", None)
    notes = [note for obj in reversed(chain) for note in getattr(obj, "notes", ())]
    return list(dict.fromkeys(notes))


def split_indices(stimuli: StimulusSet, fit_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint fit / probe index arrays, fixed by ``seed``; groups are never cut.

    Returns:
        ``(fit_idx, probe_idx)``, each sorted, together covering ``range(len(stimuli))``.
    """
    n = len(stimuli)
    if n < 2:
        raise UserError(f"{stimuli.describe()}: needs at least 2 stimuli to make a fit and a probe split")
    if not 0.0 < fit_fraction < 1.0:
        raise UserError(f"fit_fraction must be between 0 and 1 (exclusive), got {fit_fraction}")
    rng = np.random.default_rng(seed)
    groups = stimuli.groups()
    if groups is None:
        perm = rng.permutation(n)
        n_fit = min(max(1, round(fit_fraction * n)), n - 1)
        return np.sort(perm[:n_fit]), np.sort(perm[n_fit:])
    unique = np.unique(groups)
    if len(unique) < 2:
        raise UserError(f"{stimuli.describe()}: all stimuli are in one group; cannot split by group")
    perm = rng.permutation(unique)
    n_fit = min(max(1, round(fit_fraction * len(unique))), len(unique) - 1)
    fit_groups = perm[:n_fit]
    is_fit = np.isin(groups, fit_groups)
    return np.flatnonzero(is_fit), np.flatnonzero(~is_fit)
