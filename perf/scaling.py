"""Scaling: fit + top-k time against tokens, peak memory against tokens, and 1 vs 2 Ray workers.

Three measurements, each size in a fresh child process so its peak RSS (VmHWM) is its own:

1. compute: a float16 store of N tokens x 1,536 dims (synthetic, MiniLM-MLP-like: non-negative,
   ~30 % non-zero), a TopK SAE of width 8 x d (12,288 latents, k = 32) trained on a number of
   tokens proportional to N (``--train-fraction``), then streaming top-16 over all N tokens.
   Prints seconds per stage, seconds per token, and the exponent b of ``time ~ N^b`` (least
   squares in log-log over the sizes); peak RSS per size.
2. data path: one store of ``--big`` tokens (2 million by default, 6.1 GB on disk) written in
   chunks, then read as the fit reads it (shuffled blocks) and as top-k reads it (in order) at
   4 prefix sizes: read time against tokens (exponent) and peak RSS (flat).
3. Ray: the quick grid (20 cells) with 1 worker and with 2 workers (local clusters), fresh
   cache each; the ratio of the grid's wall time (cluster start excluded).

    OMP_NUM_THREADS=2 .venv/bin/python perf/scaling.py            # everything (~15 min, 2 cores)
    OMP_NUM_THREADS=2 .venv/bin/python perf/scaling.py --only ray

The 2-core CPU machine cannot train a 12,288-latent SAE on 2 million tokens in minutes (one
dense encoder matmul alone is 3.8 x 10^7 FLOP per token); part 1 uses up to 64k tokens and part 2 shows the data
path at full size. docs/scaling.md turns the per-token costs into a cost model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D = 1536
ROOT = Path(__file__).resolve().parent.parent


def peak_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    return -1


def synthetic_chunks(n: int, d: int, seed: int = 0, rows: int = 16384):
    """MiniLM-MLP-like activations ``[b, d]`` float32: non-negative, ~30 % non-zero, per-unit scales."""
    import torch

    rng = np.random.default_rng(seed)
    scale = rng.gamma(2.0, 0.5, size=d).astype(np.float32)
    for start in range(0, n, rows):
        b = min(rows, n - start)
        x = rng.standard_normal((b, d), dtype=np.float32) - 0.5
        np.maximum(x, 0, out=x)
        x *= scale
        yield torch.from_numpy(x)


def prefix(store, n: int):
    """The first ``n`` rows of an on-disk store, read the same chunked way."""
    from benchmark.activations import ActivationStore

    sub = ActivationStore(store.acts[:n], store.ids[:n], name=f"{store.name}[:{n}]")
    sub._file = store._file
    return sub


# -- children --------------------------------------------------------------------------------
def child_compute(n: int, workdir: Path, train_fraction: float, batch_size: int) -> dict:
    import torch

    from benchmark.activations import write_store
    from benchmark.topk import top_examples
    from methods.sae import TopKSAE

    torch.manual_seed(0)
    path = workdir / f"compute-{n}"
    t0 = time.perf_counter()
    store = write_store(path, synthetic_chunks(n, D), np.arange(n), dtype="float16", name=f"synthetic {n}")
    t1 = time.perf_counter()
    n_train = max(batch_size, int(n * train_fraction))
    method = TopKSAE(expansion=8.0, k=32, batch_size=batch_size, n_tokens=n_train)
    basis = method.fit(store, seed=0)
    t2 = time.perf_counter()
    bands = top_examples(basis, store, 16, (0.0,))
    t3 = time.perf_counter()
    shutil.rmtree(path)
    return {
        "tokens": n,
        "train_tokens": n_train,
        "width": basis.k,
        "write_s": t1 - t0,
        "fit_s": t2 - t1,
        "topk_s": t3 - t2,
        "top_shape": list(bands[0.0].top_idx.shape),
        "peak_rss_mib": peak_kib() / 1024,
    }


def child_read(path: Path, n: int, how: str) -> dict:
    from benchmark.activations import ActivationStore

    store = prefix(ActivationStore.open(path), n)
    start = time.perf_counter()
    rows = 0
    total = 0.0
    if how == "shuffled":  # what an SAE / sparse coding / k-means fit reads
        batches = store.batches(4096, shuffle=True, seed=0)
    else:  # what top-k and the statistics read
        batches = store.batches(8192)
    for x in batches:
        rows += len(x)
        total += float(x[:, 0].sum())
    assert rows == n
    return {"tokens": n, "how": how, "read_s": time.perf_counter() - start, "peak_rss_mib": peak_kib() / 1024}


def child_ray(workers: int, workdir: Path) -> dict:
    from benchmark.cache import Cache
    from benchmark.config import load_config
    from benchmark.executors import RayExecutor
    from benchmark.runner import Runner

    executor = RayExecutor(num_cpus=workers)
    t0 = time.perf_counter()
    with executor.connected():
        t1 = time.perf_counter()
        cache = Cache(workdir / f"ray-cache-{workers}")  # fresh: every stage computed
        start = time.perf_counter()
        config = load_config("quick")
        result = Runner(config, cache, results_dir=workdir / "results", progress=False, executor=executor).run()
        grid_s = time.perf_counter() - start
    return {"workers": workers, "cells": len(result.fits), "cluster_start_s": t1 - t0, "grid_s": grid_s}


def child_matmul() -> dict:
    """GFLOP/s of the SAE's one dense matmul ``[1024, 1536] @ [1536, 12288]`` (float32) right now."""
    import torch

    x, w = torch.randn(1024, D), torch.randn(8 * D, D)
    x @ w.T
    start = time.perf_counter()
    for _ in range(5):
        x @ w.T
    seconds = (time.perf_counter() - start) / 5
    return {"gflops": 2 * 1024 * D * 8 * D / seconds / 1e9, "unit_ms_per_token": 1e3 * seconds / 1024}


