"""Is the benchmark right? Metrics against planted directions, methods against planted features.

Synthetic activations over real stimuli: every stimulus of a set with known ground truth
(``shapes`` factors, ``clipart`` categories) activates one planted *feature* per factor value
it has, each a random unit direction in a space of ``d = F / superposition`` dimensions, with
a non-negative magnitude, plus Gaussian noise. The planted directions are the *oracle* basis.

* :func:`metric_auc` scores oracle and random directions with every metric and protocol and
  returns the ROC AUC of oracle against random (1.0: the metric always prefers the truth;
  0.5: it cannot tell).
* :func:`method_recovery` fits every method on the synthetic activations and sets its
  recovery of the planted features (mean max cosine, both ways) beside its metric scores,
  with the rank correlation between per-direction recovery and per-direction score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from benchmark.activations import ActivationStore
from benchmark.data.base import StimulusSet, Subset
from benchmark.errors import UserError
from benchmark.topk import top_examples
from methods.base import LinearBasis, orient_by_skew, unit_rows
from metrics.base import TopExamples


@dataclass
class Planted:
    """Ground truth over a stimulus set: which features each stimulus carries.

    Attributes:
        name: the data set.
        stimuli: the stimuli, ``n`` of them.
        features: ``F`` feature names (``"color=red"``).
        factor_of: ``F`` factor names (``"color"``).
        presence: ``[n, F]`` 0/1 matrix.
    """

    name: str
    stimuli: StimulusSet
    features: list[str]
    factor_of: list[str]
    presence: np.ndarray

    @property
    def n_features(self) -> int:
        return len(self.features)


def planted_from_factors(name: str, stimuli: StimulusSet, names: dict[str, tuple[str, ...]]) -> Planted:
    """One feature per value of each factor in ``names`` (``{factor: value names}``)."""
    idx = np.arange(len(stimuli))
    factors = stimuli.factors(idx)
    cols, feats, of = [], [], []
    for factor, values in names.items():
        for v, value in enumerate(values):
            cols.append(factors[factor] == v)
            feats.append(f"{factor}={value}")
            of.append(factor)
    return Planted(name, stimuli, feats, of, np.stack(cols, axis=1).astype(np.float32))


def planted_from_labels(name: str, stimuli: StimulusSet) -> Planted:
    """One feature per label (e.g. clip-art category)."""
    labels = stimuli.labels(np.arange(len(stimuli)))
    names = list(stimuli.label_names)
    presence = (labels[:, None] == np.arange(len(names))[None, :]).astype(np.float32)
    return Planted(name, stimuli, [f"label={n}" for n in names], ["label"] * len(names), presence)


def synthesize(planted: Planted, *, superposition: float, noise: float, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """Synthetic activations ``[n, d]`` and the planted directions ``[F, d]``.

    ``d = max(2, round(F / superposition))``; magnitudes are uniform in [0.5, 1.5] where a
    feature is present; Gaussian noise has ``noise`` times the signal's per-dimension RMS.
    """
    F = planted.n_features
    d = max(2, int(round(F / superposition)))
    gen = torch.Generator().manual_seed(seed)
    W = unit_rows(torch.randn(F, d, generator=gen))
    mags = torch.from_numpy(planted.presence) * (0.5 + torch.rand(planted.presence.shape, generator=gen))
    signal = mags @ W
    rms = signal.pow(2).mean().sqrt()
    acts = signal + noise * rms * torch.randn(signal.shape, generator=gen)
    return acts.numpy().astype(np.float32), W


def random_basis(k: int, d: int, acts: torch.Tensor, seed: int) -> LinearBasis:
    """``k`` random unit directions in ``R^d``, each oriented to positive code skew."""
    gen = torch.Generator().manual_seed(seed + 7919)
    dirs = unit_rows(torch.randn(k, d, generator=gen))
    dirs = dirs * orient_by_skew(dirs, acts @ dirs.T)[:, None]
    return LinearBasis(directions=dirs)


def metric_columns(name: str, metric) -> dict[str, str]:
    """``{suffix: column name}`` of one metric, as in the results table."""
    from benchmark.runner import metric_column

    return {
        s: metric_column(name, {}, label, getattr(metric, "protocol", None)) for s, label in metric.columns().items()
    }


def score_directions(
    basis, store: ActivationStore, stimuli: StimulusSet, metrics: list[tuple[str, object]]
) -> dict[str, tuple[np.ndarray | None, str]]:
    """Every metric column for every direction of ``basis``: ``{column: (scores [k] or None, status)}``."""
    from benchmark.runner import evaluate

    n_top = max(m.needs()[0] for _, m in metrics)
    quantiles = tuple(sorted({q for _, m in metrics for q in m.needs()[1]} | {0.0}))
    bands = top_examples(basis, store, min(n_top, store.n), quantiles)
    examples = TopExamples(stimuli, bands)
    out: dict[str, tuple[np.ndarray | None, str]] = {}
    for name, metric in metrics:
        scored, status = evaluate(metric, stimuli, examples)
        for suffix, col in metric_columns(name, metric).items():
            out[col] = (scored.get(suffix), status)
    return out


def auc(pos: np.ndarray, neg: np.ndarray, higher_is_better: bool = True) -> float:
    """ROC AUC of ``pos`` against ``neg`` (Mann-Whitney, ties count half)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not higher_is_better:
        pos, neg = -pos, -neg
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


