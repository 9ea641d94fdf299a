"""Caption compressibility: do a direction's top stimuli share a short description?

Each top stimulus gets a caption (from a captioner plugin). The ``n`` captions of a direction,
joined in activation order (one per line, UTF-8), are compressed; so are the joined captions
of ``n_random`` random sets of ``n`` stimuli drawn (seeded) from the same probe stimuli. The
score is the number of bits saved per caption against the random sets::

    score = (mean_r bits(random set r) - bits(top set)) / n

so it is about 0 at chance, and largest when all top captions are the same. Compressed sizes
are exact byte counts of zlib (level 9; default) or raw LZMA2 (preset 9, 1 MiB dictionary), so
the score is deterministic; empty captions and any Unicode text are handled (lone surrogates
pass through as UTF-8 bytes).
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from metrics.base import Metric, TopExamples

_COMPRESSORS = ("zlib", "lzma")
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]


def compressed_bits(captions: list[str], compressor: str = "zlib") -> int:
    """Size in bits of ``captions`` joined with newlines, UTF-8 encoded, then compressed."""
    data = "\n".join(captions).encode("utf-8", errors="surrogatepass")
    if compressor == "zlib":
        return 8 * len(zlib.compress(data, 9))
    if compressor == "lzma":
        return 8 * len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS))
    raise UserError(f"unknown compressor {compressor!r} (valid: {', '.join(_COMPRESSORS)})")


_CAPTIONS: dict[tuple[str, str], dict[int, str]] = {}


def cached_captions(captioner: Any, stimuli: StimulusSet, idx: np.ndarray) -> list[str]:
    """Captions of ``idx`` (cleaned to one line each), captioning each stimulus once per process."""
    from benchmark.cache import hash_key
    from metrics.features import stimuli_key

    table = _CAPTIONS.setdefault((hash_key(captioner.identity()), stimuli_key(stimuli)), {})
    missing = np.array(sorted({int(i) for i in idx} - set(table)), dtype=np.int64)
    if len(missing):
        fresh = captioner.captions(stimuli, missing)
        if len(fresh) != len(missing):
            raise UserError(f"captioner {type(captioner).__name__} returned {len(fresh)} captions for {len(missing)}")
        table.update(zip(missing.tolist(), (_clean(c) for c in fresh)))
    return [table[int(i)] for i in idx]


def _clean(caption: Any) -> str:
    """One line of text: None -> "", newlines -> spaces (a caption must not split in two)."""
    return "" if caption is None else " ".join(str(caption).splitlines())


@dataclass(frozen=True)
class CaptionCompressibility(Metric):
    """Bits saved per caption when a direction's top-``n`` captions are compressed together,
    relative to random sets of ``n`` captions from the same probe stimuli (higher is better).

    Settings:
        n: top stimuli per direction.
        captioner: a registered captioner (``"dataset"``, ``"open_clip_zero_shot"``, ...).
        captioner_params: its settings.
        compressor: ``"zlib"`` (level 9) or ``"lzma"``.
        n_random: random sets that give the reference size.
        seed: fixes the random sets.
    """

    n: int = 16
    captioner: str = "dataset"
    captioner_params: dict[str, Any] = field(default_factory=dict)
    compressor: str = "zlib"
    n_random: int = 64
    seed: int = 0
    requires: ClassVar[frozenset[str]] = frozenset()
    version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        if self.compressor not in _COMPRESSORS:
            raise UserError(
                f"caption_compressibility: unknown compressor {self.compressor!r} (valid: {', '.join(_COMPRESSORS)})"
            )
        if self.n < 1 or self.n_random < 1:
            raise UserError(f"caption_compressibility: n and n_random must be >= 1, got {self.n}, {self.n_random}")
        from benchmark.registry import CAPTIONERS

        if self.captioner not in CAPTIONERS:
            raise UserError("caption_compressibility: " + CAPTIONERS.unknown_message(self.captioner))

    def code_roots(self) -> tuple[Any, ...]:
        """The captioner's class: its code decides the scores, but no import links it here (the
        cache keys on it; see :mod:`benchmark.codedigest`)."""
        from benchmark.registry import CAPTIONERS

        return (CAPTIONERS.get(self.captioner),)

    def needs(self) -> tuple[int, tuple[float, ...]]:
        return self.n, (0.0,)

    def build_captioner(self):
        from benchmark.captioners import build_captioner

        return build_captioner(self.captioner, self.captioner_params)

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        reason = super().skip_reason(stimuli)
        if reason is not None:
            return reason
        return self.build_captioner().skip_reason(stimuli)

    def random_sets(self, pool: np.ndarray) -> np.ndarray:
        """``[n_random, n]`` seeded random index sets from ``pool`` (without replacement when it can)."""
        rng = np.random.default_rng(self.seed)
        replace = len(pool) < self.n
        return np.stack([rng.choice(pool, self.n, replace=replace) for _ in range(self.n_random)])

    def score(self, examples: TopExamples) -> np.ndarray:
        top = np.asarray(examples.top_idx[:, : self.n])
        if top.shape[1] < self.n:
            raise UserError(f"caption_compressibility: needs {self.n} top stimuli per direction, got {top.shape[1]}")
        stimuli = examples.stimuli
        pool = getattr(examples, "pool", None)
        pool = np.arange(len(stimuli)) if pool is None else np.asarray(pool)
        random = self.random_sets(pool)
        unique, inverse = np.unique(np.concatenate([top.reshape(-1), random.reshape(-1)]), return_inverse=True)
        captions = cached_captions(self.build_captioner(), stimuli, unique)
        pos = inverse.reshape(-1, self.n)
        sets = [[captions[i] for i in row] for row in pos]
        bits = np.array([compressed_bits(s, self.compressor) for s in sets], dtype=np.float64)
        k = len(top)
        reference = bits[k:].mean()
        return (reference - bits[:k]) / self.n
