"""``sparse_coding`` vs scikit-learn ``MiniBatchDictionaryLearning`` on planted sparse toy data.

Both learn 512 atoms from 20,000 x 256 activations (Sharkey et al. 2022 toy data) with the
same L1 objective ``0.5 ||x - zD||^2 + alpha ||z||_1`` (alpha 0.1). Each dictionary is then
scored the same way: its per-sample objective with exact codes (LARS lasso on the first 4,000
samples; the lasso is convex, so any exact solver gives this value) and its recovery of the planted
features (mean max |cosine|, both ways). Prints both fit times and their ratio.

    OMP_NUM_THREADS=2 .venv/bin/python perf/sparse_coding_vs_sklearn.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from methods.sparse_coding import SparseCoding, objective  # noqa: E402
from tests.methods.toy import mean_max_cosine, sparse_toy_data  # noqa: E402


def converged_objective(acts: torch.Tensor, dictionary: torch.Tensor, alpha: float, n_eval: int = 4000) -> float:
    """Mean per-sample objective of ``dictionary [k, d]`` with exact lasso codes (LARS), on the
    first ``n_eval`` samples (the same ones for every dictionary)."""
    from sklearn.decomposition import sparse_encode

    x = acts[:n_eval]
    codes = sparse_encode(x.double().numpy(), dictionary.double().numpy(), algorithm="lasso_lars", alpha=alpha)
    return float(objective(x, torch.from_numpy(codes).float(), dictionary, alpha).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--atoms", type=int, default=512)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--sklearn-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fista-iters", type=int, default=15)
    parser.add_argument("--skip-sklearn", action="store_true", help="time ours only")
    args = parser.parse_args()

    acts, features, codes = sparse_toy_data(n=args.n)
    print(f"data {tuple(acts.shape)}, {args.atoms} atoms, alpha {args.alpha}, torch threads {torch.get_num_threads()}")
    print(f"true codes: objective {float(objective(acts[:4000], codes[:4000], features, args.alpha).mean()):.4f}")
    print(f"true features: converged objective {converged_objective(acts, features, args.alpha):.4f}")

    method = SparseCoding(
        n_components=args.atoms, alpha=args.alpha, epochs=args.epochs, batch_size=1024, fista_iters=args.fista_iters
    )
    start, cpu = time.perf_counter(), time.process_time()
    basis = method.fit(acts, seed=0)
    ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    ours_obj = converged_objective(acts, basis.directions, args.alpha)
    ours_rec = mean_max_cosine(features, basis.directions)
    print(
        f"ours:    {ours_s:7.1f} s ({ours_cpu:7.1f} CPU s)  objective {ours_obj:.4f}  recovery fwd {ours_rec[0]:.4f} rev {ours_rec[1]:.4f}"
    )
    if args.skip_sklearn:
        return

    from sklearn.decomposition import MiniBatchDictionaryLearning

    ref = MiniBatchDictionaryLearning(
        n_components=args.atoms, alpha=args.alpha, batch_size=256, max_iter=args.sklearn_epochs, random_state=0
    )
    start, cpu = time.perf_counter(), time.process_time()
    ref.fit(acts.numpy())
    ref_s, ref_cpu = time.perf_counter() - start, time.process_time() - cpu
    ref_dict = torch.from_numpy(ref.components_).float()
    ref_obj = converged_objective(acts, ref_dict, args.alpha)
    ref_rec = mean_max_cosine(features, ref_dict)
    print(
        f"sklearn: {ref_s:7.1f} s ({ref_cpu:7.1f} CPU s)  objective {ref_obj:.4f}  recovery fwd {ref_rec[0]:.4f} rev {ref_rec[1]:.4f}"
    )
    verdict = "reaches" if ours_obj <= ref_obj else "does NOT reach"
    print(
        f"speed-up: {ref_s / ours_s:.1f}x wall, {ref_cpu / ours_cpu:.1f}x CPU time (ours {verdict} scikit-learn's objective: {ours_obj:.4f} vs {ref_obj:.4f})"
    )


if __name__ == "__main__":
    main()
