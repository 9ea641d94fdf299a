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
from pathlib import Path

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


def synthesize(
    planted: Planted, *, superposition: float, noise: float, seed: int, density: float = 0.4
) -> tuple[np.ndarray, torch.Tensor]:
    """Synthetic activations ``[n, d]`` and the planted directions ``[F, d]``.

    ``d = max(2, round(F / superposition))``. A feature whose factor value the stimulus has
    is active with probability ``density`` (so codes are sparse), with a magnitude uniform in
    [0.5, 1.5]; Gaussian noise has ``noise`` times the signal's per-dimension RMS.
    """
    F = planted.n_features
    d = max(2, int(round(F / superposition)))
    gen = torch.Generator().manual_seed(seed)
    W = unit_rows(torch.randn(F, d, generator=gen))
    shape = planted.presence.shape
    active = torch.from_numpy(planted.presence) * (torch.rand(shape, generator=gen) < density)
    mags = active * (0.5 + torch.rand(shape, generator=gen))
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
#: (mean image color on ``shapes`` is set by the background, ~80% of the pixels)
RELEVANT = {"color_consistency": {"background"}}


def metric_auc(
    planted: Planted,
    metrics: list[tuple[str, object]],
    *,
    superposition: float,
    noise: float,
    seed: int = 0,
    n_random: int | None = None,
    label_factor: str | None = None,
    density: float = 0.4,
) -> pd.DataFrame:
    """AUC of oracle vs random directions for every metric column.

    Returns one row per metric column: ``auc_all`` (every planted feature against random
    directions), ``auc_relevant`` (only the features the metric should find: color factors
    for color, the label factor for label consistency), medians and status.
    """
    acts, W = synthesize(planted, superposition=superposition, noise=noise, seed=seed, density=density)
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


# ---------------------------------------------------------------------------------------
# Parts 3-5: from the results of a benchmark run
# ---------------------------------------------------------------------------------------
ROW_KEYS = ["model", "layer", "dataset", "method", "method_params", "seed", "direction"]


def metric_agreement(scores: pd.DataFrame, min_overlap: int = 30) -> pd.DataFrame:
    """Spearman correlation between metric columns over all directions they share ``[M, M]``."""
    ok = scores[scores["status"] == "ok"]
    wide = ok.pivot_table(index=ROW_KEYS, columns="metric", values="value", aggfunc="first")
    return wide.corr(method="spearman", min_periods=min_overlap)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Median(a) - median(b) with a percentile bootstrap 95% interval (directions resampled)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    da = np.median(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1)
    db = np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return float(np.median(a) - np.median(b)), float(lo), float(hi)


def compare(scores: pd.DataFrame, claim: str, groups: list[tuple[dict, dict, str]], metrics: list[str]) -> pd.DataFrame:
    """Each comparison ``(filter A, filter B, label)`` on each metric column: median(A) - median(B) [CI]."""
    rows = []
    ok = scores[scores["status"] == "ok"]
    for fa, fb, label in groups:
        for metric in metrics:
            sel = ok[ok["metric"] == metric]
            a = sel.loc[np.logical_and.reduce([sel[k] == v for k, v in fa.items()]), "value"].to_numpy(float)
            b = sel.loc[np.logical_and.reduce([sel[k] == v for k, v in fb.items()]), "value"].to_numpy(float)
            if len(a) == 0 or len(b) == 0:
                continue
            hib = bool(sel["higher_is_better"].iloc[0])
            d, lo, hi = bootstrap_diff(a, b)
            if not hib:
                d, lo, hi = -d, -hi, -lo
            rows.append(
                {
                    "claim": claim,
                    "comparison": label,
                    "metric": metric,
                    "diff": d,
                    "lo": lo,
                    "hi": hi,
                    "n_a": len(a),
                    "n_b": len(b),
                }
            )
    return pd.DataFrame(rows)


def verdict(table: pd.DataFrame) -> str:
    """``reproduced`` when most comparisons favour the claim and none goes clearly against it;
    ``not reproduced`` when none favours it; ``mixed`` otherwise (or ``no data``)."""
    if table.empty:
        return "no data"
    favour = int((table["lo"] > 0).sum())
    against = int((table["hi"] < 0).sum())
    if favour >= len(table) / 2 and against == 0:
        return "reproduced"
    if favour == 0:
        return "not reproduced"
    return "mixed"


