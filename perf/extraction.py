"""Vision activation extraction: the batched adapter into an on-disk store vs one image at a time.

For ``efficientnet_lite0`` (layer ``_conv_head``, 1,280 channels, real weights) and the
``shapes_cnn`` architecture (layer ``conv4``; timed at random init, ``shapes_cnn_untrained``:
same network, same cost, no training needed) at 64 x 64 and 224 x 224 inputs: the adapter's
extraction (``model.activations`` batched under ``inference_mode``, written chunk by chunk by
``write_store``) against the obvious alternative, a plain loop calling the model on one image
at a time with the same hook. Images are pre-rendered ``shapes`` at the input size, held in
memory, so both sides time the model and not the data. Both must give the same activations:
the script prints the largest difference.

    OMP_NUM_THREADS=2 .venv/bin/python perf/extraction.py
    OMP_NUM_THREADS=2 .venv/bin/python perf/extraction.py --models shapes_cnn --sizes 64
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.activations import write_store  # noqa: E402
from benchmark.data.base import StimulusSet  # noqa: E402
from benchmark.models.base import pool_spatial  # noqa: E402

LAYERS = {"efficientnet_lite0": "_conv_head", "shapes_cnn": "conv4"}


class InMemory(StimulusSet):
    """Pre-rendered images ``[n, 3, s, s]`` float32."""

    provides = frozenset({"images"})

    def __init__(self, images: torch.Tensor) -> None:
        self.x = images

    def __len__(self) -> int:
        return len(self.x)

    def identity(self) -> dict:
        return {"name": "in_memory", "n": len(self.x)}

    def images(self, idx):
        return self.x[torch.as_tensor(np.asarray(idx))]


def build(name: str, size: int):
    if name == "efficientnet_lite0":
        from benchmark.models.efficientnet import EfficientNetLite0

        return EfficientNetLite0(input_size=size)
    from benchmark.models.cnn import ShapesCNNUntrained

    return ShapesCNNUntrained(input_size=size)


@torch.inference_mode()
def one_by_one(model, data: InMemory, layer: str) -> torch.Tensor:
    """The plain loop: one forward pass per image, same hook and pooling."""
    module = dict(model.net.named_modules())[layer]
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    rows = []
    try:
        for i in range(len(data)):
            captured.clear()
            model.net(model.preprocess(data.images([i])))
            rows.append(pool_spatial(captured[0], model.spatial).float())
    finally:
        handle.remove()
    return torch.cat(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(LAYERS))
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 224])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=0, help="images per case (default: by model and size)")
    args = p.parse_args()

    from benchmark.data.shapes import Shapes

    print(f"torch threads: {torch.get_num_threads()}, batch size {args.batch_size}")
    print(f"{'model':<20} {'size':>5} {'n':>5} {'batched img/s':>14} {'1-by-1 img/s':>13} {'ratio':>7} {'max diff':>9}")
    for name in args.models:
        for size in args.sizes:
            n = args.images or (128 if name == "efficientnet_lite0" and size == 224 else 512)
            data = InMemory(Shapes(n=n, size=size, seed=0).images(np.arange(n)))
            model = build(name, size)
            layer = LAYERS[name]
            idx = np.arange(n)
            one_by_one(model, InMemory(data.x[:4]), layer)  # warm-up: first calls build kernels for new shapes
            warm = min(args.batch_size, n)
            list(model.activations(data, idx[:warm], layer, batch_size=warm, device=torch.device("cpu")))
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                chunks = model.activations(data, idx, layer, batch_size=args.batch_size, device=torch.device("cpu"))
                store = write_store(Path(tmp) / "store", chunks, idx)
                batched_s = time.perf_counter() - start
                batched = store.rows(0, n)
            start = time.perf_counter()
            naive = one_by_one(model, data, layer)
            naive_s = time.perf_counter() - start
            diff = float((batched - naive).abs().max())
            print(
                f"{name:<20} {size:>5} {n:>5} {n / batched_s:>14.1f} {n / naive_s:>13.1f} "
                f"{naive_s / batched_s:>6.2f}x {diff:>9.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
