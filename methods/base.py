"""The method contract: ``Method.fit(acts, seed=...) -> Basis``.

A :class:`Method` is a frozen dataclass whose fields are its hyperparameters, so its
parameters are its identity; bump the class attribute ``version`` when results change.

A :class:`Basis` holds ``directions [k, d]`` (unit rows: the readout view), encodes
activations ``[n, d]`` into codes ``[n, k]`` (how strongly each direction is present), may
decode codes back, and carries ``stats`` (FVU, L0, dead fraction, fit seconds). It saves to
``tensors.safetensors`` + ``basis.json``; no pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from benchmark.activations import ActivationStore
from benchmark.errors import UserError

_BASIS_KINDS: dict[str, type[Basis]] = {}


@dataclass
class Basis:
    """Directions in activation space and how to read them.

    Attributes:
        directions: ``[k, d]`` unit rows.
        stats: fit statistics (filled by :func:`compute_stats` and the harness).
    """

    kind: ClassVar[str] = "basis"
    directions: Tensor
    stats: dict[str, Any] = field(default_factory=dict)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _BASIS_KINDS[cls.kind] = cls

    @property
    def k(self) -> int:
        return self.directions.shape[0]

    @property
    def d(self) -> int:
        return self.directions.shape[1]

    def encode(self, acts: Tensor) -> Tensor:
        """Codes ``[n, k]`` for activations ``[n, d]``."""
        raise NotImplementedError

    def preactivation(self, acts: Tensor) -> Tensor:
        """Dense ranking values ``[n, k]`` for ``acts [n, d]``: what the code thresholds.

        Where a code is non-zero this is the code itself (or a value in the same order); where
        it is zero, how far the sample is from activating it (a real value, so zeros are not
        ties). Sorting by it keeps a sparse code's top set and order and gives its "bottom" a
        meaning: the samples farthest from activating the direction, as a dense code's bottom
        is. Dense bases: the code (this default). See :mod:`metrics.protocols`.
        """
        return self.encode_with_preactivation(acts)[1]

    def encode_with_preactivation(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """``(codes [n, k], preactivation [n, k])`` of ``acts [n, d]`` in one pass (the default,
        for dense codes: the codes twice)."""
        codes = self.encode(acts)
        return codes, codes

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[n, d]`` from codes ``[n, k]``."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    @property
    def has_decoder(self) -> bool:
        return type(self).decode is not Basis.decode

    def to(self, device: torch.device | str) -> Basis:
        """A copy with every tensor on ``device``."""
        changes = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **changes)

    # -- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``tensors.safetensors`` and ``basis.json`` into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                tensors[f.name] = value.detach().cpu().contiguous().clone()
            else:
                meta[f.name] = value
        save_file(tensors, str(path / "tensors.safetensors"))
        (path / "basis.json").write_text(json.dumps({"kind": self.kind, "fields": meta}, indent=1, sort_keys=True))

    @staticmethod
    def load(path: str | Path) -> Basis:
        """Load a basis saved by :meth:`save`, whatever its kind."""
        path = Path(path)
        info = json.loads((path / "basis.json").read_text())
        cls = _BASIS_KINDS.get(info["kind"])
        if cls is None:
            raise UserError(f"{path}: unknown basis kind {info['kind']!r} (known: {sorted(_BASIS_KINDS)})")
        tensors = load_file(str(path / "tensors.safetensors"))
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in {**info["fields"], **tensors}.items() if k in names}
        return cls(**kwargs)


@dataclass
class LinearBasis(Basis):
    """Codes are affine projections: ``codes = (acts - bias) @ encoder.T``.

    Attributes:
        encoder: ``[k, d]``.
        bias: ``[d]`` subtracted before encoding and added after decoding.
        decoder: ``[k, d]`` or None; ``decode(codes) = codes @ decoder + bias``.
    """

    kind: ClassVar[str] = "linear"
    encoder: Tensor | None = None
    bias: Tensor | None = None
    decoder: Tensor | None = None

    def __post_init__(self) -> None:
        if self.encoder is None:
            self.encoder = self.directions
        if self.bias is None:
            self.bias = torch.zeros(self.directions.shape[1], dtype=self.directions.dtype, device=self.directions.device)

    def encode(self, acts: Tensor) -> Tensor:
        return (acts - self.bias) @ self.encoder.T

    def decode(self, codes: Tensor) -> Tensor:
        if self.decoder is None:
            raise NotImplementedError("this linear basis has no decoder")
        return codes @ self.decoder + self.bias

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None


@dataclass(frozen=True)
class Method:
    """Base class of every basis-finding method (a frozen dataclass of hyperparameters)."""

    version: ClassVar[str] = "1"

    def fit(
        self, acts: ActivationStore | Tensor | np.ndarray, *, seed: int, device: str | torch.device = "cpu"
    ) -> Basis:
        """Fit on ``acts [n, d]`` (fit split only) and return a :class:`Basis` of ``k`` directions."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        from benchmark.registry import METHODS

        for n in METHODS.names():
            try:
                if METHODS.get(n) is type(self):
                    return n
            except UserError:
                continue
        return type(self).__name__

    def params(self) -> dict[str, Any]:
        """The hyperparameters as a JSON-able dict."""
        return dataclasses.asdict(self)

    def prepare(
        self, acts: ActivationStore | Tensor | np.ndarray, k: int | None = None, *, max_k: int | None = None
    ) -> ActivationStore:
        """Wrap ``acts`` and check them: non-empty, finite, ``k <= max_k`` where the method needs it."""
        store = ActivationStore.wrap(acts)
        where = f"method {type(self).__name__} on {store.name}"
        if store.n == 0:
            raise UserError(f"{where}: no activations (empty split)")
        if k is not None and max_k is not None and k > max_k:
            raise UserError(f"{where}: asks for {k} directions but can give at most {max_k} (d = {store.d})")
        store.check_finite(where)
        return store


