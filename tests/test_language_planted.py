"""Planted answer for the language track: in a corpus of base64 and English documents, a
basis whose directions read the source (or one token) scores far above random directions on
label consistency, caption compressibility, n-gram overlap and token consistency, and the
report's best-direction-per-source table finds the planted directions with purity 1."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.data.text_files import InMemoryDocuments
from benchmark.data.tokens import ByteTokenizer, TokenSamples
from benchmark.language_report import best_direction_per_source, label_purity, to_markdown
from benchmark.topk import top_examples
from methods.base import LinearBasis
from metrics.base import TopExamples
from metrics.compressibility import CaptionCompressibility
from metrics.label import LabelConsistency
from metrics.ngram import NgramConsistency
from metrics.token import TokenConsistency

WORDS = (
    "the a of and to in is was for on that with as by it at from this be are which or his had "
    "river house people morning letter garden window story country evening water mountain".split()
)
D = 256


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(60):
        if i % 2:
            texts.append(base64.encodebytes(rng.bytes(300)).decode())
            labels.append("base64")
        else:
            words = rng.choice(WORDS, 70)
            texts.append(" ".join(words).capitalize() + ".")
            labels.append("english")
    samples = TokenSamples(InMemoryDocuments(texts, labels), ByteTokenizer(), window=128, tokens_per_doc=40, seed=0)
    n = len(samples)
    is_b64 = samples.labels(np.arange(n)) == samples.label_names.index("base64")
    is_e = np.array(samples.tokens(np.arange(n))) == "e"
    acts = rng.normal(size=(n, D)).astype(np.float32)
    acts[:, 0] += 4.0 * is_b64  # direction 0 reads base64
    acts[:, 1] += 4.0 * ~is_b64  # direction 1 reads English
    acts[:, 2] += 6.0 * is_e  # direction 2 reads the token "e"
    store = ActivationStore.wrap(acts)
    planted_basis = LinearBasis(directions=torch.eye(D)[:3])
    q, _ = torch.linalg.qr(torch.from_numpy(np.random.default_rng(1).normal(size=(D, D))).float())
    random_basis = LinearBasis(directions=q.T.contiguous())
    ex = {
        name: TopExamples(samples, top_examples(b, store, 200))
        for name, b in (("planted", planted_basis), ("random", random_basis))
    }
    return samples, ex


def test_label_consistency_far_above_random_directions(planted) -> None:
    _, ex = planted
    metric = LabelConsistency(n=16)
    p, r = metric.score(ex["planted"]), metric.score(ex["random"])
    assert p[0] == 1.0 and p[1] == 1.0
    assert np.median(r) < 0.7 and min(p[0], p[1]) > np.percentile(r, 95)
    psy = LabelConsistency(protocol="psychophysics", n_trials=10, n_references=9, quantiles=(0.0,))
    assert psy.score(ex["planted"])[:2].min() > 0.95
    assert np.median(psy.score(ex["random"])) < 0.8


def test_caption_compressibility_and_ngrams_above_random(planted) -> None:
    _, ex = planted
    metric = CaptionCompressibility(n=16, n_random=32)
    p, r = metric.score(ex["planted"]), metric.score(ex["random"])
    # English contexts share words, so an English direction's contexts compress far better than
    # random sets; random base64 has no redundancy, so a base64 direction's contexts compress
    # no better than random ones (shown here, not hidden)
    assert p[1] > np.percentile(r, 90) + 5.0
    assert p[0] < p[1]
    ngram = NgramConsistency(n=16)
    pn, rn = ngram.score(ex["planted"]), ngram.score(ex["random"])
    assert pn[1] > np.percentile(rn, 95)


def test_token_consistency_reads_the_lexical_direction(planted) -> None:
    _, ex = planted
    p, r = TokenConsistency(n=16).score(ex["planted"]), TokenConsistency(n=16).score(ex["random"])
    assert p[2] == 1.0 and np.percentile(r, 95) < 0.6
    assert p[0] < 0.5  # the base64 direction reads a source, not a token


def test_best_direction_per_source_finds_the_planted_directions(planted) -> None:
    samples, ex = planted
    table = best_direction_per_source(ex["planted"], n=16, probe_idx=np.arange(len(samples)))
    rows = table.set_index("source")
    assert rows.loc["base64", "direction"] == 0 and rows.loc["base64", "purity"] == 1.0
    assert rows.loc["english", "direction"] == 1 and rows.loc["english", "purity"] == 1.0
    assert rows.loc["base64", "lift"] == pytest.approx(1.0 / rows.loc["base64", "base_rate"])
    assert "«" in rows.loc["english", "example"]
    assert to_markdown(table).count("\n") == len(table) + 1
    rand_top = ex["random"].top_idx[:, :16]
    rand_purity = label_purity(samples.labels(rand_top.reshape(-1)).reshape(rand_top.shape), 2).max(axis=1)
    assert np.median(rand_purity) < 0.85  # a typical random direction mixes the sources


def test_label_purity_counts() -> None:
    got = label_purity(np.array([[0, 0, 1, 2], [2, 2, 2, 2]]), 3)
    np.testing.assert_allclose(got, [[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