def run_child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exponent(tokens: list[float], seconds: list[float]) -> float:
    """b in seconds ~ a * tokens^b, least squares in log-log."""
    return float(np.polyfit(np.log(tokens), np.log(seconds), 1)[0])


# -- parent ----------------------------------------------------------------------------------
def part_compute(sizes: list[int], workdir: Path, train_fraction: float, batch_size: int) -> list[dict]:
    print(f"\n1. compute: TopK SAE width 8 x {D}, k=32, trained on {train_fraction:g} x N tokens; top-16 over N")
    print(
        f"{'tokens':>9} {'train':>7} {'fit s':>8} {'top-k s':>8} {'fit ms/train tok':>17} {'top-k ms/tok':>13} {'peak RSS MiB':>13}"
    )
    cal = run_child("matmul")
    print(
        f"(float32 [1024, {D}] @ [{D}, {8 * D}] now: {cal['gflops']:.1f} GFLOP/s = {cal['unit_ms_per_token']:.2f} ms/token)"
    )
    rows = []
    for n in sizes:
        r = run_child("compute", str(n), str(workdir), str(train_fraction), str(batch_size))
        rows.append(r)
        print(
            f"{n:>9} {r['train_tokens']:>7} {r['fit_s']:>8.1f} {r['topk_s']:>8.1f} "
            f"{1e3 * r['fit_s'] / r['train_tokens']:>17.3f} {1e3 * r['topk_s'] / n:>13.3f} {r['peak_rss_mib']:>13.0f}",
            flush=True,
        )
    ns = [r["tokens"] for r in rows]
    print(
        f"exponent (time ~ tokens^b): fit b = {exponent(ns, [r['fit_s'] for r in rows]):.2f}, "
        f"top-k b = {exponent(ns, [r['topk_s'] for r in rows]):.2f}, "
        f"fit + top-k b = {exponent(ns, [r['fit_s'] + r['topk_s'] for r in rows]):.2f}"
    )
    return rows


