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


XSS = "<script>alert(1)</script>"


class TinyImages:
    """A stand-in stimulus set: solid-colour squares whose captions include an HTML payload."""

    modality = "vision"
    provides = frozenset({"images", "rgb_images", "labels", "captions"})
    label_names = ["red", "green", "blue"]

    def __init__(self, n: int = 60) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def labels(self, idx):
        return np.asarray(idx) % 3

    def images(self, idx):
        import torch

        idx = np.asarray(idx)
        out = torch.zeros(len(idx), 3, 16, 16)
        for row, i in enumerate(idx):
            out[row, i % 3] = 0.4 + 0.6 * (i / self.n)
            out[row, :, 4:12, 4:12] = 1.0 if i % 2 else 0.0
        return out

    def captions(self, idx):
        return [XSS if i == 0 else f'a "{self.label_names[i % 3]}" square #{i} & more' for i in np.asarray(idx)]


class TinyTexts:
    """A stand-in token set: contexts with the active token marked ``«so»``, one of them hostile."""

    modality = "language"
    provides = frozenset({"texts", "captions", "labels", "tokens"})
    label_names = ["html", "python"]

    def __len__(self) -> int:
        return 60

    def labels(self, idx):
        return np.asarray(idx) % 2

    def texts(self, idx):
        return [
            f"def f{i}(x):\n    «return» x + {i}  # ünïcödé" if i % 2 else f"<p>{XSS}«<b>»{i}</b>"
            for i in np.asarray(idx)
        ]

    def captions(self, idx):
        return self.texts(idx)


def write_sample_run(run_dir, k: int = 9, seeds: tuple[int, ...] = (0, 1, 2)):
    """A complete run directory from :func:`sample_tables`: tables, config, environment, galleries."""
    from pathlib import Path

    from benchmark.leaderboard import task_slug
    from benchmark.report.gallery import method_slug, write_gallery
    from benchmark.results import write_tables
    from metrics.base import Ranked

    run_dir = Path(run_dir)
    scores, fits = sample_tables(k=k, seeds=seeds)
    write_tables(run_dir, scores, fits)
    config = {
        "name": "sample",
        "source": "hand-made",
        "seeds": list(seeds),
        "chance_sets": 16,
        "tasks": [
            {"model": t[0], "layers": [t[1]], "dataset": t[2], "dataset_params": {"n": 60}} for t in (VISION, LANGUAGE)
        ],
        "methods": [
            {"name": "neurons"},
            {"name": "pca"},
            {"name": "random"},
            {"name": "sae_topk", "sweep": {"k": [2, 4, 8]}},
        ],
        "metrics": [
            {"name": "label_consistency", "params": {"protocol": "psychophysics"}},
            {"name": "color_consistency"},
        ],
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    env = {"python": "3.11", "platform": "test", "device": "cpu", "torch_threads": 2, "packages": {"interpbench": "0"}}
    (run_dir / "environment.json").write_text(json.dumps(env, indent=1, sort_keys=True))
    rng = np.random.default_rng(0)
    for task, samples in ((VISION, TinyImages()), (LANGUAGE, TinyTexts())):
        for method, params in METHODS:
            pjson = params_json(params)
            top = np.stack([rng.permutation(60)[:8] for _ in range(k)])
            top[0, 0] = 0  # the hostile caption is the first top stimulus of direction 0
            bottom = np.stack([rng.permutation(60)[:8] for _ in range(k)])
            vals = np.sort(rng.normal(size=(k, 8)))[:, ::-1].copy()
            ranked = Ranked(top, vals, bottom, -vals)
            dest = run_dir / "galleries" / task_slug(task)
            tmp = dest / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            meta = {"task": list(task), "method": method, "method_params": pjson, "seed": seeds[0]}
            write_gallery(tmp, samples, ranked, meta)
            name = method_slug(method, pjson)
            (tmp / "gallery.json").rename(dest / f"{name}.json")
            if (tmp / "sprite.png").exists():
                (tmp / "sprite.png").rename(dest / f"{name}.png")
            tmp.rmdir()
    return scores, fits
