"""Sparse toy data with planted features (after Sharkey, Braun & Millidge 2022).

Activations ``x = z @ F`` in ``R^d`` are made from ``m`` unit ground-truth features ``F [m, d]``
(``m > d``: features in superposition). Feature ``i`` is active with probability
``p_i ∝ decay**i`` (decaying frequencies), scaled so that about ``mean_active`` features are
active per sample; an active feature's coefficient is uniform in ``[0, 1]`` (non-negative).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sparse_toy_data(
    n: int = 20_000,
    d: int = 256,
    m: int = 512,
    mean_active: float = 5.0,
    decay: float = 0.996,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Planted sparse data.

    Returns:
        ``acts [n, d]``, ``features [m, d]`` (unit rows), ``codes [n, m]`` (true coefficients).
    """
    gen = torch.Generator().manual_seed(7_919 * seed + 1_000_003)  # unlike any method's init stream
    features = torch.randn(m, d, generator=gen)
    features = features / features.norm(dim=1, keepdim=True)
    probs = decay ** torch.arange(m, dtype=torch.float64)
    probs = (probs * mean_active / probs.sum()).clamp(max=1.0).float()
    active = torch.rand(n, m, generator=gen) < probs
    codes = torch.rand(n, m, generator=gen) * active
    return codes @ features, features, codes


def mean_max_cosine(true: Tensor, learned: Tensor) -> tuple[float, float]:
    """Recovery of planted directions, both ways.

    Args:
        true: ``[m, d]`` ground-truth features.
        learned: ``[k, d]`` learned directions.

    Returns:
        ``(forward, reverse)``: forward is, for each true feature, its best ``|cosine|`` over
        learned directions, averaged over features; reverse is, for each learned direction, its
        best ``|cosine|`` over true features, averaged (dead or duplicated latents lower it).
    """
    t = true.float() / true.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = learned.float() / learned.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (t @ u.T).abs()  # [m, k]
    return float(cos.max(dim=1).values.mean()), float(cos.max(dim=0).values.mean())
