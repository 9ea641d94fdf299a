"""Protocols: turn a pairwise similarity into one score per direction.

* :func:`consistency`: mean pairwise similarity among each direction's top ``n`` stimuli.
* :func:`psychophysics`: the simulated two-alternative forced-choice task of Klindt et al.
  (2023, appendix A.2; after Borowski et al. 2021). For trial ``t`` the queries are the
  permuted ``t``-th of the top ``T`` and bottom ``T`` stimuli of the band, the references are
  the stimuli at ranks ``T + r * T + t`` (``r < R``) from each end; similarities of the two
  queries to the ``2R`` references are z-scored within the trial, evidence is the mean
  similarity to each reference side, and the choice probability is a softmax over the two
  assignments. The score is the mean probability of the correct assignment; chance is 0.5.

**Band sufficiency (the published rule).** The reference code refuses a unit whose band holds
``4 T (R + 1)`` samples or fewer (800 for ``T = 20, R = 9``): with fewer than ``2 T (R + 1)``
the top and bottom lists overlap and the task drifts to chance without saying so. Here the
rule is checked per band and per direction (``Ranked.count``, the samples between the band's
limits): a band too small gives NaN for that direction and the status
``insufficient: band q=... holds N samples, needs more than M`` (:func:`band_status`), never a
silent score and never a crash. Random sets (chance) have no band and are not checked.

**Sparse codes.** A sparse code (SAE, NMF, sparse coding) is zero on most samples. Ranked by
the code, its bottom references are a random draw of those zeros and the task becomes top
versus random, which scores a coherent top set lower than the same set read by a dense code. On
the toy of ``tests/metrics/test_protocols.py`` (6,000 colour swatches, a code ``c`` that reads
red plus noise of sd 0.3, the sparse code ``relu(c - theta)`` with ``theta`` at the 0.9
quantile; colour similarity, T = 20, R = 9) the dense code scores 0.936 and the sparse one
0.693 at q = 0, 0.665 against 0.471 at q = 0.25 (the sparse code's central band is all zeros).
Drawing the sparse code's bottom from its lowest *non-zero* values instead compares the top
with samples just above the threshold, which resemble the top: 0.516 (0.518 with ``theta`` at
the 0.8 quantile), and it needs 2 T (R + 1) active samples. So the harness ranks and bands by
the basis's dense :meth:`~methods.base.Basis.preactivation`, the quantity the code thresholds:
the code where it is non-zero, how far the sample is from activating it where it is zero (the
pre-ReLU value of a ReLU SAE, the margin below the gate for TopK and JumpReLU, the lasso's
pre-threshold correlation for sparse coding, the NNLS gradient step for NMF; the code itself for
dense bases). It keeps the code's top set and order exactly, and on the toy the sparse code
scores what the dense one does (0.936 and 0.665, for ``theta`` at the 0.8 and 0.95 quantiles
too: the ranking is the same). The consistency protocol reads only the top ``n``, which the
preactivation leaves as the code's whenever at least ``n`` samples are active; with fewer, the
rest of the top set are the samples nearest to activating the direction rather than a random
draw of zeros (whether such a direction is scored at all is the harness's "undetermined" rule,
on the code values kept in ``top_val``).

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


def band_needed(n_trials: int, n_references: int) -> int:
    """The published rule: a band is used only when it holds *more* than ``4 T (R + 1)`` samples."""
    return 4 * n_trials * (n_references + 1)


def band_status(ranked: Ranked, n_trials: int, n_references: int) -> np.ndarray:
    """Per direction ``[k]`` (object): ``"ok"`` or ``"insufficient: band q=.. holds N samples,
    needs more than M (...)"`` by :func:`band_needed` (all ``"ok"`` when ``ranked.count`` is None)."""
    k = ranked.top_idx.shape[0]
    out = np.full(k, "ok", dtype=object)
    if ranked.count is None:
        return out
    need = band_needed(n_trials, n_references)
    for j in np.flatnonzero(np.asarray(ranked.count) <= need):
        out[j] = (
            f"insufficient: band q={ranked.quantile:g} holds {int(ranked.count[j])} samples, needs more than "
            f"{need} (4 x {n_trials} trials x ({n_references} references + 1))"
        )
    return out


def _rows(ranked: Ranked, keep: np.ndarray) -> Ranked:
    """The directions ``keep [k] bool`` of ``ranked``."""
    count = None if ranked.count is None else ranked.count[keep]
    return type(ranked)(ranked.top_idx[keep], ranked.top_val[keep], ranked.bottom_idx[keep],
                        ranked.bottom_val[keep], ranked.quantile, count)  # fmt: skip


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
    """Mean probability of the correct choice over trials, per direction: ``[k]``; NaN where
    the band is insufficient (:func:`band_status`).

    ``quantile_index`` is the band's position in the metric's quantiles (it picks the query
    permutations, as in the reference code); ``pool`` the probe indices the examples came from.
    """
    ok = band_status(ranked, metric.n_trials, metric.n_references) == "ok"
    out = np.full(len(ok), np.nan)
    if ok.any():
        out[ok] = _psychophysics(metric, stimuli, ranked if ok.all() else _rows(ranked, ok), quantile_index, pool)
    return out


def _psychophysics(
    metric: SimilarityMetric, stimuli: StimulusSet, ranked: Ranked, quantile_index: int, pool: np.ndarray | None
) -> np.ndarray:
    """:func:`psychophysics` on directions whose band suffices: ``[k]``."""
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
