"""Label consistency: by-hand values and planted label directions on shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import auc, rank_codes

from metrics.base import TopExamples
from metrics.label import LabelConsistency


def test_consistency_is_fraction_of_same_label_pairs(shapes_small):
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((len(shapes_small), 6)).astype(np.float32)
    examples = TopExamples(shapes_small, rank_codes(codes, 10))
    got = LabelConsistency(n=10).score(examples)
    for j in range(6):
        lab = shapes_small.labels(examples.top_idx[j, :10])
        same = (lab[:, None] == lab[None]) & ~np.eye(10, dtype=bool)
        assert got[j] == pytest.approx(same.sum() / 90)


@pytest.mark.parametrize("protocol", ["consistency", "psychophysics"])
def test_label_directions_beat_random_directions(oracle, protocol):
    examples, tags = oracle(("shape",))  # shapes_small is labelled by shape
    score = LabelConsistency(protocol=protocol).score(examples)
    a = auc(score, tags != "random")
    print(f"label_consistency[{protocol}]: AUC {a:.3f}")
    assert a >= 0.9


def test_unlabelled_stimuli_match_nothing():
    a = torch.tensor([[0, -1, 2, -1]])
    sim = LabelConsistency().pairwise(a, a)[0]
    assert sim.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
