"""``hf:NAME_OR_PATH``: any local Hugging Face causal or masked language model.

Loaded with ``local_files_only=True`` (nothing is downloaded): ``NAME_OR_PATH`` is a folder
saved with ``save_pretrained`` or a model already in the local Hugging Face cache. The base
model (``AutoModel``) is read; its tokenizer must be a fast one (token spans come from offset
mappings). Each forward window holds up to :attr:`window` content tokens plus the tokenizer's
own special tokens (e.g. ``[CLS] ... [SEP]``), which are never samples.

Layers: every named submodule (its output), and ``NAME:input`` for every linear layer (its
input: e.g. ``model.layers.0.mlp.down_proj:input`` is a gated MLP's hidden state).
:meth:`HFModel.mlp_layers` names each block's MLP hidden units and
:meth:`HFModel.residual_layers` each block's output (the residual stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.data.tokens import HFTokenizer
from benchmark.errors import UserError
from benchmark.models.base import weights_hash
from benchmark.models.language import LanguageModel

_LINEAR_TYPES = ("Linear", "Conv1D")


def load_local(name: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a local folder or cached name, never downloading."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)
        torch.manual_seed(0)  # parts missing from a checkpoint (e.g. a pooler) get the same init every time
        model = transformers.AutoModel.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"hf: cannot load {name!r} offline (a folder saved with save_pretrained, or a model in the local "
            f"Hugging Face cache is needed): {str(exc).splitlines()[0]}"
        ) from None
    return model.eval(), tokenizer


@dataclass
class HFModel(LanguageModel):
    """A local Hugging Face language model (causal or masked), read at named layers.

    Args:
        name: a folder saved with ``save_pretrained`` or a name in the local HF cache.
        window: content tokens per forward pass (default: the model's maximum, at most 128).
        context_before, context_after, tokens_per_doc, sample_seed: token samples.
    """

    name: str = ""
    window: int | None = None
    context_before: int = 24
    context_after: int = 4
    tokens_per_doc: int = 32
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise UserError("hf: give the model as hf:NAME_OR_PATH (a local folder or cached model name)")
        self.net, tok = load_local(self.model_path())
        self.tokenizer = HFTokenizer(tok, self.display_name())
        self._special_ids(tok)
        max_len = self._max_positions(tok) - self.prefix - len(self._suffix_ids)
        if max_len < 2:
            raise UserError(f"{self.display_name()}: the model's context ({max_len + 2} tokens) is too short")
        if self.window is None:
            self.window = min(max_len, 128)
        elif not 1 <= self.window <= max_len:
            raise UserError(
                f"{self.display_name()}: window {self.window} is outside 1..{max_len} (the model's context "
                "less its special tokens)"
            )
        self._weights = weights_hash(self.net)

    def model_path(self) -> str:
        return self.name

    def display_name(self) -> str:
        return f"hf:{self.name}"

    def _special_ids(self, tok) -> None:
        content = list(tok("a b", add_special_tokens=False)["input_ids"])
        full = list(tok("a b", add_special_tokens=True)["input_ids"])
        at = next((i for i in range(len(full) - len(content) + 1) if full[i : i + len(content)] == content), 0)
        self._prefix_ids = [int(i) for i in full[:at]]
        self._suffix_ids = [int(i) for i in full[at + len(content) :]]
        self.prefix = len(self._prefix_ids)
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def _max_positions(self, tok) -> int:
        cfg = self.net.config
        limits = [getattr(cfg, a) for a in ("max_position_embeddings", "n_positions") if getattr(cfg, a, None)]
        if tok.model_max_length and tok.model_max_length < 10**6:
            limits.append(tok.model_max_length)
        if not limits:
            return 512
        return int(min(limits))

    # -- layers --------------------------------------------------------------------------
    def layer_modules(self) -> dict[str, tuple[nn.Module, str]]:
        out: dict[str, tuple[nn.Module, str]] = {}
        for n, m in self.net.named_modules():
            if not n or isinstance(m, nn.ModuleList | nn.ModuleDict):
                continue
            out[n] = (m, "output")
            if type(m).__name__ in _LINEAR_TYPES:
                out[f"{n}:input"] = (m, "input")
        return out

    def blocks(self) -> list[str]:
        """Names of the transformer blocks (the longest ModuleList's children)."""
        lists = [(n, m) for n, m in self.net.named_modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            return []
        name, blocks = max(lists, key=lambda nm: len(nm[1]))
        return [f"{name}.{i}" for i in range(len(blocks))]

    def residual_layers(self) -> list[str]:
        """Each block's output: the residual stream after the block."""
        return self.blocks()

    def mlp_layers(self) -> list[str]:
        """Each block's MLP hidden units (after the nonlinearity)."""
        names = set(self.layer_modules())
        out = []
        for b in self.blocks():
            for candidate in (
                f"{b}.intermediate",  # BERT family: dense + activation
                f"{b}.mlp.act",  # GPT-2
                f"{b}.mlp.down_proj:input",  # LLaMA / Mistral / Qwen (gated)
                f"{b}.mlp.fc2:input",  # OPT-style / Phi
                f"{b}.fc2:input",
                f"{b}.mlp.c_proj:input",
                f"{b}.mlp.dense_4h_to_h:input",  # GPT-NeoX
            ):
                if candidate in names:
                    out.append(candidate)
                    break
        return out

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.display_name(),
            "model_type": getattr(self.net.config, "model_type", "?"),
            "tokenizer": self.tokenizer.identity(),
            "window": self.window,
            "weights": self._weights,
        }

    # -- forward -------------------------------------------------------------------------
    def forward(self, ids: Tensor, mask: Tensor) -> Any:
        """Content ``ids [b, t]`` (right-padded) -> the model run with its special tokens around each row."""
        lengths = mask.sum(dim=1).tolist()
        b = ids.shape[0]
        total = self.prefix + ids.shape[1] + len(self._suffix_ids)
        full = torch.full((b, total), self._pad_id, dtype=torch.long, device=ids.device)
        attn = torch.zeros((b, total), dtype=torch.long, device=ids.device)
        pre = torch.tensor(self._prefix_ids, dtype=torch.long, device=ids.device)
        suf = torch.tensor(self._suffix_ids, dtype=torch.long, device=ids.device)
        for i, n in enumerate(lengths):
            row = torch.cat([pre, ids[i, :n], suf])
            full[i, : len(row)] = row
            attn[i, : len(row)] = 1
        return self.net(input_ids=full, attention_mask=attn)

    @torch.inference_mode()
    def embed_sentences(self, texts: list[str], device: torch.device | str = "cpu") -> Tensor:
        """Mean-pooled, L2-normalised last hidden states ``[n, d]`` (sentence-transformers style)."""
        tok = self.tokenizer.tok
        enc = tok(texts, padding=True, truncation=True, max_length=self.window, return_tensors="pt")
        self.net.to(device)
        out = self.net(**{k: v.to(device) for k, v in enc.items()})
        hidden = out.last_hidden_state
        mask = enc["attention_mask"].to(device)[..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)
