"""Protocols: turn a pairwise similarity into one score per direction.

* :func:`consistency`: mean pairwise similarity among each direction's top ``n`` stimuli.
* :func:`psychophysics`: the simulated two-alternative forced-choice task of Klindt et al.
  (2023, appendix A.2; after Borowski et al. 2021). For trial ``t`` the queries are the
  permuted ``t``-th of the top ``T`` and bottom ``T`` stimuli of the band, the references are
  the stimuli at ranks ``T + r * T + t`` (``r < R``) from each end; similarities of the two
  queries to the ``2R`` references are z-scored within the trial, evidence is the mean
  similarity to each reference side, and the choice probability is a softmax over the two
  assignments. The score is the mean probability of the correct assignment; chance is 0.5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError

if TYPE_CHECKING:
    from metrics.base import Ranked, SimilarityMetric, TopExamples

_DIRECTIONS_PER_BATCH = 64


def consistency(metric: SimilarityMetric, examples: TopExamples, n: int) -> np.ndarray:
    """Mean off-diagonal similarity among the top ``n`` stimuli of each direction: ``[k]``."""
    top = examples.top_idx[:, :n]
    if top.shape[1] < 2:
        raise UserError(f"{type(metric).__name__}: consistency needs at least 2 top stimuli, got {top.shape[1]}")
    m = top.shape[1]
    off_diag = ~torch.eye(m, dtype=torch.bool)
    out = []
    for s in range(0, len(top), _DIRECTIONS_PER_BATCH):
        emb = metric.gather(examples.stimuli, top[s : s + _DIRECTIONS_PER_BATCH])  # [B, m, ...]
        sim = metric.pairwise(emb, emb).double()  # [B, m, m]
        out.append((sim[:, off_diag].sum(dim=1) / off_diag.sum()).cpu().numpy())
    return np.concatenate(out)


def trial_indices(ranked: Ranked, n_trials: int, n_references: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus indices of every trial.

    Returns:
        ``refs [k, T, 2R]`` (top references then bottom references) and
        ``queries [k, T, 2]`` (top query, bottom query).
    """
    T, R = n_trials, n_references
    need = T * (R + 1)
    if ranked.top_idx.shape[1] < need:
        raise UserError(
            f"psychophysics needs {need} stimuli per side in band q={ranked.quantile} "
            f"({T} trials x ({R} references + 1)), got {ranked.top_idx.shape[1]}: use a larger probe split"
        )
    rng = np.random.default_rng(seed)
    perm_top = rng.permutation(T)
    perm_bottom = rng.permutation(T)
    q_top = ranked.top_idx[:, :T][:, perm_top]  # [k, T]
    q_bottom = ranked.bottom_idx[:, :T][:, perm_bottom]
    ref_rank = T + np.arange(R)[None, :] * T + np.arange(T)[:, None]  # [T, R]
    refs = np.concatenate([ranked.top_idx[:, ref_rank], ranked.bottom_idx[:, ref_rank]], axis=2)  # [k, T, 2R]
    return refs, np.stack([q_top, q_bottom], axis=2)


def trial_scores(similarities: torch.Tensor, n_references: int, zscore: bool = True) -> torch.Tensor:
    """Probability of the correct choice per trial.

    Args:
        similarities: ``[..., 2R, 2]``: rows are references (top R then bottom R), columns
            the queries (top, bottom).

    Returns:
        ``[...]`` probabilities in (0, 1).
    """
    s = similarities.double()
    if zscore:
        flat = s.flatten(-2)
        mean = flat.mean(dim=-1)[..., None, None]
        std = flat.std(dim=-1, unbiased=False)[..., None, None]
        std = torch.where((std == 0) | std.isnan(), torch.ones_like(std), std)
        s = (s - mean) / std
    R = n_references
    # correct assignment: top query with top refs, bottom query with bottom refs
    correct = s[..., :R, 0].mean(-1) + s[..., R:, 1].mean(-1)
    swapped = s[..., :R, 1].mean(-1) + s[..., R:, 0].mean(-1)
    return torch.sigmoid(correct - swapped)  # softmax over the two assignments


def psychophysics(metric: SimilarityMetric, stimuli: StimulusSet, ranked: Ranked) -> np.ndarray:
    """Mean probability of the correct choice over trials, per direction: ``[k]``."""
    refs, queries = trial_indices(ranked, metric.n_trials, metric.n_references, metric.seed)
    k, T = refs.shape[:2]
    out = []
    for s in range(0, k, _DIRECTIONS_PER_BATCH):
        r = metric.gather(stimuli, refs[s : s + _DIRECTIONS_PER_BATCH])  # [B, T, 2R, ...]
        q = metric.gather(stimuli, queries[s : s + _DIRECTIONS_PER_BATCH])  # [B, T, 2, ...]
        B = r.shape[0]
        sim = metric.pairwise(r.flatten(0, 1), q.flatten(0, 1)).reshape(B, T, 2 * metric.n_references, 2)
        out.append(trial_scores(sim, metric.n_references, metric.zscore).mean(dim=1).cpu().numpy())
    return np.concatenate(out)
