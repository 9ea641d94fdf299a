"""Protocols against independent computations: the psychophysics task recomputed by hand in
plain numpy (following the reference code's algorithm step by step), and consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import rank_codes

from benchmark.activations import ActivationStore
from benchmark.data.base import StimulusSet
from metrics.base import TopExamples
from metrics.color import ColorConsistency
from metrics.label import LabelConsistency
from metrics.protocols import band_needed, query_permutations, trial_scores


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
    n = 1700  # the q=0.25 band holds 850 > 4 x 20 x (9 + 1) samples: the published rule lets it run
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


# -- sparse codes: the same top set scores the same whether its code is dense or sparse -------------


def red_swatches(n: int = 6000, noise: float = 0.3, seed: int = 0):
    """``(stimuli, acts [n, 2])``: swatches whose first activation reads their red channel with noise."""
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0, 1, size=(n, 3))
    acts = np.stack([colors[:, 0] + noise * rng.standard_normal(n), rng.standard_normal(n)], 1).astype(np.float32)
    return Swatches(colors, rng.integers(0, 3, size=n)), acts


@pytest.mark.parametrize("quantile_of_threshold", [0.8, 0.95])
def test_sparse_code_scores_as_its_dense_code(quantile_of_threshold):
    """A dense code ``c`` and the ReLU SAE code ``relu(c - theta)`` of the same direction, through
    the harness's ranking (``top_examples``): the psychophysics scores agree within 0.02 in every
    band, while ranking by the sparse code itself (the old rule: zeros as a random bottom) does not."""
    from benchmark.topk import top_examples
    from methods.base import LinearBasis
    from methods.sae import SAEBasis

    stimuli, acts = red_swatches()
    theta = float(np.quantile(acts[:, 0], quantile_of_threshold))
    unit = torch.tensor([[1.0, 0.0]])
    dense = LinearBasis(directions=unit)
    sparse = SAEBasis(W_enc=unit, b_enc=torch.tensor([-theta]), W_dec=unit)
    assert (sparse.encode(torch.from_numpy(acts)) == 0).float().mean() == pytest.approx(quantile_of_threshold, abs=0.01)
    metric = ColorConsistency(protocol="psychophysics")
    scores = {}
    for name, basis in (("dense", dense), ("sparse", sparse)):
        bands = top_examples(basis, ActivationStore.wrap(acts), 200, metric.quantiles)
        scores[name] = metric.score_all(TopExamples(stimuli, bands))
    by_code = metric.score_all(TopExamples(stimuli, rank_codes(sparse.encode(torch.from_numpy(acts)).numpy(), 200,
                                                                metric.quantiles)))  # fmt: skip
    for suffix in ("", "q0.25"):
        d, s, old = (float(x[suffix][0]) for x in (scores["dense"], scores["sparse"], by_code))
        print(f"q column {suffix or 'q0'}: dense {d:.3f}, sparse (preactivation) {s:.3f}, sparse by code {old:.3f}")
        assert abs(d - s) <= 0.02
        assert old < d - 0.05  # the bias the preactivation removes
    assert scores["dense"][""][0] > 0.85


# -- band sufficiency: the published rule ----------------------------------------------------------


def test_insufficient_band_is_reported_not_scored():
    """900 swatches: the whole range (900 > 800) is scored, the q=0.25 band (about 450) is not;
    its directions are NaN with an ``insufficient`` status naming both numbers."""
    from benchmark.runner import direction_statuses, evaluate

    stimuli, acts = red_swatches(n=900)
    metric = ColorConsistency(protocol="psychophysics")
    examples = TopExamples(stimuli, rank_codes(acts, 200, metric.quantiles))
    scored, status = evaluate(metric, stimuli, examples)
    assert status == "ok"
    assert np.isfinite(scored[""]).all() and np.isnan(scored["q0.25"]).all()
    per_direction = metric.direction_status(examples)
    assert set(per_direction) == {"q0.25"}
    held = int(examples.band(0.25).count[0])
    assert 400 < held < 500
    assert per_direction["q0.25"][0] == (
        f"insufficient: band q=0.25 holds {held} samples, needs more than 800 (4 x 20 trials x (9 references + 1))"
    )
    statuses = direction_statuses(2, "ok", {per_direction["q0.25"][1]: [1]})
    assert list(statuses) == ["ok", per_direction["q0.25"][1]]


@pytest.mark.parametrize(("n", "ok"), [(800, False), (801, True)])
def test_band_rule_boundary(n, ok):
    """The reference code refuses a band with ``4 T (R + 1)`` samples *or fewer*."""
    assert band_needed(20, 9) == 800
    stimuli, acts = red_swatches(n=n)
    metric = ColorConsistency(protocol="psychophysics", quantiles=(0.0,))
    scores = metric.score(TopExamples(stimuli, rank_codes(acts, 200)))
    assert np.isfinite(scores).all() == ok and np.isnan(scores).all() != ok
    assert (metric.direction_status(TopExamples(stimuli, rank_codes(acts, 200))) == {}) == ok


def test_insufficient_band_in_the_score_stage(tmp_path):
    """``write_scores`` records the per-direction statuses next to the scores."""
    import json

    from benchmark.runner import write_scores

    stimuli, acts = red_swatches(n=900)
    metric = ColorConsistency(protocol="psychophysics")
    write_scores(tmp_path, metric, stimuli, TopExamples(stimuli, rank_codes(acts, 200, metric.quantiles)))
    info = json.loads((tmp_path / "status.json").read_text())
    assert info["status"] == "ok"
    assert sorted(d for ds in info["directions"]["q0.25"].values() for d in ds) == [0, 1]
    assert all(m.startswith("insufficient: band q=0.25 holds ") for m in info["directions"]["q0.25"])
