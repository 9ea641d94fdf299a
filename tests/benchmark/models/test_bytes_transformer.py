"""bytes_1l: training is cached and reported against n-gram baselines; activations equal a
direct forward pass; loss recovered is 1 for a perfect splice and 0 for zeros; it runs in the grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cache import Cache, using_cache
from benchmark.config import parse_config
from benchmark.data.text_files import InMemoryDocuments
from benchmark.errors import UserError
from benchmark.models.bytes_transformer import Bytes1L, Bytes1LUntrained, eval_windows, ngram_bits
from benchmark.runner import Runner
from methods.base import LinearBasis

DOCS = InMemoryDocuments(
    [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgdGV4dA==\n" * 12,  # 552 bytes: several windows
        "def add(a, b):\n    return a + b\n" * 2,
        "<html><body><p>hello</p></body></html>",
    ],
    ["english", "base64", "python", "html"],
)


def direct(model: Bytes1L, ids: np.ndarray, layer: str) -> torch.Tensor:
    """The layer's activations ``[t, d]`` for one window, by a hook of our own."""
    module = model.layer_modules()[layer][0]
    got = []
    handle = module.register_forward_hook(lambda _m, _i, out: got.append(out))
    with torch.no_grad():
        model.net(torch.as_tensor(ids[None], dtype=torch.long))
    handle.remove()
    return got[0][0]


@pytest.mark.parametrize("layer,width", [("mlp", 512), ("resid_post", 128)])
def test_activations_equal_a_direct_forward_pass(layer: str, width: int) -> None:
    model = Bytes1LUntrained(tokens_per_doc=40)
    samples = model.samples(DOCS)
    idx = np.arange(len(samples))
    acts = torch.cat(list(model.activations(samples, idx, layer, batch_size=7, device="cpu")))
    assert acts.shape == (len(samples), width)
    for w in samples.windows(idx):
        expected = direct(model, w.ids, layer)[torch.from_numpy(w.local)]
        torch.testing.assert_close(acts[torch.from_numpy(w.rows)], expected, atol=1e-5, rtol=1e-5)
    # the long base64 document needed windows that do not start at 0
    assert any(w.start > 0 for w in samples.windows(idx))


def test_loss_recovered_is_one_for_a_perfect_splice_and_zero_for_zeros() -> None:
    model = Bytes1LUntrained(seed=1)
    samples = model.samples(DOCS)
    idx = np.arange(len(samples))
    eye = torch.eye(512)
    perfect = model.fidelity(LinearBasis(directions=eye, decoder=eye), "mlp", samples, idx)
    assert perfect["loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["ce_spliced"] == pytest.approx(perfect["ce_clean"], abs=1e-5)
    zero = model.fidelity(LinearBasis(directions=eye, decoder=torch.zeros(512, 512)), "mlp", samples, idx)
    assert zero["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    half = model.fidelity(LinearBasis(directions=eye[:256], decoder=eye[:256]), "mlp", samples, idx)
    assert math.isfinite(half["loss_recovered"])


def test_ngram_baselines_on_a_planted_stream() -> None:
    stream = np.frombuffer(b"ab" * 5000, dtype=np.uint8)
    bits = ngram_bits(stream, eval_windows(stream, 64, 4000))
    # two equally likely bytes, add-one smoothing over 256 values
    assert bits["unigram_bpb"] == pytest.approx(-math.log2(5001 / (10000 + 256)), abs=1e-9)
    assert bits["bigram_bpb"] < 0.01  # the next byte is determined by the previous one


@pytest.mark.slow
def test_training_is_cached_and_reported(tmp_path: Path) -> None:
    with using_cache(Cache(tmp_path / "cache")) as cache:
        model = Bytes1L(train_steps=10, train_batch=4, corpus_size_mb=0.05)
        again = Bytes1L(train_steps=10, train_batch=4, corpus_size_mb=0.05)
        assert [r.computed for r in cache.records if r.stage == "model"] == [True, False]
        entry = next((tmp_path / "cache" / "model").glob("*/*/train.json"))
        from benchmark.data.textmix import TextMix

        with pytest.raises(UserError, match="probe it on textmix split='eval'"):
            model.samples(TextMix(size_mb=0.05, split="train"))
        with pytest.raises(UserError, match="train_fraction=0.5"):
            model.samples(TextMix(size_mb=0.05, train_fraction=0.5))
        assert len(model.samples(TextMix(size_mb=0.05))) > 0
    report = json.loads(entry.read_text())
    assert report == model.training_report
    for key in ("model_bpb", "unigram_bpb", "bigram_bpb", "train_seconds", "held_out_bytes"):
        assert math.isfinite(report[key])
    assert report["bigram_bpb"] < report["unigram_bpb"]
    assert report["train_corpus"]["split"] == "train" and report["held_out_corpus"]["split"] == "eval"
    assert model.identity() == again.identity()
    assert model.identity()["weights"] != Bytes1LUntrained().identity()["weights"]


def test_bad_input() -> None:
    model = Bytes1LUntrained()
    with pytest.raises(UserError, match="no layer 'mpl'; did you mean 'mlp'"):
        next(model.activations(model.samples(DOCS), np.arange(3), "mpl", batch_size=4, device="cpu"))
    with pytest.raises(UserError, match="longer than the model's context of 128"):
        Bytes1LUntrained(context_before=200).samples(DOCS)
    with pytest.raises(UserError, match="activation"):
        Bytes1LUntrained(activation="tanh")


GRID = """
name = "lang"
seeds = [0]
chance_sets = 8

[[tasks]]
model = "bytes_1l_untrained"
model_params = {{ tokens_per_doc = 24 }}
layers = ["mlp"]
dataset = "text_files"
dataset_params = {{ root = "{root}" }}

[[methods]]
name = "neurons"

[[methods]]
name = "pca"
params = {{ n_components = 8 }}

[[metrics]]
name = "label_consistency"

[[metrics]]
name = "token_consistency"

[[metrics]]
name = "ngram_consistency"
"""


@pytest.mark.slow
def test_runs_in_the_grid_with_loss_recovered(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for label, text in (("english", "the cat sat on the mat and then it slept. "), ("code", "x = f(y) + 1\n")):
        (root / label).mkdir(parents=True)
        for i in range(6):
            (root / label / f"{i}.txt").write_text(text * (4 + i))
    config = parse_config(GRID.format(root=root), "lang.toml")
    res = Runner(config, Cache(tmp_path / "cache"), results_dir=tmp_path / "r", progress=False).run()
    assert set(res.scores["modality"]) == {"language"}
    # the corpus repeats one sentence, so equal contexts give equal activations: a direction whose
    # top set those ties decide is undetermined, the rest are scored
    assert set(res.scores["status"]) <= {"ok", "undetermined"} and (res.scores["status"] == "ok").mean() > 0.5
    assert {m.split("[")[0] for m in res.scores["metric"]} == {
        "label_consistency",
        "token_consistency",
        "ngram_consistency",
    }
    manifest = json.loads((res.run_dir / "datasets.json").read_text())["bytes_1l_untrained/mlp/text_files"]
    assert manifest["sources"] == {
        "code": {"documents": 6, "bytes": 13 * 39},
        "english": {"documents": 6, "bytes": 42 * 39},
    }
    pca = res.fits[res.fits["method"] == "pca"].iloc[0]
    extra = json.loads(pca["extra"])
    # an untrained model barely needs its MLP, so the ratio is not bounded here: just present
    assert math.isfinite(extra["loss_recovered"]) and math.isfinite(extra["ce_spliced"])
