"""Protocols against independent computations: the psychophysics task recomputed by hand in
plain numpy (following the reference code's algorithm step by step), and consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import rank_codes

from benchmark.data.base import StimulusSet
from metrics.base import TopExamples
from metrics.color import ColorConsistency
from metrics.label import LabelConsistency
from metrics.protocols import query_permutations, trial_scores


class Swatches(StimulusSet):
    """Constant-color 8x8 images with known colors and labels."""

    provides = frozenset({"images", "rgb_images", "labels"})

    def __init__(self, colors: np.ndarray, labels: np.ndarray) -> None:
        self.colors, self._labels = colors.astype(np.float32), labels
        self.label_names = [str(i) for i in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.colors)

    def identity(self) -> dict:
        return {"name": "swatches", "digest": float(self.colors.sum()), "n": len(self)}

    def images(self, idx):
        c = torch.from_numpy(self.colors[np.asarray(idx)])
        return c[:, :, None, None].expand(-1, -1, 8, 8).contiguous()

    def labels(self, idx):
        return self._labels[np.asarray(idx)]


def reference_psychophysics(inputs, activations, metric, quantiles=(0.0, 0.25), T=20, R=9, seed=42):
    """One unit's scores per quantile, written from the published algorithm (plain numpy)."""
    np.random.seed(seed)
    scores = []
    for q in quantiles:
        keep = (activations >= np.quantile(activations, q)) & (activations <= np.quantile(activations, 1 - q))
        y, x = activations[keep], inputs[keep]
        order_bottom = np.argsort(y)
        order_top = order_bottom[::-1]
        q_top = x[order_top[:T][np.random.choice(T, T, replace=False)]]
        q_bottom = x[order_bottom[:T][np.random.choice(T, T, replace=False)]]
        ref_rank = T + np.arange(R) * T
        probs = []
        for t in range(T):
            reference = np.concatenate([x[order_top[ref_rank + t]], x[order_bottom[ref_rank + t]]])
            query = np.stack([q_top[t], q_bottom[t]])
            sim = metric(reference, query)  # [2R, 2]
            sim = (sim - sim.mean()) / (sim.std() if sim.std() > 0 else 1.0)
            logit_correct = sim[:R, 0].mean() + sim[R:, 1].mean()
            logit_swapped = sim[:R, 1].mean() + sim[R:, 0].mean()
            e = np.exp([logit_correct, logit_swapped])
            probs.append(e[0] / e.sum())
        scores.append(np.mean(probs))
    return np.array(scores)


def color_metric(a, b):
    """Negative L2 distance between mean colors of image batches ``[n, 3, H, W]``."""
    ca, cb = a.mean(axis=(2, 3)), b.mean(axis=(2, 3))
    return -np.sqrt(((ca[:, None] - cb[None]) ** 2).sum(-1))


def test_psychophysics_matches_hand_computation_per_quantile():
    rng = np.random.default_rng(0)
    n = 900
    colors = rng.uniform(0, 1, size=(n, 3))
    labels = rng.integers(0, 3, size=n)
    stimuli = Swatches(colors, labels)
    # three directions: reads red (with noise), reads the label, pure noise
    codes = np.stack(
        [colors[:, 0] + 0.3 * rng.standard_normal(n), labels + 0.5 * rng.standard_normal(n), rng.standard_normal(n)],
        axis=1,
    ).astype(np.float32)
    examples = TopExamples(stimuli, rank_codes(codes, 200, (0.0, 0.25)))
    metric = ColorConsistency(protocol="psychophysics")
    ours = metric.score_all(examples)
    images = stimuli.images(np.arange(n)).numpy().astype(np.float64)
    for j in range(codes.shape[1]):
        ref = reference_psychophysics(images, codes[:, j].astype(np.float64), color_metric)
        got = np.array([ours[""][j], ours["q0.25"][j]])
        print(f"direction {j}: reference {ref.round(6)}, ours {got.round(6)}")
        np.testing.assert_allclose(got, ref, atol=1e-6)
    assert ours[""][0] > 0.6 and abs(ours[""][2] - 0.5) < 0.1

    label_metric = LabelConsistency(protocol="psychophysics")
    ours_label = label_metric.score_all(examples)
    ref = reference_psychophysics(labels, codes[:, 1].astype(np.float64), lambda a, b: (a[:, None] == b[None]) * 1.0)
    np.testing.assert_allclose([ours_label[""][1], ours_label["q0.25"][1]], ref, atol=1e-9)


def test_one_trial_by_hand():
    sim = torch.tensor([[0.9, 0.1], [0.8, 0.3], [0.2, 0.7], [0.1, 0.9]], dtype=torch.float64)  # R = 2
    s = sim.numpy()
    z = (s - s.mean()) / s.std()
    evidence_correct = z[:2, 0].mean() + z[2:, 1].mean()
    evidence_swapped = z[:2, 1].mean() + z[2:, 0].mean()
    expected = 1 / (1 + np.exp(evidence_swapped - evidence_correct))
    assert float(trial_scores(sim, 2)) == pytest.approx(expected, abs=1e-12)
    assert float(trial_scores(sim.flip(1), 2)) == pytest.approx(1 - expected, abs=1e-12)


def test_query_permutations_follow_the_legacy_generator():
    np.random.seed(42)
    expected = [(np.random.choice(20, 20, replace=False), np.random.choice(20, 20, replace=False)) for _ in range(2)]
    for i in range(2):
        top, bottom = query_permutations(42, 20, i)
        np.testing.assert_array_equal(top, expected[i][0])
        np.testing.assert_array_equal(bottom, expected[i][1])


def test_consistency_is_mean_offdiagonal_similarity():
    rng = np.random.default_rng(1)
    colors = rng.uniform(0, 1, size=(100, 3))
    stimuli = Swatches(colors, rng.integers(0, 2, size=100))
    codes = rng.standard_normal((100, 5)).astype(np.float32)
    examples = TopExamples(stimuli, rank_codes(codes, 8))
    got = ColorConsistency(n=8).score(examples)
    for j in range(5):
        c = colors[examples.top_idx[j, :8]]
        d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
        assert got[j] == pytest.approx(-d[~np.eye(8, dtype=bool)].mean(), abs=1e-6)
