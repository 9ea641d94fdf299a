"""Speed and size of the leaderboards and the report.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python perf/report_build.py``.

1. The bootstrap interval of a median (one leaderboard cell of the default benchmark's size:
   3 seeds x 512 directions) drawn with order statistics (``bootstrap_median_ci``) against direct
   resampling (``np.median`` of ``n_boot`` resamples), same ``n_boot``; prints the ratio and the
   largest difference of the interval ends.
2. The quick config: ``interpbench run`` into a fresh results folder (fresh cache), then the
   report built cold (figures drawn, galleries copied), into a new folder reusing the figures the
   run drew, and rebuilt in place (nothing redrawn);
   prints seconds, files, MB, against the budget (< 10 s, < 20 MB).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.leaderboard import N_BOOT, bootstrap_median_ci

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def bootstrap_ratio() -> None:
    values = np.random.default_rng(0).standard_t(3, size=3 * 512)

    def direct():
        rng = np.random.default_rng(1)
        medians = np.median(values[rng.integers(0, len(values), size=(N_BOOT, len(values)))], axis=1)
        return tuple(np.percentile(medians, [2.5, 97.5]))

    fast, t_fast = timed(lambda: bootstrap_median_ci(values), repeat=20)
    ref, t_direct = timed(direct, repeat=2)
    print(f"bootstrap CI of a median, m = {len(values)}, n_boot = {N_BOOT}:")
    print(f"  order statistics {t_fast * 1e3:8.2f} ms   direct resampling {t_direct * 1e3:8.1f} ms")
    print(f"  ratio (direct / ours): {t_direct / t_fast:.0f}x;  interval ends differ by at most "
          f"{max(abs(a - b) for a, b in zip(fast, ref)):.4f} (IQR of the data {np.subtract(*np.percentile(values, [75, 25])):.3f})")  # fmt: skip


def quick_report() -> None:
    from benchmark.report.build import build_report, report_size

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "benchmark.cli", "--cache-dir", str(tmp / "cache"), "run", "--config", "quick"]
        cmd += ["--results-dir", str(tmp / "results"), "--quiet"]
        _, t_run = timed(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=REPO))
        run = next(p for p in (tmp / "results" / "runs").iterdir() if p.is_dir() and not p.is_symlink())
        _, t_reuse = timed(lambda: build_report(run, tmp / "report0"))  # figures copied from the run's plots/
        shutil.rmtree(run / "plots")
        _, t_cold = timed(lambda: build_report(run, tmp / "report"))  # figures drawn
        _, t_warm = timed(lambda: build_report(run, tmp / "report"))
        files, size = report_size(tmp / "report")
        print("quick config:")
        print(f"  interpbench run (cold cache, incl. leaderboards + figures): {t_run:.1f} s")
        print(
            f"  report into a new folder: {t_cold:.2f} s  (budget 10 s);  {files} files, {size / 2**20:.2f} MB (budget 20 MB)"
        )
        print(f"  report rebuilt in place: {t_warm:.2f} s;  new folder reusing the run's figures: {t_reuse:.2f} s")


if __name__ == "__main__":
    bootstrap_ratio()
    quick_report()
