"""Sparse autoencoders: the shared :class:`SAEBasis`, ``sae_l1`` and ``sae_topk``.

:class:`SAEBasis` is the one format every SAE in the suite is read into (trained here, or
loaded from SAELens / dictionary_learning / overcomplete checkpoints)::

    encode(x [n, d]) = act((x - b_dec) @ W_enc.T + b_enc)      -> [n, k]
    decode(z [n, k]) = z @ W_dec + b_dec                        -> [n, d]
    directions       = unit rows of W_dec                       [k, d]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, unit_rows

ACTIVATIONS = ("relu", "topk", "jumprelu")


@dataclass
class SAEBasis(Basis):
    """A sparse autoencoder as a basis.

    Attributes:
        W_enc: ``[k, d]`` encoder weights (one row per latent).
        b_enc: ``[k]`` encoder bias.
        W_dec: ``[k, d]`` decoder weights (one row per latent).
        b_dec: ``[d]`` decoder bias, also subtracted before encoding.
        activation: ``"relu"``, ``"topk"`` (keep the ``topk`` largest ReLU pre-activations per
            row) or ``"jumprelu"`` (``z * (z > threshold)``).
        topk: active latents per sample for ``"topk"``.
        threshold: ``[k]`` thresholds for ``"jumprelu"``.
        directions: ``[k, d]`` unit rows of ``W_dec`` (derived when not given).
    """

    kind: ClassVar[str] = "sae"
    directions: Tensor | None = None
    W_enc: Tensor | None = None
    b_enc: Tensor | None = None
    W_dec: Tensor | None = None
    b_dec: Tensor | None = None
    activation: str = "relu"
    topk: int | None = None
    threshold: Tensor | None = None

    def __post_init__(self) -> None:
        if self.W_enc is None or self.W_dec is None:
            raise UserError("SAEBasis needs W_enc [k, d] and W_dec [k, d]")
        k, d = self.W_dec.shape
        if tuple(self.W_enc.shape) != (k, d):
            raise UserError(f"SAEBasis: W_enc has shape {tuple(self.W_enc.shape)}, W_dec {(k, d)}; they must match")
        if self.b_enc is None:
            self.b_enc = torch.zeros(k, dtype=self.W_enc.dtype, device=self.W_enc.device)
        if self.b_dec is None:
            self.b_dec = torch.zeros(d, dtype=self.W_dec.dtype, device=self.W_dec.device)
        if self.activation not in ACTIVATIONS:
            raise UserError(f"SAEBasis: unknown activation {self.activation!r} (valid: {', '.join(ACTIVATIONS)})")
        if self.activation == "topk" and (self.topk is None or not 1 <= int(self.topk) <= k):
            raise UserError(f"SAEBasis: activation 'topk' needs 1 <= topk <= {k}, got {self.topk}")
        if self.activation == "jumprelu" and self.threshold is None:
            raise UserError("SAEBasis: activation 'jumprelu' needs threshold [k]")
        if self.directions is None:
            self.directions = unit_rows(self.W_dec.detach().float())

    def pre_activations(self, acts: Tensor) -> Tensor:
        """``(acts - b_dec) @ W_enc.T + b_enc``: ``[n, k]`` for ``acts [n, d]``."""
        x = acts.to(self.W_enc.dtype)
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.T)

    def encode(self, acts: Tensor) -> Tensor:
        """Non-negative codes ``[n, k]`` for ``acts [n, d]``."""
        pre = self.pre_activations(acts)
        if self.activation == "relu":
            return torch.relu(pre)
        if self.activation == "topk":
            vals, idx = pre.topk(int(self.topk), dim=1)
            return torch.zeros_like(pre).scatter_(1, idx, torch.relu(vals))
        return pre * (pre > self.threshold)

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[n, d]`` from ``codes [n, k]``."""
        return codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
