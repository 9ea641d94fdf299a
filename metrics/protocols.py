"""Protocols: turn a pairwise similarity into one score per direction.

* :func:`consistency`: mean pairwise similarity among each direction's top ``n`` stimuli.
* :func:`psychophysics`: the simulated two-alternative forced-choice task of Klindt et al.
  (2023, appendix A.2; after Borowski et al. 2021). For trial ``t`` the queries are the
  permuted ``t``-th of the top ``T`` and bottom ``T`` stimuli of the band, the references are
  the stimuli at ranks ``T + r * T + t`` (``r < R``) from each end; similarities of the two
  queries to the ``2R`` references are z-scored within the trial, evidence is the mean
  similarity to each reference side, and the choice probability is a softmax over the two
  assignments. The score is the mean probability of the correct assignment; chance is 0.5.

The query permutations are drawn exactly as the reference code does (``np.random.seed(seed)``,
then two ``np.random.choice(T, T, replace=False)`` per quantile, quantiles in order), so a
direction's trials are the same trials that code would run.

A metric may answer similarities straight from indices: ``similarity_lookup(stimuli, idx,
pool)`` sees every index first and returns ``lookup(a_idx, b_idx)`` (e.g. reading a cached
Gram matrix; see :class:`metrics.features.GramSimilarity`) or None; for consistency it may
also answer ``mean_pairwise_similarity(stimuli, sets, pool) -> [k]`` whole (GramSimilarity
does, from each set's sum of rows). Otherwise directions are
scored in batches of gathered embeddings, sized so that a batch stays near ``_BATCH_BYTES``
(64 directions for small embeddings, fewer for LPIPS features at 224 pixels).
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
_BATCH_BYTES = 256 * 2**20


def _batch_size(emb: torch.Tensor, directions: int) -> int:
    """Directions per batch so that a batch's embeddings take about ``_BATCH_BYTES``."""
    per_direction = max(1, emb.numel() * emb.element_size() // max(1, directions))
    return int(min(_DIRECTIONS_PER_BATCH, max(1, _BATCH_BYTES // per_direction)))


def _lookup(metric: SimilarityMetric, stimuli: StimulusSet, idx: np.ndarray, pool: np.ndarray | None):
    """The metric's ``similarity_lookup`` for these indices (None: gather embeddings per batch)."""
    lookup = getattr(metric, "similarity_lookup", None)
    return None if lookup is None else lookup(stimuli, idx, pool)


def consistency(metric: SimilarityMetric, examples: TopExamples, n: int) -> np.ndarray:
    """Mean off-diagonal similarity among the top ``n`` stimuli of each direction: ``[k]``."""
    top = examples.top_idx[:, :n]
    if top.shape[1] < 2:
        raise UserError(f"{type(metric).__name__}: consistency needs at least 2 top stimuli, got {top.shape[1]}")
    m = top.shape[1]
    off_diag = ~torch.eye(m, dtype=torch.bool)
    out = []
    pool = getattr(examples, "pool", None)
    lookup = _lookup(metric, examples.stimuli, top, pool)
    if lookup is not None:
        return (lookup(top, top).double()[:, off_diag].sum(dim=1) / off_diag.sum()).cpu().numpy()
    set_means = getattr(metric, "mean_pairwise_similarity", None)
    scores = None if set_means is None else set_means(examples.stimuli, top, pool)
    if scores is not None:
        return scores
    s, batch = 0, 1  # the first batch is one direction: it tells the embedding size
    while s < len(top):
        emb = metric.gather(examples.stimuli, top[s : s + batch])  # [B, m, ...]
        sim = metric.pairwise(emb, emb).double()  # [B, m, m]
        out.append((sim[:, off_diag].sum(dim=1) / off_diag.sum()).cpu().numpy())
        s += emb.shape[0]
        batch = _batch_size(emb, emb.shape[0])
    return np.concatenate(out)


def query_permutations(seed: int, n_trials: int, quantile_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``(top, bottom)`` query orders ``[T]`` of the ``quantile_index``-th band, as the
    reference code draws them: one legacy ``RandomState(seed)``, two permutations per band."""
    rng = np.random.RandomState(seed)
    for _ in range(quantile_index + 1):
        perm_top = rng.choice(n_trials, n_trials, replace=False)
        perm_bottom = rng.choice(n_trials, n_trials, replace=False)
    return perm_top, perm_bottom


def trial_indices(
    ranked: Ranked, n_trials: int, n_references: int, seed: int, quantile_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
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
    perm_top, perm_bottom = query_permutations(seed, T, quantile_index)
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


def psychophysics(
    metric: SimilarityMetric,
    stimuli: StimulusSet,
    ranked: Ranked,
    quantile_index: int = 0,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Mean probability of the correct choice over trials, per direction: ``[k]``.

    ``quantile_index`` is the band's position in the metric's quantiles (it picks the query
    permutations, as in the reference code); ``pool`` the probe indices the examples came from.
    """
    refs, queries = trial_indices(ranked, metric.n_trials, metric.n_references, metric.seed, quantile_index)
    k, T = refs.shape[:2]
    R = metric.n_references
    lookup = _lookup(metric, stimuli, np.concatenate([refs.reshape(-1), queries.reshape(-1)]), pool)
    if lookup is not None:
        sim = lookup(refs.reshape(k * T, 2 * R), queries.reshape(k * T, 2)).reshape(k, T, 2 * R, 2)
        return trial_scores(sim, R, metric.zscore).mean(dim=1).cpu().numpy()
    out = []
    s, batch = 0, 1
    while s < k:
        r = metric.gather(stimuli, refs[s : s + batch])  # [B, T, 2R, ...]
        q = metric.gather(stimuli, queries[s : s + batch])  # [B, T, 2, ...]
        B = r.shape[0]
        sim = metric.pairwise(r.flatten(0, 1), q.flatten(0, 1)).reshape(B, T, 2 * R, 2)
        out.append(trial_scores(sim, R, metric.zscore).mean(dim=1).cpu().numpy())
        s += B
        batch = _batch_size(r, B)
    return np.concatenate(out)