def part_data(big: int, workdir: Path) -> list[dict]:
    from benchmark.activations import write_store

    need = big * D * 2
    free = shutil.disk_usage(workdir).free
    if free < 1.5 * need:
        big = int(free / 1.5 / (D * 2)) // 4 * 4
        print(f"(only {free / 2**30:.1f} GiB free: data path scaled down to {big} tokens)")
        need = big * D * 2
    print(f"\n2. data path: float16 store of {big} tokens x {D} ({need / 2**30:.2f} GiB)")
    path = workdir / "big"
    start = time.perf_counter()
    base = peak_kib()
    write_store(path, synthetic_chunks(big, D, seed=1), np.arange(big), dtype="float16", name="big")
    write_s = time.perf_counter() - start
    print(
        f"written in {write_s:.1f} s ({need / 2**20 / write_s:.0f} MiB/s), writer peak RSS +{(peak_kib() - base) / 1024:.0f} MiB"
    )
    sizes = [big // 8, big // 4, big // 2, big]
    rows = []
    print(f"{'tokens':>9} {'read':>9} {'s':>7} {'µs/tok':>7} {'peak RSS MiB':>13}")
    for how in ("shuffled", "ordered"):
        for n in sizes:
            r = run_child("read", str(path), str(n), how)
            rows.append(r)
            print(
                f"{n:>9} {how:>9} {r['read_s']:>7.1f} {1e6 * r['read_s'] / n:>7.2f} {r['peak_rss_mib']:>13.0f}",
                flush=True,
            )
        sel = [r for r in rows if r["how"] == how]
        print(
            f"  {how}: exponent b = {exponent(sizes, [r['read_s'] for r in sel]):.2f}, peak RSS {min(r['peak_rss_mib'] for r in sel):.0f}-{max(r['peak_rss_mib'] for r in sel):.0f} MiB"
        )
    shutil.rmtree(path)
    return rows


def part_ray(workdir: Path) -> list[dict]:
    print("\n3. Ray: the quick grid on a local cluster of 1 and of 2 workers (fresh cache each)")
    rows = [run_child("ray", str(w), str(workdir)) for w in (1, 2)]
    for r in rows:
        print(
            f"  {r['workers']} worker(s): {r['cells']} cells, cluster start {r['cluster_start_s']:.1f} s, grid {r['grid_s']:.1f} s"
        )
    one, two = rows
    print(f"  ratio grid time 1 worker / 2 workers: {one['grid_s'] / two['grid_s']:.2f}x")
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "compute":
            out = child_compute(int(rest[0]), Path(rest[1]), float(rest[2]), int(rest[3]))
        elif kind == "matmul":
            out = child_matmul()
        elif kind == "read":
            out = child_read(Path(rest[0]), int(rest[1]), rest[2])
        else:
            out = child_ray(int(rest[0]), Path(rest[1]))
        print(json.dumps(out))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="8192,16384,32768,65536", help="token counts of part 1")
    p.add_argument("--train-fraction", type=float, default=0.5, help="SAE training tokens per store token")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--big", type=int, default=2_000_000, help="tokens of the part-2 store")
    p.add_argument("--only", choices=["compute", "data", "ray"], action="append")
    p.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    p.add_argument("--json", help="write all numbers here")
    args = p.parse_args()
    parts = args.only or ["compute", "data", "ray"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="interpbench-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    import torch

    print(
        f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, scratch {workdir}"
    )
    results: dict[str, list[dict]] = {}
    try:
        if "compute" in parts:
            results["compute"] = part_compute(
                [int(s) for s in args.sizes.split(",")], workdir, args.train_fraction, args.batch_size
            )
        if "data" in parts:
            results["data"] = part_data(args.big, workdir)
        if "ray" in parts:
            results["ray"] = part_ray(workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
