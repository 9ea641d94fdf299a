"""The metric contract: ``Metric.score(examples: TopExamples) -> ndarray[k]``.

A :class:`Metric` is a frozen dataclass of its settings with class metadata
(``higher_is_better``, ``modalities``, ``requires``, ``version``). Most metrics are a
*similarity* between stimuli under a *protocol* (:class:`SimilarityMetric`): the similarity is
written once as ``embed`` + ``pairwise``; the protocols live in :mod:`metrics.protocols`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError


@dataclass
class Ranked:
    """The extremes of each direction's activations within one quantile band.

    Attributes:
        top_idx: ``[k, n]`` probe-sample indices, highest activation first.
        top_val: ``[k, n]`` their activations.
        bottom_idx: ``[k, n]`` indices, lowest activation first.
        bottom_val: ``[k, n]`` their activations.
        quantile: the band: activations between the ``q`` and ``1 - q`` quantiles.
        count: ``[k]`` samples in each direction's band (None: unknown, e.g. random sets);
            a row holds filler past its count.
    """

    top_idx: np.ndarray
    top_val: np.ndarray
    bottom_idx: np.ndarray
    bottom_val: np.ndarray
    quantile: float = 0.0
    count: np.ndarray | None = None


@dataclass
class TopExamples:
    """Per direction, its top and bottom probe stimuli, with lazy access to the stimuli.

    ``bands`` maps a quantile ``q`` to the :class:`Ranked` extremes within the central band
    ``[quantile(q), quantile(1 - q)]``; ``q = 0.0`` (the whole range) is always present.
    For chance levels, the harness builds a ``TopExamples`` whose "directions" are random
    index sets (``is_random = True``). ``pool`` holds the probe-sample indices the examples
    were drawn from (None: all of ``stimuli``); set metrics draw their own references from it.
    """

    stimuli: StimulusSet
    bands: dict[float, Ranked]
    is_random: bool = False
    pool: np.ndarray | None = None

    @property
    def k(self) -> int:
        return self.bands[0.0].top_idx.shape[0]

    def band(self, quantile: float) -> Ranked:
        try:
            return self.bands[float(quantile)]
        except KeyError:
            raise UserError(f"top examples were computed for quantiles {sorted(self.bands)}, not {quantile}") from None

    @property
    def top_idx(self) -> np.ndarray:
        return self.bands[0.0].top_idx

    @property
    def top_val(self) -> np.ndarray:
        return self.bands[0.0].top_val

    @property
    def bottom_idx(self) -> np.ndarray:
        return self.bands[0.0].bottom_idx

    @property
    def bottom_val(self) -> np.ndarray:
        return self.bands[0.0].bottom_val


@dataclass(frozen=True)
class Metric:
    """Base class of every metric: a frozen dataclass of settings plus class metadata."""

    higher_is_better: ClassVar[bool] = True
    modalities: ClassVar[frozenset[str]] = frozenset({"vision", "language"})
    requires: ClassVar[frozenset[str]] = frozenset()
    version: ClassVar[str] = "1"

    def needs(self) -> tuple[int, tuple[float, ...]]:
        """``(n, quantiles)``: how many top/bottom stimuli per side and which bands it reads."""
        return 16, (0.0,)

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        """Why this metric does not apply to ``stimuli`` (None when it does)."""
        if stimuli.modality not in self.modalities:
            return f"{stimuli.modality} stimuli; metric is for {'/'.join(sorted(self.modalities))}"
        missing = sorted(self.requires - set(stimuli.provides))
        if missing:
            return f"stimuli do not provide {', '.join(missing)}"
        return None

    def score(self, examples: TopExamples) -> np.ndarray:
        """One value per direction, ``[k]``."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def columns(self) -> dict[str, str]:
        """Score name suffixes this metric reports (``""`` for the headline score)."""
        return {"": ""}

    def score_all(self, examples: TopExamples) -> dict[str, np.ndarray]:
        """Every reported score: ``{suffix: [k]}``; the default is just :meth:`score`."""
        return {"": self.score(examples)}

    def direction_status(self, examples: TopExamples) -> dict[str, np.ndarray]:
        """Per reported column, the status of each direction ``[k]`` (object: ``"ok"`` or why
        its score is NaN) where some direction is not ``"ok"``; ``{}`` when all are."""
        return {}