#: which factors a metric should find coherent (others: every planted feature)
RELEVANT = {"color_consistency": {"color", "background"}}


def metric_auc(
    planted: Planted,
    metrics: list[tuple[str, object]],
    *,
    superposition: float,
    noise: float,
    seed: int = 0,
    n_random: int | None = None,
    label_factor: str | None = None,
) -> pd.DataFrame:
    """AUC of oracle vs random directions for every metric column.

    Returns one row per metric column: ``auc_all`` (every planted feature against random
    directions), ``auc_relevant`` (only the features the metric should find: color factors
    for color, the label factor for label consistency), medians and status.
    """
    acts, W = synthesize(planted, superposition=superposition, noise=noise, seed=seed)
    store = ActivationStore(acts, name=f"planted {planted.name}")
    oracle = LinearBasis(directions=W)
    rand = random_basis(n_random or planted.n_features, W.shape[1], torch.from_numpy(acts), seed)
    s_or = score_directions(oracle, store, planted.stimuli, metrics)
    s_rd = score_directions(rand, store, planted.stimuli, metrics)
    rows = []
    factor_of = np.array(planted.factor_of)
    for name, metric in metrics:
        relevant = RELEVANT.get(name, {label_factor} if name == "label_consistency" and label_factor else None)
        mask = np.isin(factor_of, list(relevant)) if relevant else np.ones(len(factor_of), bool)
        for col in metric_columns(name, metric).values():
            (v_or, status), (v_rd, _) = s_or[col], s_rd[col]
            row = {
                "data": planted.name,
                "metric": col,
                "superposition": superposition,
                "noise": noise,
                "status": status,
            }
            if v_or is not None and v_rd is not None:
                hib = metric.higher_is_better
                row.update(
                    auc_all=auc(v_or, v_rd, hib),
                    auc_relevant=auc(v_or[mask], v_rd, hib),
                    oracle_median=float(np.median(v_or[mask])),
                    random_median=float(np.median(v_rd)),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def mean_max_cosine(true: torch.Tensor, learned: torch.Tensor) -> tuple[float, float, np.ndarray]:
    """``(forward, reverse, per_learned)``: for each true feature its best |cos| among the
    learned directions (averaged), for each learned direction its best match, and that
    best match per learned direction ``[k]``."""
    cos = (unit_rows(true.float()) @ unit_rows(learned.float()).T).abs()  # [F, k]
    per_learned = cos.max(dim=0).values
    return float(cos.max(dim=1).values.mean()), float(per_learned.mean()), per_learned.numpy()


def method_recovery(
    planted: Planted,
    methods: list[tuple[str, dict]],
    metrics: list[tuple[str, object]],
    *,
    superposition: float,
    noise: float,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each method on the first half, score on the second.

    Returns:
        ``summary``: one row per (method, metric column): recovery forward / reverse, median
        score, Spearman rho between per-direction recovery and score;
        ``directions``: one row per (method, direction, metric column) with both numbers.
    """
    from scipy.stats import spearmanr

    from benchmark.config import instantiate
    from benchmark.registry import METHODS

    acts, W = synthesize(planted, superposition=superposition, noise=noise, seed=seed)
    n = len(acts)
    fit_idx, probe_idx = np.arange(0, n, 2), np.arange(1, n, 2)
    fit_store = ActivationStore(acts[fit_idx], name=f"planted {planted.name} (fit)")
    probe_store = ActivationStore(
        acts[probe_idx], ids=np.arange(len(probe_idx)), name=f"planted {planted.name} (probe)"
    )
    probe = Subset(planted.stimuli, probe_idx)
    summary, per_dir = [], []
    for method_name, params in methods:
        try:
            method = instantiate(METHODS.get(method_name), params, f"method {method_name!r}")
            basis = method.fit(fit_store, seed=seed)
        except UserError as exc:
            summary.append({"method": method_name, "params": params, "status": f"skipped: {exc}"})
            continue
        fwd, rev, per = mean_max_cosine(W, basis.directions)
        scores = score_directions(basis, probe_store, probe, metrics)
        for col, (v, status) in scores.items():
            row = {
                "method": method_name,
                "params": params,
                "k": basis.k,
                "recovery_forward": fwd,
                "recovery_reverse": rev,
                "metric": col,
                "status": status,
            }
            if v is not None:
                ok = np.isfinite(v)
                rho = spearmanr(per[ok], v[ok]).statistic if ok.sum() > 2 and np.std(v[ok]) > 0 else np.nan
                row.update(median_score=float(np.nanmedian(v)), spearman=float(rho))
                per_dir += [
                    {
                        "method": method_name,
                        "direction": j,
                        "metric": col,
                        "recovery": float(per[j]),
                        "score": float(v[j]),
                    }
                    for j in range(basis.k)
                ]
            summary.append(row)
    return pd.DataFrame(summary), pd.DataFrame(per_dir)