def resolve_k(n_components: int | None, d: int, expansion: float | None = None) -> int:
    """Number of directions: explicit ``n_components``, else ``expansion * d``, else ``d``."""
    if n_components is not None:
        if n_components < 1:
            raise UserError(f"n_components must be >= 1, got {n_components}")
        return int(n_components)
    if expansion is not None:
        return max(1, int(round(expansion * d)))
    return d


def orient_by_skew(directions: Tensor, codes: Tensor) -> Tensor:
    """The sign ``[k]`` (+1 or -1) per row of ``directions [k, d]`` that gives its codes
    ``[n, k]`` positive skew; multiply directions and encoder rows by it."""
    centred = codes - codes.mean(dim=0)
    skew = (centred**3).mean(dim=0)
    sign = torch.where(skew < 0, -1.0, 1.0).to(directions.dtype)
    return sign


def checked_sample(store: ActivationStore, where: str, seed: int, max_rows: int = 16_384) -> Tensor:
    """A seeded sample ``[m, d]`` (``m <= max_rows``) of the store's rows; a :class:`UserError`
    naming ``where`` when the layer is constant (zero variance: nothing to fit)."""
    sample = store.load(max_rows=min(store.n, max_rows), seed=seed)
    centred_var = float(((sample - sample.mean(0)) ** 2).sum(1).mean())
    if centred_var <= 1e-12 * max(float((sample**2).sum(1).mean()), 1e-30):
        raise UserError(f"{where}: the activations have zero variance (a constant layer); nothing to fit")
    return sample


def unit_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows of ``x [k, d]`` scaled to unit L2 norm."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


@torch.no_grad()
def compute_stats(
    basis: Basis, store: ActivationStore, *, batch_size: int = 4096, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Reconstruction and sparsity statistics on held-out activations, streamed.

    Returns a dict with ``fvu`` (fraction of variance unexplained, mean-centred as in SAEBench;
    NaN when the basis has no decoder), ``explained_variance`` (1 - fvu), ``l0`` (mean number
    of non-zero codes per sample), ``dead_fraction`` (directions whose code is 0 on every probe sample)
    and ``n_probe``.
    """
    basis = basis.to(device)
    n = 0
    sum_x = torch.zeros(store.d, dtype=torch.float64, device=device)
    sum_sq = torch.zeros((), dtype=torch.float64, device=device)
    sse = torch.zeros((), dtype=torch.float64, device=device)
    nonzero = torch.zeros((), dtype=torch.float64, device=device)
    active = torch.zeros(basis.k, dtype=torch.bool, device=device)
    decodes = basis.has_decoder
    for x in store.batches(batch_size, device=device):
        codes = basis.encode(x)
        nonzero += (codes != 0).sum()
        active |= (codes != 0).any(dim=0)
        if decodes:
            sse += ((basis.decode(codes) - x).double() ** 2).sum()
        sum_x += x.double().sum(dim=0)
        sum_sq += (x.double() ** 2).sum()
        n += len(x)
    total_var = sum_sq - (sum_x**2).sum() / max(n, 1)
    fvu = float(sse / total_var) if decodes and total_var > 0 else math.nan
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu if not math.isnan(fvu) else math.nan,
        "l0": float(nonzero / max(n, 1)),
        "dead_fraction": float((~active).float().mean()),
        "n_probe": n,
    }