@dataclass(frozen=True)
class SimilarityMetric(Metric):
    """A pairwise similarity between stimuli under a protocol.

    Subclasses implement :meth:`embed` (stimuli -> per-stimulus representation) and
    :meth:`pairwise` (two batches of representations -> similarity matrices).

    Settings:
        protocol: ``"consistency"`` (mean pairwise similarity within the top ``n``) or
            ``"psychophysics"`` (the simulated 2-AFC task of Klindt et al. 2023).
        n: top-set size for consistency.
        n_trials, n_references, quantiles, zscore, seed: psychophysics settings; the headline
            score is the first quantile's; the others are reported as extra columns.
    """

    protocol: str = "consistency"
    n: int = 16
    n_trials: int = 20
    n_references: int = 9
    quantiles: tuple[float, ...] = (0.0, 0.25)
    zscore: bool = True
    seed: int = 42
    _protocols: ClassVar[tuple[str, ...]] = ("consistency", "psychophysics")

    def __post_init__(self) -> None:
        if self.protocol not in self._protocols:
            raise UserError(
                f"{type(self).__name__}: unknown protocol {self.protocol!r} (valid: {', '.join(self._protocols)})"
            )
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        if self.protocol == "psychophysics":
            qs = self.quantiles
            if not qs or qs[0] != 0.0 or any(a >= b for a, b in zip(qs, qs[1:])) or qs[-1] >= 0.5:
                raise UserError(f"{type(self).__name__}: quantiles must start at 0.0, ascend and stay < 0.5, got {qs}")

    def embed(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        """Representations ``[m, ...]`` of stimuli ``idx [m]``."""
        raise NotImplementedError

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """Similarities ``[B, m, p]`` between ``a [B, m, ...]`` and ``b [B, p, ...]``."""
        raise NotImplementedError

    def needs(self) -> tuple[int, tuple[float, ...]]:
        if self.protocol == "psychophysics":
            return self.n_trials * (self.n_references + 1), self.quantiles
        return self.n, (0.0,)

    def columns(self) -> dict[str, str]:
        if self.protocol == "psychophysics":
            return {"" if i == 0 else f"q{q:g}": "" if i == 0 else f"q={q:g}" for i, q in enumerate(self.quantiles)}
        return {"": ""}

    def gather(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        """Embeddings for an index array of any shape ``[...]`` -> ``[..., *emb]``, each stimulus embedded once."""
        flat = np.asarray(idx).reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        emb = self.embed(stimuli, unique)
        return emb[torch.from_numpy(inverse)].reshape(*idx.shape, *emb.shape[1:])

    def score_all(self, examples: TopExamples) -> dict[str, np.ndarray]:
        from metrics import protocols

        if self.protocol == "consistency":
            return {"": protocols.consistency(self, examples, self.n)}
        out: dict[str, np.ndarray] = {}
        for i, q in enumerate(self.quantiles):
            band = examples.band(q)
            out["" if i == 0 else f"q{q:g}"] = protocols.psychophysics(
                self, examples.stimuli, band, quantile_index=i, pool=examples.pool
            )
        return out

    def score(self, examples: TopExamples) -> np.ndarray:
        return self.score_all(examples)[""]

    def direction_status(self, examples: TopExamples) -> dict[str, np.ndarray]:
        """Psychophysics: directions whose band is too small for the task (``insufficient: ...``)."""
        from metrics import protocols

        if self.protocol != "psychophysics" or examples.is_random:
            return {}
        out = {}
        for i, q in enumerate(self.quantiles):
            status = protocols.band_status(examples.band(q), self.n_trials, self.n_references)
            if (status != "ok").any():
                out["" if i == 0 else f"q{q:g}"] = status
        return out
