"""``bytes_1l``: a one-layer transformer over bytes, trained in the project on textmix.

The small-scale analogue of the model in Towards Monosemanticity (Bricken et al. 2023): vocab
256 (UTF-8 bytes), ``d_model`` 128, one pre-LayerNorm block (causal self-attention, then an MLP
of 512 ReLU or GELU units), context 128. It trains on the ``train`` split of
:class:`~benchmark.data.textmix.TextMix` (files disjoint from every ``eval`` split), seeded, and
is cached by its config in the stage cache (``model`` stage, safetensors + JSON). The cache
entry's ``train.json`` records bits per byte on held-out text (the eval split) against a
unigram and a bigram baseline fitted on the training bytes.

Layers: ``mlp`` (the MLP's hidden units after the nonlinearity, ``[.., 512]``: the layer to
study), ``resid_pre``, ``attn_out``, ``resid_mid``, ``mlp_out``, ``resid_post`` (``[.., 128]``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from benchmark.data.base import StimulusSet
from benchmark.data.tokens import ByteTokenizer, resolve_token_samples
from benchmark.errors import UserError
from benchmark.models.base import weights_hash
from benchmark.models.language import LanguageModel

VERSION = 1
TRAIN_FRACTION = 0.7  # textmix's train/eval file split the model is trained and probed with
LAYERS = {
    "mlp": "mlp.act",
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "resid_mid": "hook_resid_mid",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, activation: str) -> None:
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.fc_out = nn.Linear(d_mlp, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(self.act(self.fc_in(x)))


class ByteTransformer(nn.Module):
    """One-layer causal transformer: ``ids [b, t] -> logits [b, t, 256]``."""

    def __init__(
        self, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, context: int = 128, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.n_heads, self.context = n_heads, context
        self.embed = nn.Embedding(256, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_proj = nn.Linear(d_model, d_model)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_mlp, activation)
        self.ln_final = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, 256, bias=False)
        for name in LAYERS.values():
            if name.startswith("hook_"):
                self.add_module(name, nn.Identity())
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids: Tensor) -> Tensor:
        b, t = ids.shape
        if t > self.context:
            raise UserError(f"bytes_1l: {t} tokens exceed the context of {self.context}")
        x = self.hook_resid_pre(self.embed(ids) + self.pos(torch.arange(t, device=ids.device)))
        q, k, v = self.qkv(self.ln_attn(x)).view(b, t, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn_proj(attn)))
        x = self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_mlp(x))))
        return self.unembed(self.ln_final(x))


# -- data and baselines --------------------------------------------------------------------
def byte_stream(texts: list[str]) -> np.ndarray:
    """Documents joined by blank lines, as ``uint8 [n]``."""
    return np.frombuffer("\n\n".join(texts).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def eval_windows(stream: np.ndarray, context: int, max_bytes: int) -> Tensor:
    """Non-overlapping ``[m, context + 1]`` windows (inputs + next-byte targets) from ``stream``."""
    m = min(len(stream) - 1, max_bytes) // context
    if m < 1:
        raise UserError(f"held-out text of {len(stream)} bytes is shorter than one context of {context}")
    starts = np.arange(m) * context
    return torch.from_numpy(np.stack([stream[s : s + context + 1] for s in starts]).astype(np.int64))


def ngram_bits(train: np.ndarray, windows: Tensor) -> dict[str, float]:
    """Bits per byte of a unigram and a bigram model (fitted on ``train``) on the windows' targets.

    Unigram: add-one smoothing. Bigram: interpolated with the unigram as a Dirichlet prior,
    ``p(b | a) = (c(a, b) + p_uni(b)) / (c(a) + 1)``.
    """
    uni = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    p_uni = uni / uni.sum()
    pairs = np.bincount(train[:-1].astype(np.int64) * 256 + train[1:], minlength=256 * 256).reshape(256, 256)
    p_bi = (pairs + p_uni[None, :]) / (pairs.sum(1, keepdims=True) + 1.0)
    w = windows.numpy()
    prev, target = w[:, :-1].reshape(-1), w[:, 1:].reshape(-1)
    return {
        "unigram_bpb": float(-np.log2(p_uni[target]).mean()),
        "bigram_bpb": float(-np.log2(p_bi[prev, target]).mean()),
    }


@torch.no_grad()
def model_bits(net: ByteTransformer, windows: Tensor, device: torch.device | str = "cpu", batch: int = 64) -> float:
    """Bits per byte of ``net`` on the targets of ``windows [m, context + 1]``."""
    total, count = 0.0, 0
    for s in range(0, len(windows), batch):
        w = windows[s : s + batch].to(device)
        logits = net(w[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
        count += w[:, 1:].numel()
    return total / count / math.log(2)


@dataclass
class TrainSettings:
    """How bytes_1l is trained (part of its cache key)."""

    steps: int = 600
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    corpus_size_mb: float = 3.0
    eval_bytes: int = 200_000


def train(net: ByteTransformer, settings: TrainSettings, seed: int, log=None) -> dict[str, Any]:
    """Train ``net`` in place on textmix's train split; returns the training report."""
    from benchmark.data.textmix import TextMix

    start = time.perf_counter()
    train_docs = TextMix(size_mb=settings.corpus_size_mb, split="train", train_fraction=TRAIN_FRACTION)
    eval_docs = TextMix(size_mb=settings.corpus_size_mb, split="eval", train_fraction=TRAIN_FRACTION)
    stream = byte_stream(train_docs.texts(np.arange(len(train_docs))))
    held_out = eval_windows(byte_stream(eval_docs.texts(np.arange(len(eval_docs)))), net.context, settings.eval_bytes)
    data = torch.from_numpy(stream.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)

    def lr_at(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        frac = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    net.train()
    losses = []
    offsets = torch.arange(net.context + 1)
    for step in range(settings.steps):
        starts = torch.randint(0, len(data) - net.context - 1, (settings.batch,), generator=gen)
        w = data[starts[:, None] + offsets]
        loss = F.cross_entropy(net(w[:, :-1]).flatten(0, 1), w[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log is not None and (step + 1) % 100 == 0:
            log(f"  bytes_1l step {step + 1}/{settings.steps}: loss {np.mean(losses[-50:]):.3f} nats")
    net.eval()
    report = {
        "model_bpb": model_bits(net, held_out),
        **ngram_bits(stream, held_out),
        "train_loss_last50_nats": float(np.mean(losses[-50:])) if losses else math.nan,
        "train_seconds": time.perf_counter() - start,
        "train_bytes": int(len(stream)),
        "held_out_bytes": int(held_out[:, 1:].numel()),
        "train_corpus": train_docs.identity(),
        "held_out_corpus": eval_docs.identity(),
        "threads": torch.get_num_threads(),
    }
    return report


# -- the adapters --------------------------------------------------------------------------
@dataclass
class Bytes1L(LanguageModel):
    """One-layer byte transformer with a 512-unit MLP, trained on textmix (cached).

    Args:
        d_model, n_heads, d_mlp, context, activation ("relu" or "gelu"): the architecture.
        train_steps, train_batch, lr, corpus_size_mb: training (a smaller ``train_steps`` for quick runs).
        seed: initialisation and batch order.
        context_before, context_after, tokens_per_doc, sample_seed: token samples.
        fidelity_tokens: held-out tokens used for loss recovered.
    """

    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    context: int = 128
    activation: str = "relu"
    train_steps: int = 600
    train_batch: int = 32
    lr: float = 3e-3
    corpus_size_mb: float = 3.0
    seed: int = 0
    context_before: int = 24
    context_after: int = 4
    tokens_per_doc: int = 32
    sample_seed: int = 0
    fidelity_tokens: int = 4096
    trained: bool = field(default=True, init=False)
    name: str = field(default="bytes_1l", init=False)

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "gelu"):
            raise UserError(f"{self.name}: activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.d_model % self.n_heads:
            raise UserError(f"{self.name}: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.context < 2:
            raise UserError(f"{self.name}: context must be >= 2, got {self.context}")
        self.tokenizer = ByteTokenizer()
        self.window = self.context
        torch.manual_seed(self.seed)
        self.net = ByteTransformer(self.d_model, self.n_heads, self.d_mlp, self.context, self.activation)
        self.training_report: dict[str, Any] = {}
        if self.trained:
            self._load_or_train()
        self.net.eval()
        self._weights = weights_hash(self.net)

    def samples(self, stimuli: StimulusSet):
        """Token samples; refuses textmix documents that may overlap the model's training files."""
        from benchmark.data.base import Subset
        from benchmark.data.textmix import TextMix

        docs = stimuli
        while isinstance(docs, Subset):
            docs = docs.parent
        overlaps = isinstance(docs, TextMix) and (docs.split != "eval" or docs.train_fraction != TRAIN_FRACTION)
        if self.trained and overlaps:
            raise UserError(
                f"{self.name}: probe it on textmix split='eval' with train_fraction={TRAIN_FRACTION} (got "
                f"split={docs.split!r}, train_fraction={docs.train_fraction}): other documents may be ones it was "
                "trained on"
            )
        return super().samples(stimuli)

    def arch(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("d_model", "n_heads", "d_mlp", "context", "activation")}

    def settings(self) -> TrainSettings:
        return TrainSettings(
            steps=self.train_steps, batch=self.train_batch, lr=self.lr, corpus_size_mb=self.corpus_size_mb
        )

    def _load_or_train(self) -> None:
        from benchmark.cache import current_cache
        from benchmark.codedigest import code_digest
        from benchmark.data.textmix import VERSION as CORPUS_VERSION

        settings = self.settings()
        parts = {
            "corpus_version": CORPUS_VERSION,  # a change to how textmix is built retrains the model
            "name": "bytes_1l",
            "version": VERSION,
            "arch": self.arch(),
            "train": asdict(settings),
            "seed": self.seed,
            "code": code_digest(__name__),  # the network, its training and the corpus
        }

        def compute(tmp: Path) -> None:
            import sys

            torch.manual_seed(self.seed)
            report = train(self.net, settings, self.seed, log=lambda s: print(s, file=sys.stderr))
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp / "weights.safetensors"))
            (tmp / "train.json").write_text(json.dumps(report, indent=1, sort_keys=True))

        path = current_cache().get_or_compute("model", parts, compute)
        self.net.load_state_dict(load_file(str(path / "weights.safetensors")))
        self.training_report = json.loads((path / "train.json").read_text())

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch(),
            "tokenizer": self.tokenizer.identity(),
            "train": asdict(self.settings()) if self.trained else None,
            "seed": self.seed,
            "weights": self._weights,
            "version": VERSION,
        }

    def layer_modules(self) -> dict[str, tuple[nn.Module, str]]:
        modules = dict(self.net.named_modules())
        return {layer: (modules[target], "output") for layer, target in LAYERS.items()}

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.net(ids)

    # -- downstream fidelity -------------------------------------------------------------
    def held_out_windows(self, samples: StimulusSet, idx: np.ndarray) -> Tensor:
        """``[m, context + 1]`` windows of the documents of samples ``idx`` (held-out text)."""
        tokens, idx = resolve_token_samples(samples, idx)
        docs = np.unique(tokens.sample_doc[idx])
        texts = tokens.documents.texts(docs)
        return eval_windows(byte_stream(texts), self.context, self.fidelity_tokens)

    @torch.no_grad()
    def cross_entropy(self, windows: Tensor, layer: str | None = None, replace=None, device="cpu") -> float:
        """Mean next-byte cross-entropy (nats) with ``layer``'s output replaced by ``replace(x)``."""
        handle = None
        if layer is not None:
            self.check_layer(layer)
            module = self.layer_modules()[layer][0]
            handle = module.register_forward_hook(lambda _m, _i, out: replace(out))
        try:
            self.net.to(device)
            total, count = 0.0, 0
            for s in range(0, len(windows), 64):
                w = windows[s : s + 64].to(device)
                logits = self.net(w[:, :-1])
                total += float(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum"))
                count += w[:, 1:].numel()
        finally:
            if handle is not None:
                handle.remove()
        return total / count

    def fidelity(self, basis, layer: str, samples: StimulusSet, idx: np.ndarray, *, device="cpu") -> dict[str, float]:
        """Loss recovered (SAEBench): ``(CE_zero - CE_spliced) / (CE_zero - CE_clean)`` on held-out text.

        The spliced pass replaces ``layer``'s activations by ``basis.decode(basis.encode(x))``;
        the zero-ablated pass replaces them by zeros.
        """
        windows = self.held_out_windows(samples, idx)
        basis = basis.to(device)

        def splice(x: Tensor) -> Tensor:
            flat = x.reshape(-1, x.shape[-1]).float()
            return basis.decode(basis.encode(flat)).reshape(x.shape).to(x.dtype)

        clean = self.cross_entropy(windows, device=device)
        zero = self.cross_entropy(windows, layer, torch.zeros_like, device=device)
        spliced = self.cross_entropy(windows, layer, splice, device=device)
        denom = zero - clean
        recovered = (zero - spliced) / denom if abs(denom) > 1e-9 else math.nan
        return {"loss_recovered": recovered, "ce_clean": clean, "ce_zero_ablated": zero, "ce_spliced": spliced}


@dataclass
class Bytes1LUntrained(Bytes1L):
    """bytes_1l at random initialisation (a control): same architecture, seeded, no training."""

    trained: bool = field(default=False, init=False)
    name: str = field(default="bytes_1l_untrained", init=False)
