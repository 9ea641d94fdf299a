"""Recovery of planted features by ``sae_topk``, ``sae_l1`` and ``sparse_coding``, per frequency third.

Data: the planted sparse toy of ``tests/methods/toy.py`` (Sharkey et al. 2022: 256-dim
activations from 512 unit features, about 5 active per sample, frequencies decaying as
0.996^i, so feature 0 is ~8x as frequent as feature 511; coefficients uniform in [0, 1]).
Width 512. For each method: fit seconds (wall and CPU), forward recovery (each true feature's best |cosine|
over learned directions) overall and per third of the features by frequency, reverse recovery
(each learned direction's best |cosine| over true features) overall and per third of the
latents grouped by the third of their best match (with how many latents land in each third:
171 each when every feature has exactly one latent), and near-duplicate latent pairs
(decoder |cosine| > 0.9).

The default settings are the recovery tests' (``tests/methods/test_sae.py``,
``tests/methods/test_sparse_coding.py``); ``--long`` adds a longer SAE setting.

    OMP_NUM_THREADS=2 .venv/bin/python perf/sae_recovery.py
    OMP_NUM_THREADS=2 .venv/bin/python perf/sae_recovery.py --only topk --set topk.epochs=40
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from methods.sae import L1SAE, TopKSAE  # noqa: E402
from methods.sparse_coding import SparseCoding  # noqa: E402
from tests.methods.test_sae import L1_SETTINGS, N_SAMPLES, TOPK_SETTINGS  # noqa: E402
from tests.methods.toy import sparse_toy_data  # noqa: E402

SPARSE_CODING_SETTINGS = {"n_components": 512, "alpha": 0.1, "epochs": 5, "batch_size": 1024, "fista_iters": 15}
LONG = {"topk": {"epochs": 60}, "l1": {"epochs": 60}}


def recovery_by_third(features: torch.Tensor, directions: torch.Tensor) -> dict[str, object]:
    """Forward / reverse recovery overall and per frequency third.

    Args:
        features: ``[m, d]`` true features, most frequent first.
        directions: ``[k, d]`` learned directions.
    """
    t = torch.nn.functional.normalize(features.float(), dim=1)
    u = torch.nn.functional.normalize(directions.float(), dim=1)
    cos = (t @ u.T).abs()  # [m, k]
    forward = cos.max(dim=1).values  # [m]
    reverse, match = cos.max(dim=0)  # [k]
    m = len(t)
    thirds = [range(i * m // 3, (i + 1) * m // 3) for i in range(3)]
    third_of = torch.zeros(m, dtype=torch.int64)
    for i, r in enumerate(thirds):
        third_of[list(r)] = i
    latent_third = third_of[match]
    gram = (u @ u.T).abs().fill_diagonal_(0.0)
    return {
        "forward": float(forward.mean()),
        "reverse": float(reverse.mean()),
        "forward_thirds": [float(forward[list(r)].mean()) for r in thirds],
        "reverse_thirds": [
            float(reverse[latent_third == i].mean()) if bool((latent_third == i).any()) else float("nan")
            for i in range(3)
        ],
        "latents_per_third": [int((latent_third == i).sum()) for i in range(3)],
        "missed_features": int((forward < 0.9).sum()),
        "duplicate_pairs": int((gram > 0.9).sum()) // 2,
    }


def parse_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``["topk.k=6", "l1.lr=1e-3"]`` -> ``{"topk": {"k": 6}, "l1": {"lr": 0.001}}``."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, value = item.split("=", 1)
        which, field = key.split(".", 1)
        try:
            parsed: object = int(value)
        except ValueError:
            try:
                parsed = float(value)
            except ValueError:
                parsed = {"true": True, "false": False}.get(value.lower(), value)
        out.setdefault(which, {})[field] = parsed
    return out


def report(label: str, seconds: float, cpu_seconds: float, result: dict[str, object]) -> None:
    fwd = " / ".join(f"{v:.3f}" for v in result["forward_thirds"])
    rev = " / ".join(f"{v:.3f}" for v in result["reverse_thirds"])
    per = " / ".join(str(v) for v in result["latents_per_third"])
    print(
        f"{label}\n    {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU; forward {result['forward']:.4f} (thirds {fwd})  "
        f"reverse {result['reverse']:.4f} (thirds {rev}; latents {per})  "
        f"missed {result['missed_features']}  duplicate pairs {result['duplicate_pairs']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_SAMPLES, help="toy samples")
    parser.add_argument("--only", default="topk,l1,sparse_coding", help="comma-separated: topk, l1, sparse_coding")
    parser.add_argument("--set", nargs="*", default=[], help="overrides such as topk.k=6 l1.epochs=40")
    parser.add_argument("--long", action="store_true", help="also the longer SAE settings")
    parser.add_argument("--seeds", default="0", help="comma-separated fit seeds")
    args = parser.parse_args()

    acts, features, _ = sparse_toy_data(n=args.n)
    overrides = parse_overrides(args.set)
    print(f"toy data {tuple(acts.shape)}, 512 features, width 512, torch threads {torch.get_num_threads()}")
    runs: list[tuple[str, object]] = []
    for which in args.only.split(","):
        if which == "topk":
            runs.append(("topk", TopKSAE(**{**TOPK_SETTINGS, **overrides.get("topk", {})})))
            if args.long:
                runs.append(("topk", TopKSAE(**{**TOPK_SETTINGS, **LONG["topk"], **overrides.get("topk", {})})))
        elif which == "l1":
            runs.append(("l1", L1SAE(**{**L1_SETTINGS, **overrides.get("l1", {})})))
            if args.long:
                runs.append(("l1", L1SAE(**{**L1_SETTINGS, **LONG["l1"], **overrides.get("l1", {})})))
        elif which == "sparse_coding":
            runs.append(("sparse_coding", SparseCoding(**{**SPARSE_CODING_SETTINGS, **overrides.get("sc", {})})))
        else:
            parser.error(f"--only: unknown {which!r}")
    for which, method in runs:
        defaults = {f.name: f.default for f in dataclasses.fields(method)}
        changed = {k: v for k, v in dataclasses.asdict(method).items() if v != defaults.get(k)}
        for seed in (int(s) for s in args.seeds.split(",")):
            start, cpu = time.perf_counter(), time.process_time()
            basis = method.fit(acts, seed=seed)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            label = f"{which} seed {seed} " + " ".join(f"{k}={v}" for k, v in changed.items())
            report(label, seconds, cpu_seconds, recovery_by_third(features, basis.directions))


if __name__ == "__main__":
    main()
