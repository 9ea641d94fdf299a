"""Caption compressibility: range (identical captions on top, random near 0), planted factor
directions on shapes, robustness (empty, non-ASCII, lone surrogates), determinism, skips."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import auc, oracle_codes, rank_codes

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError
from benchmark.topk import random_sets
from metrics.base import TopExamples
from metrics.compressibility import CaptionCompressibility, compressed_bits

WORDS = ["red", "green", "blue", "circle", "square", "small", "large", "striped", "left", "right", "top", "bottom"]


class Captioned(StimulusSet):
    provides = frozenset({"captions"})

    def __init__(self, captions: list) -> None:
        self._captions = captions

    def __len__(self) -> int:
        return len(self._captions)

    def identity(self) -> dict:
        return {"name": "captioned", "n": len(self), "h": hash(tuple(map(str, self._captions)))}

    def captions(self, idx):
        return [self._captions[i] for i in np.asarray(idx)]


def _random_captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]


def test_identical_captions_top_of_range_random_near_chance():
    captions = _random_captions(600)
    captions[:16] = ["a large red striped circle at the top left"] * 16
    stimuli = Captioned(captions)
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((600, 40)).astype(np.float32)
    codes[:16, 0] += 100  # direction 0: the 16 identical captions
    metric = CaptionCompressibility()
    score = metric.score(TopExamples(stimuli, rank_codes(codes, 16), pool=np.arange(600)))
    n = metric.n
    random_bits = np.mean([compressed_bits([captions[i] for i in s]) for s in metric.random_sets(np.arange(600))])
    best_possible = (random_bits - compressed_bits([captions[0]] * n)) / n
    print(
        f"identical: {score[0]:.2f} bits/caption (max {best_possible:.2f}); random: {score[1:].mean():.2f} +- {score[1:].std():.2f}"
    )
    assert score[0] == pytest.approx(best_possible)
    assert score[0] > 10 * score[1:].std() and score[0] > score[1:].max()
    assert abs(score[1:].mean()) < 2 * score[1:].std() / np.sqrt(39) + 0.5


def test_harness_random_sets_score_near_zero(shapes_small):
    metric = CaptionCompressibility()
    ranked = random_sets(np.arange(len(shapes_small)), 64, 16, seed=5)
    chance = metric.score(TopExamples(shapes_small, {0.0: ranked}, is_random=True))
    print(f"caption_compressibility at chance: {chance.mean():.2f} +- {chance.std():.2f} bits/caption")
    assert abs(chance.mean()) < 3 * chance.std() / np.sqrt(len(chance)) + 0.5


def test_factor_directions_beat_random_directions(shapes_small):
    codes, tags = oracle_codes(shapes_small, ("color", "shape", "size", "background", "texture"), 32)
    examples = TopExamples(shapes_small, rank_codes(codes, 16))
    tags = np.array(tags)
    for compressor in ("zlib", "lzma"):
        score = CaptionCompressibility(compressor=compressor).score(examples)
        a = auc(score, tags != "random")
        print(f"caption_compressibility[{compressor}]: AUC {a:.3f}")
        assert a >= 0.9


def test_robust_to_empty_and_non_ascii_captions_and_deterministic():
    captions = ["", None, "日本語のキャプション", "émoji 🎨 ok", "line\nbreak", "lone \ud800 surrogate"] * 20
    stimuli = Captioned(captions)
    codes = np.random.default_rng(0).standard_normal((len(captions), 4)).astype(np.float32)
    examples = TopExamples(stimuli, rank_codes(codes, 16))
    for compressor in ("zlib", "lzma"):
        a = CaptionCompressibility(compressor=compressor).score(examples)
        b = CaptionCompressibility(compressor=compressor).score(examples)
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)


def test_settings_and_skips():
    with pytest.raises(UserError, match="compressor"):
        CaptionCompressibility(compressor="bz2")
    with pytest.raises(UserError, match="captioner"):
        CaptionCompressibility(captioner="datset")

    class Bare(StimulusSet):
        provides = frozenset({"images"})

        def __len__(self):
            return 3

        def identity(self):
            return {"name": "bare"}

    reason = CaptionCompressibility().skip_reason(Bare())
    assert reason is not None and "caption" in reason
