"""Time every vision metric on one basis: 512 directions over a 2,000-image probe split at 64x64.

Each metric runs as the harness runs it: ``score_all`` on the basis's top examples plus
``score_all`` on 32 random index sets (the chance level), from a cold feature cache (so the
backbones' cost is included). Directions are random top sets (Gaussian codes ranked like the
harness, bands 0.0 and 0.25). The goal: all metrics under the default protocol (consistency,
top 16) within 60 s on 2 cores. Psychophysics (20 trials x 9 references per side, two bands)
is timed too. LPIPS runs on a random AlexNet trunk when the ImageNet file is absent (same
cost); ``perceptual_consistency`` on EfficientNet-Lite0 at the images' own size.

    OMP_NUM_THREADS=2 .venv/bin/python perf/metrics_speed.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def lpips_weights() -> str | None:
    """The ImageNet AlexNet file when present, else a random trunk saved to a temporary file."""
    from metrics.lpips import default_weights_path

    if default_weights_path().is_file():
        return None
    import lpips
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    path = Path(tempfile.mkdtemp()) / "alexnet-random.safetensors"
    save_file({f"features.{k.split('.', 1)[1]}": v.contiguous() for k, v in ref.net.state_dict().items()}, str(path))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directions", type=int, default=512)
    parser.add_argument("--probe", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chance-sets", type=int, default=32)
    parser.add_argument("--protocols", nargs="+", default=["consistency", "psychophysics"])
    args = parser.parse_args()

    from benchmark.data.shapes import Shapes
    from benchmark.topk import StreamingExtremes, random_sets
    from metrics.base import TopExamples
    from metrics.color import ColorConsistency
    from metrics.compressibility import CaptionCompressibility
    from metrics.features import FEATURES
    from metrics.label import LabelConsistency
    from metrics.lpips import LPIPSConsistency
    from metrics.perceptual import PerceptualConsistency

    stimuli = Shapes(n=args.probe, size=args.size, seed=0)
    codes = torch.randn(args.probe, args.directions, generator=torch.Generator().manual_seed(0))
    bands = {}
    for q in (0.0, 0.25):
        lim = torch.quantile(codes, torch.tensor([q, 1 - q]), dim=0) if q else (None, None)
        tracker = StreamingExtremes(args.directions, 200, *lim)
        tracker.update(codes, torch.arange(args.probe))
        bands[q] = tracker.result(q)
    examples = TopExamples(stimuli, bands, pool=np.arange(args.probe))
    weights = lpips_weights()
    perceptual_model = "efficientnet_lite0"
    if PerceptualConsistency(model=perceptual_model).skip_reason(stimuli):
        perceptual_model = "shapes_cnn_untrained"
    print(
        f"threads {torch.get_num_threads()}; {args.directions} directions, probe {args.probe} shapes at "
        f"{args.size}x{args.size}, {args.chance_sets} chance sets; LPIPS trunk: "
        f"{'random (no ImageNet file)' if weights else 'ImageNet'}; perceptual model: {perceptual_model}"
    )
    totals: dict[str, float] = {}
    for protocol in args.protocols:
        metrics = {
            "color_consistency": ColorConsistency(protocol=protocol),
            "lpips_consistency": LPIPSConsistency(protocol=protocol, weights=weights, device="cpu"),
            "perceptual_consistency": PerceptualConsistency(protocol=protocol, model=perceptual_model, device="cpu"),
            "label_consistency": LabelConsistency(protocol=protocol),
        }
        if protocol == "consistency":
            metrics["caption_compressibility"] = CaptionCompressibility()
        for name, metric in metrics.items():
            FEATURES.clear()
            n = metric.needs()[0]
            chance = TopExamples(
                stimuli,
                {q: random_sets(np.arange(args.probe), args.chance_sets, n, 0) for q in (0.0, 0.25)},
                is_random=True,
                pool=np.arange(args.probe),
            )
            start = time.perf_counter()
            scores = metric.score_all(examples)
            t_score = time.perf_counter() - start
            metric.score_all(chance)
            seconds = time.perf_counter() - start
            totals[protocol] = totals.get(protocol, 0.0) + seconds
            head = scores[""]
            print(
                f"  {name:24s} {protocol:13s} {seconds:6.1f} s  (basis {t_score:5.1f} s, chance "
                f"{seconds - t_score:4.1f} s; median {np.median(head):.3g})"
            )
    for protocol, seconds in totals.items():
        print(f"all metrics, {protocol}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
