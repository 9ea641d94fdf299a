"""Shared adapter code for language models: token samples, batched windows, hooked layers.

A :class:`LanguageModel` turns a document set into :class:`~benchmark.data.tokens.TokenSamples`
(:meth:`samples`) and reads a layer's activations at the sampled positions
(:meth:`activations`): the windows that hold the requested samples are padded into batches,
run once each, and the layer's ``[b, t, d]`` output is gathered at the sampled positions.

Subclasses provide :attr:`tokenizer`, :attr:`window` (content tokens per forward pass),
:meth:`layer_modules` (layer name -> ``(module, "output" | "input")``) and :meth:`forward`
(``ids [b, t]``, ``mask [b, t]`` -> runs the network; special tokens are the subclass's
business: :attr:`prefix` tokens come before the content).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.data.base import StimulusSet
from benchmark.data.tokens import TextTokenizer, TokenSamples, Window, resolve_token_samples
from benchmark.models.base import ModelAdapter


def _first_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, tuple | list) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise TypeError(f"cannot read a tensor from a layer output of type {type(x).__name__}")


class LanguageModel(ModelAdapter):
    """Base class of token-level language-model adapters."""

    modality: ClassVar[str] = "language"
    tokenizer: TextTokenizer
    window: int
    #: tokens the model prepends to each window (e.g. [CLS]); activations are read after them
    prefix: int = 0
    context_before: int = 24
    context_after: int = 4
    tokens_per_doc: int = 32
    sample_seed: int = 0
    #: tokens per forward batch (windows are packed up to this many tokens)
    tokens_per_batch: int = 8192

    def layer_modules(self) -> dict[str, tuple[nn.Module, str]]:
        """Layer name -> ``(module, "output" | "input")``: where the activation is read."""
        raise NotImplementedError

    def layers(self) -> list[str]:
        return list(self.layer_modules())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """Run the network on content ``ids [b, t]`` (``mask [b, t]``: 1 for real tokens)."""
        raise NotImplementedError

    def samples(self, stimuli: StimulusSet) -> TokenSamples:
        return TokenSamples(
            stimuli,
            self.tokenizer,
            window=self.window,
            tokens_per_doc=self.tokens_per_doc,
            before=self.context_before,
            after=self.context_after,
            seed=self.sample_seed,
        )

    def batches(
        self, samples: StimulusSet, idx: np.ndarray
    ) -> Iterator[tuple[list[Window], torch.Tensor, torch.Tensor]]:
        """Packed forward batches: ``(windows, ids [b, t], mask [b, t])`` (right padding with 0)."""
        tokens, idx = resolve_token_samples(samples, idx)
        group: list[Window] = []
        for w in tokens.windows(idx):
            if group and (len(group) + 1) * max(len(w.ids), max(len(g.ids) for g in group)) > self.tokens_per_batch:
                yield (group, *self._pad(group))
                group = []
            group.append(w)
        if group:
            yield (group, *self._pad(group))

    @staticmethod
    def _pad(group: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
        t = max(len(w.ids) for w in group)
        ids = torch.zeros(len(group), t, dtype=torch.long)
        mask = torch.zeros(len(group), t, dtype=torch.long)
        for i, w in enumerate(group):
            ids[i, : len(w.ids)] = torch.from_numpy(np.asarray(w.ids, dtype=np.int64))
            mask[i, : len(w.ids)] = 1
        return ids, mask

    @staticmethod
    def gather(hidden: torch.Tensor, group: list[Window], prefix: int = 0) -> torch.Tensor:
        """Rows ``[m, d]`` of ``hidden [b, t, d]`` at the windows' sampled positions, in sample order."""
        b = torch.cat([torch.full((len(w.local),), i, dtype=torch.long) for i, w in enumerate(group)])
        t = torch.cat([torch.from_numpy(np.asarray(w.local, dtype=np.int64)) for w in group]) + prefix
        return hidden[b.to(hidden.device), t.to(hidden.device)]

    @torch.inference_mode()
    def activations(
        self, samples: StimulusSet, idx: np.ndarray, layer: str, *, batch_size: int, device: torch.device | str = "cpu"
    ) -> Iterator[torch.Tensor]:
        """Yield ``[b, d]`` float tensors (``b <= batch_size``) for ``idx`` in order."""
        self.check_layer(layer)
        module, where = self.layer_modules()[layer]
        self.to(device)
        captured: list[torch.Tensor] = []
        if where == "input":
            handle = module.register_forward_pre_hook(lambda _m, args: captured.append(_first_tensor(args)))
        else:
            handle = module.register_forward_hook(lambda _m, _i, out: captured.append(_first_tensor(out)))
        try:
            pending: list[torch.Tensor] = []
            n_pending = 0
            for group, ids, mask in self.batches(samples, idx):
                captured.clear()
                self.forward(ids.to(device), mask.to(device))
                rows = self.gather(captured[0], group, self.prefix).float()
                pending.append(rows)
                n_pending += len(rows)
                while n_pending >= batch_size:
                    cat = torch.cat(pending)
                    yield cat[:batch_size]
                    pending, n_pending = [cat[batch_size:]], n_pending - batch_size
            if n_pending:
                yield torch.cat(pending)
        finally:
            handle.remove()

    def to(self, device: torch.device | str) -> LanguageModel:
        """Move the network to ``device`` (subclasses keep it in :attr:`net`)."""
        self.net.to(device)  # type: ignore[attr-defined]
        return self
