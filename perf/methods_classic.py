"""Speed and quality of the classic methods against scikit-learn, same data, same threads.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python perf/methods_classic.py [--small] [--device cuda]``
(scikit-learn always runs on the CPU; ``--device`` moves only our fits).

For each method it prints our fit time, scikit-learn's, their ratio (> 1: ours is faster) and
a quality number for both (PCA: worst sign-matched component difference; ICA: Amari distance
to the true mixing; k-means: inertia ratio; NMF: reconstruction error ratio), so a speed-up
never hides a worse answer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.decomposition import NMF as SkNMF
from sklearn.decomposition import PCA as SkPCA
from sklearn.decomposition import FastICA as SkFastICA

from methods.ica import ICA
from methods.kmeans import KMeans, sq_distances
from methods.nmf import NMF
from methods.pca import PCA

DEVICE = "cpu"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def report(name: str, ours_s: float, theirs_s: float, quality: str) -> None:
    print(
        f"{name:<34} ours {ours_s:7.2f} s   sklearn {theirs_s:7.2f} s   speed-up {theirs_s / ours_s:5.2f}x   {quality}"
    )


def amari(p: np.ndarray) -> float:
    p = np.abs(p)
    k = len(p)
    return float(((p.sum(1) / p.max(1) - 1).sum() + (p.sum(0) / p.max(0) - 1).sum()) / (2 * k * (k - 1)))


def bench_pca(rng, n: int, d: int, k: int | None, solver: str, sk_solver: str) -> None:
    """A decaying spectrum with a gap after 32 components (as in network layers)."""
    spectrum = np.concatenate([np.geomspace(50.0, 5.0, 32), np.geomspace(1.0, 0.01, d - 32)])
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = ((rng.standard_normal((n, d)) * np.sqrt(spectrum)).astype(np.float32) @ basis.T.astype(np.float32)) + 1.0
    ours, t_ours = timed(lambda: PCA(n_components=k, solver=solver).fit(x, seed=0, device=DEVICE))
    ref, t_ref = timed(lambda: SkPCA(n_components=k, svd_solver=sk_solver, random_state=0).fit(x))
    exact = SkPCA(n_components=k, svd_solver="covariance_eigh").fit(x.astype(np.float64)).components_

    def err(c):
        c = np.asarray(c, dtype=np.float64)
        return float(np.abs(c * np.sign((c * exact).sum(1, keepdims=True)) - exact).max())

    quality = f"max |comp - exact|: ours {err(ours.directions.numpy()):.1e}  sklearn {err(ref.components_):.1e}"
    report(f"pca {solver} n={n} d={d} k={k or d} vs {sk_solver}", t_ours, t_ref, quality)


def bench_ica(rng, n: int, k: int, d: int) -> None:
    mixing = rng.standard_normal((d, k))
    x = (rng.laplace(size=(n, k)) @ mixing.T).astype(np.float32)
    ours, t_ours = timed(lambda: ICA(n_components=k, max_samples=n).fit(x, seed=0, device=DEVICE))
    ref, t_ref = timed(lambda: SkFastICA(k, whiten="unit-variance", random_state=0, max_iter=200).fit(x))
    quality = f"Amari: ours {amari(ours.encoder.double().numpy() @ mixing):.4f}  sklearn {amari(ref.components_ @ mixing):.4f}"
    report(f"ica n={n} d={d} k={k}", t_ours, t_ref, quality)


def bench_kmeans(rng, n: int, d: int, k: int) -> None:
    centres = rng.standard_normal((k, d)) * 1.5
    x = (centres[rng.integers(k, size=n)] + rng.standard_normal((n, d))).astype(np.float32)
    ours, t_ours = timed(lambda: KMeans(n_components=k).fit(x, seed=0, device=DEVICE))
    ref, t_ref = timed(lambda: SkKMeans(k, n_init=1, random_state=0).fit(x))
    inertia = float(sq_distances(torch.from_numpy(x).double(), ours.centroids.double()).min(1).values.sum())
    report(f"kmeans n={n} d={d} k={k}", t_ours, t_ref, f"inertia ours/sklearn {inertia / ref.inertia_:.4f}")


def bench_nmf(rng, n: int, d: int, k: int) -> None:
    x = (rng.exponential(size=(n, k)) * (rng.random((n, k)) < 0.3)) @ (
        rng.exponential(size=(k, d)) * (rng.random((k, d)) < 0.3)
    )
    x = (x + 0.05 * rng.random((n, d))).astype(np.float32)
    ours, t_ours = timed(lambda: NMF(n_components=k, max_samples=n).fit(x, seed=0, device=DEVICE))
    ref, t_ref = timed(lambda: SkNMF(k, init="nndsvda", random_state=0, max_iter=200).fit(x))
    report(
        f"nmf n={n} d={d} k={k}",
        t_ours,
        t_ref,
        f"error ours/sklearn {ours.stats['nmf_reconstruction_error'] / ref.reconstruction_err_:.4f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="smaller sizes (a quick look)")
    parser.add_argument("--device", default="cpu", help="device of our fits (cpu, cuda, auto)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    s = 4 if args.small else 1
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, our fits on {DEVICE}")
    if DEVICE != "cpu":  # warm the device up so start-up is not timed
        PCA(n_components=2).fit(
            np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32), seed=0, device=DEVICE
        )
    bench_pca(rng, 20_000 // s, 512, None, "covariance", "full")
    bench_pca(rng, 20_000 // s, 512, None, "covariance", "covariance_eigh")  # scikit-learn's "auto" choice here
    bench_pca(rng, 20_000 // s, 1024, 16, "randomized", "randomized")
    bench_ica(rng, 20_000 // s, 32, 64)
    bench_kmeans(rng, 20_000 // s, 128, 128)
    bench_nmf(rng, 10_000 // s, 128, 32)


if __name__ == "__main__":
    main()
