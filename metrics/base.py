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
        top_next: ``[k]`` the highest activation *not* kept (rank ``n + 1``; ``-inf`` when the
            band holds no more samples); None when unknown (random sets, hand-made examples),
            then every set counts as determined.
        bottom_next: ``[k]`` the same for the bottom side (``+inf`` when none).
        top_rank, bottom_rank: ``[k, n]`` the values the samples were ranked by (the basis's
            preactivation; :mod:`benchmark.topk`), ``top_rank_next``, ``bottom_rank_next``
            ``[k]`` the next ones; None: the activations themselves.
        count: ``[k]`` samples in each direction's band (None: unknown, e.g. random sets);
            a row holds filler past its count.

    A top-``m`` set is *value-determined* when the value at rank ``m`` is strictly above the
    value at rank ``m + 1``; otherwise which of the tied samples belong to it is decided by
    tie-breaking (a dead latent's zeros, a sparse code with fewer than ``m`` active samples),
    and the set says nothing about the direction (:meth:`determined`). Sets of the stimuli that
    activate a direction most are judged on the activations (``by="value"``); the
    psychophysics protocol, which reads the ranking over the whole band, on the ranking values
    (``by="rank"``).
    """

    top_idx: np.ndarray
    top_val: np.ndarray
    bottom_idx: np.ndarray
    bottom_val: np.ndarray
    quantile: float = 0.0
    top_next: np.ndarray | None = None
    bottom_next: np.ndarray | None = None
    top_rank: np.ndarray | None = None
    bottom_rank: np.ndarray | None = None
    top_rank_next: np.ndarray | None = None
    bottom_rank_next: np.ndarray | None = None
    count: np.ndarray | None = None

    def _side(self, side: str, by: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(values [k, n], next [k] or None)`` of ``side`` (``"top"``/``"bottom"``): the ranked
        activations (``by="value"``) or the ranking values (``by="rank"``; the activations when
        the ranking values are not recorded)."""
        if by == "rank" and (self.top_rank if side == "top" else self.bottom_rank) is not None:
            return (self.top_rank, self.top_rank_next) if side == "top" else (self.bottom_rank, self.bottom_rank_next)
        return (self.top_val, self.top_next) if side == "top" else (self.bottom_val, self.bottom_next)

    def determined(self, m: int, side: str = "top", by: str = "value") -> np.ndarray:
        """``[k]`` bool: whether each direction's top-``m`` (or bottom-``m``) set is decided by
        the values alone (``by="value"``: the activations; ``"rank"``: the ranking values), i.e.
        the value at rank ``m`` differs from the one at rank ``m + 1``. ``m`` is capped at the
        kept width; ``m = 0`` sets are always determined."""
        vals, nxt = self._side(side, by)
        k, width = vals.shape
        m = min(int(m), width)
        if m == 0 or (nxt is None and m == width):
            return np.ones(k, dtype=bool)
        after = vals[:, m] if m < width else np.asarray(nxt)
        edge = vals[:, m - 1]
        return edge > after if side == "top" else edge < after


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


def own_network_reason(backbone: str, model: str, model_params: dict[str, Any]) -> str | None:
    """The skip reason when the task's network (``model``, registered name, with ``model_params``)
    is the metric's own ``backbone`` (a registered model name with its default settings): its
    features would judge the directions found in them, which is circular. None otherwise."""
    if model == backbone and not model_params:
        return (
            f"the analysed network {model} would judge its own directions (a network never judges "
            "its own directions: set the metric's model to another network)"
        )
    return None


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

    def model_skip_reason(self, model: str, model_params: dict[str, Any]) -> str | None:
        """Why this metric may not judge directions found in the task's network ``model`` with
        ``model_params`` (None when it may). A metric that embeds stimuli with a network never
        judges that network's own directions (:func:`own_network_reason`)."""
        return None

    def score(self, examples: TopExamples) -> np.ndarray:
        """One value per direction, ``[k]``."""
        raise NotImplementedError

    def determined_sets(self, examples: TopExamples) -> dict[str, np.ndarray]:
        """``{suffix: [k] bool}``: per reported score, whether the ranks it reads are decided by
        values, not by tie-breaking. The default: the top ``n`` of the whole range (``needs``)."""
        band = examples.band(0.0)
        ok = band.determined(self.needs()[0], "top")
        return {suffix: ok for suffix in self.columns()}

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

    def determined_sets(self, examples: TopExamples) -> dict[str, np.ndarray]:
        """Consistency reads the top ``n`` activations; psychophysics the top and bottom
        ``T (R + 1)`` ranks of each band (queries and references), ranked by the basis's
        preactivation, so its sets are judged on those ranking values: a sparse code's zeros are
        ordered by how far each sample is from activating the direction, while a code that is
        its own ranking value (a ReLU neuron) still ties at its floor."""
        if self.protocol == "consistency":
            return {"": examples.band(0.0).determined(self.n, "top")}
        need = self.needs()[0]
        out = {}
        for i, q in enumerate(self.quantiles):
            band = examples.band(q)
            both = band.determined(need, "top", by="rank") & band.determined(need, "bottom", by="rank")
            out["" if i == 0 else f"q{q:g}"] = both
        return out

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
