"""hf:NAME_OR_PATH on tiny randomly initialised BERT and GPT-2 models saved to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from benchmark.config import parse_config  # noqa: E402
from benchmark.data.text_files import InMemoryDocuments  # noqa: E402
from benchmark.errors import UserError  # noqa: E402
from benchmark.models.hf import HFModel  # noqa: E402
from benchmark.runner import build_model  # noqa: E402

WORDS = "the cat sat on a mat and dog ran to def return import class x y".split()
DOCS = InMemoryDocuments(
    [" ".join(WORDS[i % len(WORDS)] for i in range(k, k + 40)) for k in range(4)] + ["cat dog"],
    ["a", "b", "a", "b", "a"],
)


def tiny_tokenizer(masked: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if masked else ["<pad>", "<unk>", "<s>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if masked:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        kw = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
        kw = dict(pad_token="<pad>", unk_token="<unk>", bos_token="<s>")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, **kw), len(vocab)


@pytest.fixture(params=["bert", "gpt2"])
def saved(request, tmp_path: Path) -> tuple[str, str]:
    masked = request.param == "bert"
    tok, vocab = tiny_tokenizer(masked)
    torch.manual_seed(0)
    if masked:
        cfg = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=40,
            max_position_embeddings=64,
        )
        model = transformers.BertForMaskedLM(cfg)
    else:
        cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=64)
        model = transformers.GPT2LMHeadModel(cfg)
    path = tmp_path / request.param
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path), request.param


def test_layers_samples_and_activations_match_a_direct_pass(saved) -> None:
    path, kind = saved
    model = HFModel(name=path, tokens_per_doc=50, context_before=3, context_after=1)
    mlp = model.mlp_layers()
    assert mlp == (
        ["encoder.layer.0.intermediate", "encoder.layer.1.intermediate"]
        if kind == "bert"
        else ["h.0.mlp.act", "h.1.mlp.act"]
    )
    assert model.residual_layers() == (["encoder.layer.0", "encoder.layer.1"] if kind == "bert" else ["h.0", "h.1"])
    assert model.prefix == 1  # [CLS] or <s>
    assert model.window == 64 - (2 if kind == "bert" else 1)
    samples = model.samples(DOCS)
    tokens = samples.tokens(np.arange(len(samples)))
    assert not {"[CLS]", "[SEP]", "<s>", "[PAD]", "<pad>"} & set(tokens)
    assert samples.texts(np.array([1, 3])) == ["the «cat» sat", "the cat sat «on» a"]
    idx = np.arange(len(samples))
    for layer in (mlp[1], model.residual_layers()[0]):
        acts = torch.cat(list(model.activations(samples, idx, layer, batch_size=16, device="cpu")))
        module, _ = model.layer_modules()[layer]
        for d in range(len(DOCS)):
            ids = torch.tensor([model._prefix_ids + samples.document_ids(d).tolist() + model._suffix_ids])
            got = []
            h = module.register_forward_hook(
                lambda _m, _i, out, got=got: got.append(out[0] if isinstance(out, tuple) else out)
            )
            with torch.no_grad():
                model.net(input_ids=ids)
            h.remove()
            rows = np.flatnonzero(samples.sample_doc == d)
            expected = got[0][0, torch.from_numpy(samples.sample_pos[rows] + model.prefix)]
            torch.testing.assert_close(acts[torch.from_numpy(rows)], expected, atol=1e-5, rtol=1e-4)


def test_input_of_a_linear_layer(saved) -> None:
    path, kind = saved
    model = HFModel(name=path)
    layer = "encoder.layer.0.output.dense:input" if kind == "bert" else "h.0.mlp.c_proj:input"
    samples = model.samples(DOCS)
    acts = torch.cat(list(model.activations(samples, np.arange(len(samples)), layer, batch_size=64, device="cpu")))
    assert acts.shape == (len(samples), 40 if kind == "bert" else 64)


def test_registry_name_and_bad_input(saved, tmp_path: Path) -> None:
    path, kind = saved
    spec = parse_config(
        f'[[tasks]]\nmodel = "hf:{path}"\nlayers = ["x"]\ndataset = "textmix"\n'
        '[[methods]]\nname = "neurons"\n[[metrics]]\nname = "label_consistency"\n'
    ).tasks[0]
    model = build_model(spec)
    assert model.identity()["name"] == f"hf:{path}"
    with pytest.raises(UserError, match="has no layer 'h.0.mpl.act'"):
        model.check_layer("h.0.mpl.act")
    with pytest.raises(UserError, match="window 500 is outside"):
        HFModel(name=path, window=500)
    with pytest.raises(UserError, match="longer than the model's context"):
        HFModel(name=path, window=8).samples(DOCS)
    with pytest.raises(UserError, match="cannot load"):
        HFModel(name=str(tmp_path / "missing"))