def _headline_columns(scores: pd.DataFrame, names: tuple[str, ...], protocol: str) -> list[str]:
    cols = sorted(set(scores["metric"]))
    return [c for c in cols if c.split("[")[0] in names and c.endswith(f"[{protocol}]")]


def published_claims(scores: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The claims of Klindt et al. 2023 and Bricken et al. 2023, tested on this run's data."""
    out: dict[str, pd.DataFrame] = {}
    vision_metrics = _headline_columns(
        scores, ("perceptual_consistency", "lpips_consistency", "color_consistency"), "psychophysics"
    )
    tasks = scores[scores["modality"] == "vision"][["model", "layer", "dataset"]].drop_duplicates()
    groups = []
    for _, t in tasks.iterrows():
        task = {"model": t["model"], "layer": t["layer"], "dataset": t["dataset"]}
        for method in ("kmeans", "sparse_coding", "ica"):
            groups.append(
                (
                    {**task, "method": method},
                    {**task, "method": "neurons"},
                    f"{t['model']}/{t['layer']}/{t['dataset']}: {method} - neurons",
                )
            )
    out["Klindt et al. 2023: off-axis directions beat neurons"] = compare(scores, "off-axis", groups, vision_metrics)

    trained = []
    for model in sorted(set(scores["model"])):
        control = f"{model}_untrained"
        if control not in set(scores["model"]):
            continue
        for (layer, dataset), _ in scores[scores["model"] == model].groupby(["layer", "dataset"]):
            for method in sorted(set(scores["method"])):
                trained.append(
                    (
                        {"model": model, "layer": layer, "dataset": dataset, "method": method},
                        {"model": control, "layer": layer, "dataset": dataset, "method": method},
                        f"{model} - untrained, {layer}/{dataset}, {method}",
                    )
                )
    trained_metrics = vision_metrics + _headline_columns(scores, ("label_consistency",), "psychophysics")
    out["Klindt et al. 2023: trained networks beat untrained ones"] = compare(
        scores, "trained", trained, trained_metrics
    )

    lang_metrics = [
        c for c in sorted(set(scores["metric"])) if c in ("label_consistency[consistency]", "caption_compressibility")
    ]
    groups = []
    for (model, layer, dataset), _ in scores[scores["model"] == "bytes_1l"].groupby(["model", "layer", "dataset"]):
        task = {"model": model, "layer": layer, "dataset": dataset}
        for method in ("sae_l1", "sae_topk"):
            groups.append(({**task, "method": method}, {**task, "method": "neurons"}, f"{layer}: {method} - neurons"))
    out["Bricken et al. 2023: SAE latents are more monosemantic than neurons"] = compare(
        scores, "sae", groups, lang_metrics
    )
    groups = []
    for (model, layer, dataset), _ in scores[scores["model"] == "bytes_1l"].groupby(["model", "layer", "dataset"]):
        task = {"model": model, "layer": layer, "dataset": dataset}
        groups.append(({**task, "method": "random"}, {**task, "method": "neurons"}, f"{layer}: random - neurons"))
    out["Bricken et al. 2023: a random rotation is not more monosemantic than neurons"] = compare(
        scores, "random", groups, lang_metrics
    )
    return out


def ranking_stability(scores: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau of method rankings between seeds (per task and metric) and between the
    consistency and psychophysics protocols of each similarity (per task and seed)."""
    from scipy.stats import kendalltau

    ok = scores[scores["status"] == "ok"].copy()
    ok["method_id"] = ok["method"].astype(str) + " " + ok["method_params"].astype(str)  # (categoricals when read)
    med = ok.groupby(["model", "layer", "dataset", "metric", "seed", "method_id"])["value"].median()
    rows = []
    for (model, layer, dataset, metric), g in med.groupby(level=[0, 1, 2, 3]):
        wide = g.unstack("method_id").droplevel([0, 1, 2, 3])
        seeds = list(wide.index)
        for i in range(len(seeds)):
            for j in range(i + 1, len(seeds)):
                x, y = wide.loc[seeds[i]], wide.loc[seeds[j]]
                ok_ = x.notna() & y.notna()
                if ok_.sum() >= 3:
                    rows.append(
                        {
                            "kind": "seeds",
                            "task": f"{model}/{layer}/{dataset}",
                            "metric": metric,
                            "pair": f"{seeds[i]} vs {seeds[j]}",
                            "tau": kendalltau(x[ok_], y[ok_]).statistic,
                        }
                    )
    by_task = med.reset_index()
    for (model, layer, dataset, seed), g in by_task.groupby(["model", "layer", "dataset", "seed"]):
        wide = g.pivot(index="method_id", columns="metric", values="value")
        for col in wide.columns:
            if not col.endswith("[consistency]"):
                continue
            other = col.replace("[consistency]", "[psychophysics]")
            if other in wide.columns:
                ok_ = wide[col].notna() & wide[other].notna()
                if ok_.sum() >= 3:
                    rows.append(
                        {
                            "kind": "protocols",
                            "task": f"{model}/{layer}/{dataset}",
                            "metric": col.split("[")[0],
                            "pair": f"seed {seed}",
                            "tau": kendalltau(wide[col][ok_], wide[other][ok_]).statistic,
                        }
                    )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# The study and its page
# ---------------------------------------------------------------------------------------
VISION_METRICS = (
    "label_consistency",
    "color_consistency",
    "lpips_consistency",
    "perceptual_consistency",
    "caption_compressibility",
)
STUDY_METHODS = [
    ("neurons", {}),
    ("random", {}),
    ("pca", {}),
    ("ica", {}),
    ("kmeans", {"n_components": None}),
    ("nmf", {"n_components": None, "shift": True}),
    ("sparse_coding", {"n_components": None}),
    ("sae_l1", {"n_latents": None}),
    ("sae_topk", {"n_latents": None, "k": 4}),
]


def study_metrics(names: tuple[str, ...], quick: bool) -> list[tuple[str, object]]:
    """Every named metric under each of its protocols (instantiated from the registry)."""
    from benchmark.config import instantiate
    from benchmark.registry import METRICS

    out = []
    for name in names:
        cls = METRICS.get(name)
        protocols = getattr(cls, "_protocols", None) or (None,)
        for protocol in protocols:
            params = {} if protocol is None else {"protocol": protocol}
            if quick and protocol == "psychophysics":
                params["quantiles"] = (0.0,)
            out.append((name, instantiate(cls, params, f"metric {name!r}")))
    return out


def _methods_for(n_features: int, d: int) -> list[tuple[str, dict]]:
    out = []
    for name, params in STUDY_METHODS:
        p = dict(params)
        for key in ("n_components", "n_latents"):
            if key in p and p[key] is None:
                p[key] = n_features
        out.append((name, p))
    return out


@dataclass
class Study:
    auc: pd.DataFrame
    recovery: pd.DataFrame
    recovery_directions: pd.DataFrame
    agreement: pd.DataFrame | None = None
    claims: dict[str, pd.DataFrame] | None = None
    stability: pd.DataFrame | None = None


def planted_sets(quick: bool) -> list[tuple[Planted, str]]:
    """The data sets with ground truth (clip art only when its Debian package is installed)."""
    from benchmark.data.shapes import FACTORS, Shapes

    n, size = (2400, 32) if quick else (4000, 64)
    sets = [(planted_from_factors("shapes", Shapes(n=n, size=size, seed=1), FACTORS), "shape")]
    if not quick:
        try:
            from benchmark.registry import DATASETS

            clip = DATASETS.get("clipart")(size=64)
            keep = np.sort(np.random.default_rng(0).choice(len(clip), size=min(3000, len(clip)), replace=False))
            sets.append((planted_from_labels("clipart", Subset(clip, keep)), "label"))
        except (UserError, TypeError) as exc:
            print(f"validity: clipart skipped: {exc}")
    return sets


def run_study(*, quick: bool, results_run: str | None = None, seed: int = 0, log=print) -> Study:
    """Parts 1-2 on planted data; parts 3-5 from ``results_run`` (a run directory) when given."""
    noise_grid = (0.25, 1.0) if quick else (0.0, 0.25, 0.5, 1.0, 2.0)
    sup_grid = (1.0, 3.0) if quick else (1.0, 2.0, 3.0, 4.0, 6.0)
    default_noise, default_sup = 0.25, 3.0
    names = ("label_consistency", "color_consistency", "caption_compressibility") if quick else VISION_METRICS
    metrics = study_metrics(names, quick)
    aucs, recs, dirs = [], [], []
    for planted, label_factor in planted_sets(quick):
        for noise in noise_grid:
            log(f"validity: {planted.name} noise={noise} superposition={default_sup}")
            aucs.append(
                metric_auc(
                    planted, metrics, superposition=default_sup, noise=noise, seed=seed, label_factor=label_factor
                )
            )
        for sup in sup_grid:
            if sup == default_sup:
                continue
            log(f"validity: {planted.name} noise={default_noise} superposition={sup}")
            aucs.append(
                metric_auc(
                    planted, metrics, superposition=sup, noise=default_noise, seed=seed, label_factor=label_factor
                )
            )
        d = max(2, int(round(planted.n_features / default_sup)))
        methods = _methods_for(planted.n_features, d)
        if quick:
            methods = [m for m in methods if m[0] in ("neurons", "random", "pca", "kmeans", "sae_topk")]
        log(f"validity: {planted.name} methods against planted features")
        summary, per_dir = method_recovery(
            planted, methods, metrics, superposition=default_sup, noise=default_noise, seed=seed
        )
        summary.insert(0, "data", planted.name)
        per_dir.insert(0, "data", planted.name)
        recs.append(summary)
        dirs.append(per_dir)
    study = Study(
        pd.concat(aucs, ignore_index=True), pd.concat(recs, ignore_index=True), pd.concat(dirs, ignore_index=True)
    )
    if results_run:
        from benchmark.results import read_tables

        scores, _ = read_tables(results_run)
        study.agreement = metric_agreement(scores)
        study.claims = published_claims(scores)
        study.stability = ranking_stability(scores)
    return study


def _md_table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = [
            floatfmt.format(v) if isinstance(v, float) and np.isfinite(v) else ("" if isinstance(v, float) else str(v))
            for v in r
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _curve(df: pd.DataFrame, x: str, fixed: str, value: float, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = df[(df[fixed] == value) & (df["status"] == "ok")]
    fig, ax = plt.subplots(figsize=(10.0, 4.2))
    for (data, metric), g in sub.groupby(["data", "metric"], sort=True):
        g = g.sort_values(x)
        ax.plot(g[x], g["auc_relevant"], marker="o", label=f"{data}: {metric}")
    ax.axhline(0.5, color="grey", lw=1, ls=":")
    ax.axhline(0.9, color="grey", lw=1, ls="--")
    ax.set_xlabel(x)
    ax.set_ylabel("ROC AUC, oracle vs random")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_page(study: Study, out: Path, *, command: str, seconds: float) -> Path:
    """Write ``out/validity.md`` and its figures in ``out/validity/``."""
    figs = out / "validity"
    figs.mkdir(parents=True, exist_ok=True)
    auc_df = study.auc
    default = auc_df[(auc_df["noise"] == 0.25) & (auc_df["superposition"] == 3.0)]
    _curve(auc_df, "noise", "superposition", 3.0, figs / "auc_vs_noise.png", "AUC vs noise (superposition 3)")
    _curve(
        auc_df, "superposition", "noise", 0.25, figs / "auc_vs_superposition.png", "AUC vs superposition (noise 0.25)"
    )
    best = default[default["status"] == "ok"].groupby("metric")["auc_relevant"].max()
    lines = [
        "# Is the benchmark right? A validity study",
        "",
        f"Generated by `{command}` in {seconds / 60:.1f} minutes; regenerate it with the same command.",
        "",
        "## 1. Metrics against planted directions",
        "",
        "Synthetic activations over real stimuli: every stimulus activates one planted feature per factor value it "
        "has (shapes: shape, color, background, size, x, y, texture; clip art: category), each feature a random unit "
        "direction, active with probability 0.4, magnitude uniform in [0.5, 1.5], in a space with "
        "`superposition` times fewer dimensions than features, plus Gaussian noise (`noise` times the signal RMS). "
        "The planted directions are the oracle basis. Each metric scores oracle and random directions; the table "
        "gives the ROC AUC of oracle against random (0.5: cannot tell). `auc_relevant` uses the oracle features the "
        "metric can see (label: the label factor; color: the background, which sets the mean image color of a "
        "shapes image; others: every feature); `auc_all` uses every planted feature.",
        "",
        "At the default setting (noise 0.25, superposition 3):",
        "",
        _md_table(default[["data", "metric", "auc_relevant", "auc_all", "oracle_median", "random_median", "status"]]),
        "Goal: AUC >= 0.9 for every metric on at least one data set. "
        + (
            "Reached by: " + ", ".join(sorted(best[best >= 0.9].index)) + ". "
            if (best >= 0.9).any()
            else "No metric reaches it. "
        )
        + (
            "Not reached by: " + ", ".join(sorted(best[best < 0.9].index)) + "."
            if (best < 0.9).any()
            else "Every metric reaches it."
        ),
        "",
        "![AUC against noise](validity/auc_vs_noise.png)",
        "![AUC against superposition](validity/auc_vs_superposition.png)",
        "",
        "All settings:",
        "",
        _md_table(auc_df[["data", "metric", "noise", "superposition", "auc_relevant", "auc_all", "status"]]),
        "## 2. Methods against planted features",
        "",
        "Each method is fitted on half of the synthetic activations (default setting) and scored on the other half. "
        "Recovery: for each planted feature the best |cosine| among the method's directions, averaged (forward), and "
        "for each direction its best planted match, averaged (reverse). `spearman`: rank correlation between a "
        "direction's recovery and its metric score; positive means that, by this metric, more interpretable "
        "directions are closer to the truth.",
        "",
    ]
    rec = study.recovery
    ok = rec[rec["status"] == "ok"] if "status" in rec else rec
    if len(ok):
        pivot = ok.pivot_table(
            index=["data", "method", "recovery_forward", "recovery_reverse"], columns="metric", values="spearman"
        ).reset_index()
        lines += ["Spearman rho between per-direction recovery and metric score:", "", _md_table(pivot)]
        med = ok.pivot_table(index=["data", "method"], columns="metric", values="median_score").reset_index()
        lines += ["Median metric score per method:", "", _md_table(med)]
    skipped = rec[rec["status"].astype(str).str.startswith("skipped")] if "status" in rec else rec.iloc[:0]
    for _, r in skipped.drop_duplicates("method").iterrows():
        lines.append(f"- {r['method']}: {r['status']}")
    if study.agreement is not None:
        lines += [
            "",
            "## 3. Metric agreement",
            "",
            "Spearman correlation between metric columns over every direction of the benchmark run:",
            "",
            _md_table(study.agreement.round(3).reset_index()),
        ]
    if study.claims is not None:
        lines += ["", "## 4. Published claims, tested on our models", ""]
        for claim, table in study.claims.items():
            lines += [
                f"### {claim}",
                "",
                f"**Verdict: {verdict(table)}.** Difference of medians over directions "
                "(positive favours the claim) with a bootstrap 95% interval.",
                "",
            ]
            lines += [_md_table(table.drop(columns=["claim"])) if len(table) else "(no data in this run)", ""]
    if study.stability is not None and len(study.stability):
        st = study.stability.groupby(["kind", "task"])["tau"].agg(["mean", "min", "count"]).reset_index()
        lines += [
            "",
            "## 5. Stability",
            "",
            "Kendall tau of method rankings between seeds and between protocols:",
            "",
            _md_table(st),
        ]
    page = out / "validity.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def check_quick(study: Study) -> list[str]:
    """The planted-answer properties ``validate`` asserts: in the easiest setting (lowest noise,
    no superposition) the oracle beats random directions (AUC > 0.5 on the features the metric
    can see) for every metric that applies."""
    a = study.auc
    low = a[(a["noise"] == a["noise"].min()) & (a["superposition"] == a["superposition"].min()) & (a["status"] == "ok")]
    return [
        f"{r['data']}: {r['metric']}: oracle AUC {r['auc_relevant']:.2f} <= 0.5"
        for _, r in low.iterrows()
        if not r["auc_relevant"] > 0.5
    ]
