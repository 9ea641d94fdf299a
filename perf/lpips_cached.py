"""Cached LPIPS (backbone once per image, Gram-form distances) vs ``lpips.LPIPS`` on every pair.

The task is what ``lpips_consistency`` does for one basis: 512 directions, each with its top 16
images from a probe pool, and the mean LPIPS over the 120 pairs of each top set. The cached side
runs the whole thing cold (empty feature cache: every distinct image through AlexNet once).
The images are rendered before either side is timed (both read them from the set's cache).
The package side calls ``lpips.LPIPS(net="alex")`` on each direction's 120 pairs (one batch per
direction); it is timed on the first ``--baseline-directions`` directions and scaled linearly to
all of them (its cost per pair is constant). The AlexNet trunk is the package's random init
(``pnet_rand=True``; ImageNet weights change no timing), shared by both sides, so the values
must agree: the script prints the largest difference.

    OMP_NUM_THREADS=2 .venv/bin/python perf/lpips_cached.py
    OMP_NUM_THREADS=2 .venv/bin/python perf/lpips_cached.py --sizes 64 --baseline-directions 64
    .venv/bin/python perf/lpips_cached.py --device cuda      # both sides on the GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--directions", type=int, default=512)
    parser.add_argument("--top", type=int, default=16)
    parser.add_argument("--pool", type=int, default=2000, help="probe images the top sets are drawn from")
    parser.add_argument("--baseline-directions", type=int, nargs="+", default=[32, 4], help="per size")
    parser.add_argument("--device", default="cpu", help="where both sides run (cpu, cuda)")
    args = parser.parse_args()
    os.environ.setdefault("INTERPBENCH_FEATURE_CACHE_MB", "8192")  # a 224-pixel pool needs ~4 GB

    import lpips
    from safetensors.torch import save_file

    from benchmark.data.shapes import Shapes
    from metrics.base import Ranked, TopExamples
    from metrics.features import FEATURES
    from metrics.lpips import LPIPSConsistency

    torch.manual_seed(0)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    tmp = Path(tempfile.mkdtemp())
    weights = tmp / "alexnet-random.safetensors"
    save_file({f"features.{k.split('.', 1)[1]}": v.contiguous() for k, v in ref.net.state_dict().items()}, str(weights))
    ref.to(args.device)
    gpu = f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""
    print(
        f"device {args.device}{gpu}; threads {torch.get_num_threads()}; "
        f"{args.directions} directions x top-{args.top} from {args.pool} images"
    )
    rng = np.random.default_rng(0)
    top = np.stack([rng.choice(args.pool, args.top, replace=False) for _ in range(args.directions)])
    pairs = np.array([(i, j) for i in range(args.top) for j in range(i + 1, args.top)])
    for s_i, size in enumerate(args.sizes):
        stimuli = Shapes(n=args.pool, size=size, seed=1)
        stimuli.images_uint8(np.arange(args.pool))  # rendered once, outside both timings
        ranked = Ranked(top, np.zeros(top.shape, np.float32), top[:, ::-1].copy(), np.zeros(top.shape, np.float32))
        examples = TopExamples(stimuli, {0.0: ranked})
        metric = LPIPSConsistency(weights=str(weights), n=args.top, device=args.device)
        FEATURES.clear()
        start = time.perf_counter()
        cached = metric.score(examples)
        t_cached = time.perf_counter() - start
        start = time.perf_counter()
        again = metric.score(examples)
        t_warm = time.perf_counter() - start
        assert np.array_equal(cached, again)

        n_base = args.baseline_directions[min(s_i, len(args.baseline_directions) - 1)]
        base = np.zeros(n_base)
        start = time.perf_counter()
        with torch.no_grad():
            for d in range(n_base):
                images = stimuli.images(top[d]).to(args.device)
                dist = ref(images[pairs[:, 0]], images[pairs[:, 1]], normalize=True).reshape(-1)
                base[d] = -dist.double().mean().item()  # .item() waits for the GPU
        t_base = (time.perf_counter() - start) * args.directions / n_base
        diff = np.abs(base - cached[:n_base]).max()
        n_pairs = args.directions * len(pairs)
        print(
            f"{size}x{size}: distinct images {len(np.unique(top))}; cached {t_cached:.1f} s cold "
            f"({t_warm:.2f} s warm), lpips.LPIPS per pair {t_base:.1f} s "
            f"({1000 * t_base / n_pairs:.2f} ms/pair, timed on {n_base} directions and scaled) -> "
            f"{t_base / t_cached:.0f}x faster cold, {t_base / t_warm:.0f}x warm; max |difference| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
