"""Token activation extraction: windows run once per document vs one forward pass per token.

For ``bytes_1l`` (MLP, 512 units) and ``minilm`` (``encoder.layer.3.intermediate``, 1,536
units) on documents of the textmix eval split: the adapter's extraction (each document window
that holds sampled tokens runs once, windows packed into batches) against the obvious
alternative, one forward pass per sampled token over the same window (timed on the first
``--naive-tokens`` tokens and scaled; its cost per token is constant). Both must give the same
activations: the script prints the largest difference. ``bytes_1l`` is timed at random init
(``bytes_1l_untrained``: same architecture, so the same cost; no training needed here).

    OMP_NUM_THREADS=2 .venv/bin/python perf/language_extraction.py
    OMP_NUM_THREADS=2 .venv/bin/python perf/language_extraction.py --docs 40 --models bytes_1l
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def naive(model, samples, idx: np.ndarray, layer: str) -> torch.Tensor:
    """One forward pass per token: the same window, batch size 1."""
    module, where = model.layer_modules()[layer]
    rows = []
    got: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: got.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.inference_mode():
            for w in samples.windows(idx):
                for local in w.local:
                    got.clear()
                    ids = torch.from_numpy(np.asarray(w.ids, dtype=np.int64))[None]
                    model.forward(ids, torch.ones_like(ids))
                    rows.append(got[0][0, int(local) + model.prefix].float())
    finally:
        handle.remove()
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["bytes_1l", "minilm"])
    parser.add_argument("--docs", type=int, default=120, help="textmix eval documents")
    parser.add_argument("--tokens-per-doc", type=int, default=32)
    parser.add_argument("--naive-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from benchmark.data.base import Subset
    from benchmark.data.textmix import TextMix

    docs = TextMix(split="eval")
    pick = np.sort(np.random.default_rng(0).choice(len(docs), min(args.docs, len(docs)), replace=False))
    docs = Subset(docs, pick)
    print(f"threads {torch.get_num_threads()}; {len(docs)} textmix eval documents, {args.tokens_per_doc} tokens each")
    for name in args.models:
        if name == "bytes_1l":
            from benchmark.models.bytes_transformer import Bytes1LUntrained

            model, layer = Bytes1LUntrained(tokens_per_doc=args.tokens_per_doc), "mlp"
        else:
            from benchmark.models.minilm import MiniLM

            model, layer = MiniLM(tokens_per_doc=args.tokens_per_doc), "encoder.layer.3.intermediate"
        samples = model.samples(docs)
        idx = np.arange(len(samples))
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            acts = torch.cat(list(model.activations(samples, idx, layer, batch_size=256, device="cpu")))
            best = min(best, time.perf_counter() - start)
        n_naive = min(args.naive_tokens, len(idx))
        start = time.perf_counter()
        ref = naive(model, samples, idx[:n_naive], layer)
        naive_s = (time.perf_counter() - start) * len(idx) / n_naive
        diff = float((acts[:n_naive] - ref).abs().max())
        windows = sum(1 for _ in samples.windows(idx))
        print(
            f"{name:9s} {layer}: {len(idx)} tokens ({windows} windows of <= {model.window}) "
            f"batched {len(idx) / best:8.0f} tokens/s | one pass per token {len(idx) / naive_s:7.0f} tokens/s "
            f"| ratio {naive_s / best:6.1f}x | max diff {diff:.1e}"
        )


if __name__ == "__main__":
    main()
