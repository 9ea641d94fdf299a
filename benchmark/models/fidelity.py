"""Downstream fidelity: splice a basis's reconstruction back into a classifier's forward pass.

For a basis fitted on the pooled activations ``a [b, d]`` of a layer, the layer's output is
replaced during the forward pass by one whose pooled value is ``a_hat = decode(encode(a))``:

* ``[b, d]`` outputs (linear layers, pooled features): replaced by ``a_hat``;
* ``[b, c, h, w]`` conv maps: every position of channel ``j`` is shifted by
  ``a_hat[:, j] - a[:, j]`` (a *shift of the spatial mean*; with ``spatial = "max"`` the same
  shift moves the spatial max to ``a_hat``). The spatial pattern within a channel is kept:
  the basis only ever saw the pooled value, so it can only change that;
* ``[b, t, d]`` token outputs: every token shifted the same way.

``accuracy_recovered`` is the top-1 agreement between the spliced and the unmodified model on
held-out images (the probe split, at most ``max_samples``); ``accuracy_recovered_mean_ablation``
is the same agreement when the pooled activations are replaced by their mean over those images,
the floor that a basis should beat. Models whose output is not ``[b, classes]`` get no entry.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from benchmark.models.base import pool_spatial


def _shifted(out: torch.Tensor, pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``out`` changed so that its pooled value becomes ``target`` (both ``[b, d]``)."""
    delta = (target - pooled).to(out.dtype)
    if out.dim() == 2:
        return target.to(out.dtype)
    if out.dim() == 4:
        return out + delta[:, :, None, None]
    if out.dim() == 3:
        return out + delta[:, None, :]
    raise ValueError(f"cannot splice into an output of shape {tuple(out.shape)}")


def probe_subset(idx: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """At most ``max_samples`` of ``idx``, a seeded sorted subset."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) <= max_samples:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=max_samples, replace=False))


@torch.inference_mode()
def splice_fidelity(
    model: Any,
    basis: Any,
    layer: str,
    samples: Any,
    idx: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    max_samples: int = 512,
    batch_size: int = 64,
) -> dict[str, float]:
    """Top-1 agreement of ``model`` with ``basis``'s reconstruction spliced in at ``layer``.

    Args:
        model: a :class:`~benchmark.models.base.TorchImageModel` (``net``, ``preprocess``, ``spatial``).
        basis: a basis with a decoder, fitted on ``[n, d]`` pooled activations of ``layer``.
        samples, idx: the stimuli and the held-out indices to evaluate on.

    Returns:
        ``{"accuracy_recovered", "accuracy_recovered_mean_ablation", "fidelity_n"}``, or ``{}``
        when the model's output is not ``[b, classes]``.
    """
    if not getattr(model, "is_classifier", True):
        return {}
    model.check_layer(layer)
    net = model.net.to(device)
    module = dict(net.named_modules())[layer]
    basis = basis.to(device)
    idx = probe_subset(idx, max_samples)
    mode: dict[str, Any] = {"how": None, "mean": None}
    pooled_seen: list[torch.Tensor] = []

    def hook(_module, _inputs, out):
        if not isinstance(out, torch.Tensor):
            return None
        pooled = pool_spatial(out, model.spatial).float()
        if mode["how"] == "record":
            pooled_seen.append(pooled)
            return None
        if mode["how"] == "splice":
            target = basis.decode(basis.encode(pooled))
        elif mode["how"] == "ablate":
            target = mode["mean"].expand_as(pooled)
        else:
            return None
        return _shifted(out, pooled, target)

    handle = module.register_forward_hook(hook)
    try:
        batches = [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]

        def inputs(b: np.ndarray) -> torch.Tensor:
            return model.preprocess(samples.images(b).to(device))

        # the unmodified predictions and the mean-ablation floor depend only on (layer, images):
        # computed once per model and reused for every basis
        memo = model.__dict__.setdefault("_fidelity_reference", {})
        key = (layer, str(device), hashlib.sha256(np.ascontiguousarray(idx).tobytes()).hexdigest())
        if key not in memo:
            mode["how"] = "record"
            preds = []
            for b in batches:
                logits = net(inputs(b))
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
                    return {}  # not a classifier
                preds.append(logits.argmax(dim=1))
            pred = torch.cat(preds)
            mode["mean"] = torch.cat(pooled_seen).mean(dim=0, keepdim=True)
            mode["how"] = "ablate"
            ablated_t = torch.cat([net(inputs(b)).argmax(dim=1) for b in batches])
            memo[key] = (pred, float((ablated_t == pred).float().mean()))
        pred, floor = memo[key]
        mode["how"] = "splice"
        spliced_t = torch.cat([net(inputs(b)).argmax(dim=1) for b in batches])
    finally:
        handle.remove()
    return {
        "accuracy_recovered": float((spliced_t == pred).float().mean()),
        "accuracy_recovered_mean_ablation": floor,
        "fidelity_n": int(len(idx)),
    }
