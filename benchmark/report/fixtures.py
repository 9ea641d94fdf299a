"""Small hand-made results tables with known answers, for tests, perf scripts and demos.

:func:`sample_tables` plants: on every task, ``pca`` beats ``neurons`` beats ``random`` on the
psychophysics metric; an SAE ``k`` sweep (three rows of one method, with L0 = k); a metric that is
skipped with a reason on the language task; and, on the language task only, per-seed scores that
reorder the methods between seeds, so its Kendall tau falls below 0.6.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from benchmark.results import FIT_COLUMNS, SCHEMA_VERSION, SCORE_COLUMNS, params_json

VISION = ("shapes_cnn", "conv2", "shapes")
LANGUAGE = ("bytes_1l", "mlp", "textmix")
#: planted median of the headline metric per method row (vision; language reorders per seed)
PLANTED = {
    "neurons": 0.70,
    "pca": 0.80,
    "random": 0.60,
    "sae_topk(k=2)": 0.74,
    "sae_topk(k=4)": 0.77,
    "sae_topk(k=8)": 0.72,
}
METHODS = [
    ("neurons", {}),
    ("pca", {}),
    ("random", {}),
    ("sae_topk", {"k": 2}),
    ("sae_topk", {"k": 4}),
    ("sae_topk", {"k": 8}),
]
PSY = "label_consistency[psychophysics]"
PSY_Q = "label_consistency[psychophysics q=0.25]"
COLOR = "color_consistency[consistency]"
COLOR_SKIP = "skipped: language stimuli; metric is for vision"


def _label(method: str, params: dict) -> str:
    return method if not params else f"{method}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def sample_tables(
    k: int = 9, seeds: tuple[int, ...] = (0, 1, 2), run_id: str = "sample"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scores, fits)`` in the results schema: 2 tasks x 6 method rows x ``seeds`` x 3 metrics.

    Per-direction values are ``planted median + offsets`` with symmetric offsets, so each cell's
    median over one seed is exactly the planted value (plus a per-seed shift on the language task).
    """
    rng = np.random.default_rng(1234)
    scores, fits = [], []
    offsets = np.linspace(-0.1, 0.1, k)
    for task in (VISION, LANGUAGE):
        modality = "vision" if task is VISION else "language"
        for method, params in METHODS:
            label = _label(method, params)
            n_dirs = k
            for seed in seeds:
                base = {
                    "schema_version": SCHEMA_VERSION,
                    "run_id": run_id,
                    "model": task[0],
                    "layer": task[1],
                    "dataset": task[2],
                    "modality": modality,
                    "method": method,
                    "method_params": params_json(params),
                    "n_directions": n_dirs,
                    "seed": seed,
                }
                planted = PLANTED[label]
                if task is LANGUAGE:  # per-seed reshuffle: rankings disagree between seeds
                    planted = 0.6 + 0.05 * ((hash_order(label) + seed * 2) % 5)
                values = planted + rng.permutation(offsets)
                for metric, hib, vals, status, chance in (
                    (PSY, True, values, "ok", 0.5),
                    (PSY_Q, True, values - 0.1, "ok", 0.5),
                    (COLOR, True, values * 0.1 - 0.2, "ok" if task is VISION else COLOR_SKIP, -0.15),
                ):
                    for j in range(k):
                        scores.append(
                            {
                                **base,
                                "metric": metric,
                                "higher_is_better": hib,
                                "direction": j,
                                "value": float(vals[j]) if status == "ok" else float("nan"),
                                "chance_mean": chance if status == "ok" else float("nan"),
                                "chance_std": 0.02 if status == "ok" else float("nan"),
                                "status": status,
                            }
                        )
                l0 = float(params.get("k", 64 if method != "neurons" else 40))
                extra = {"accuracy_recovered": 0.9 + 0.01 * params["k"]} if method == "sae_topk" else {}
                fits.append(
                    {
                        **base,
                        "fvu": 0.0 if method != "sae_topk" else round(0.5 / params["k"], 4),
                        "explained_variance": 1.0 if method != "sae_topk" else 1 - round(0.5 / params["k"], 4),
                        "l0": l0,
                        "dead_fraction": 0.0 if method != "sae_topk" else 0.125,
                        "fit_seconds": 0.5 + seed,
                        "n_fit": 500,
                        "n_probe": 500,
                        "extra": json.dumps(extra, sort_keys=True),
                    }
                )
    return pd.DataFrame(scores, columns=SCORE_COLUMNS), pd.DataFrame(fits, columns=FIT_COLUMNS)


def hash_order(label: str) -> int:
    """A fixed small integer per method label (for the per-seed reshuffle)."""
    return sum(ord(c) for c in label) % 5
