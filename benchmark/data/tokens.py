"""Token samples: one stimulus per (document, token position), for language-model activations.

:class:`TokenSamples` tokenises every document of a :class:`DocumentSet` once, keeps a seeded
sample of at most ``tokens_per_doc`` positions per document (special and padding tokens never
appear: documents are tokenised without them, adapters add them per forward window), and
serves, per sample:

* ``labels``: the document's source label;
* ``texts`` / ``captions``: the context window (``before`` tokens before, ``after`` after) with
  the active token marked ``«like this»``;
* ``tokens``: the token's own string;
* ``groups``: the document index, so fit/probe splits never cut a document.

:meth:`TokenSamples.windows` plans the forward passes: a document longer than ``window``
tokens is read through one window of ``window`` tokens at a seeded random offset, and its
samples are drawn from that window's positions that have at least ``overlap`` tokens of left
context inside it (all positions when the window starts the document). So each document runs
once, through one window, and the cap on tokens per document also caps its compute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from benchmark.data.base import StimulusSet, Subset
from benchmark.errors import UserError

MARK_OPEN, MARK_CLOSE = "«", "»"


@dataclass
class Encoded:
    """One document's tokens: ``ids [t]`` and their character ``spans [t, 2]`` in the text."""

    ids: np.ndarray
    spans: np.ndarray


class TextTokenizer(Protocol):
    """What :class:`TokenSamples` needs from a tokenizer."""

    def identity(self) -> dict: ...

    def encode(self, text: str) -> Encoded: ...

    def token_strings(self, ids: np.ndarray) -> list[str]: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens (vocabulary 256); a byte's span is the character it belongs to."""

    def identity(self) -> dict:
        return {"name": "bytes", "vocab": 256}

    def encode(self, text: str) -> Encoded:
        data = text.encode("utf-8", "surrogatepass")
        ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        lengths = np.fromiter((len(c.encode("utf-8", "surrogatepass")) for c in text), dtype=np.int64, count=len(text))
        char_of_byte = np.repeat(np.arange(len(text), dtype=np.int64), lengths)
        return Encoded(ids, np.stack([char_of_byte, char_of_byte + 1], axis=1))

    def token_strings(self, ids: np.ndarray) -> list[str]:
        return [chr(b) if 32 <= b < 127 else f"<0x{b:02X}>" for b in np.asarray(ids).tolist()]


class HFTokenizer:
    """A Hugging Face fast tokenizer (needs offset mappings); special tokens are not added here."""

    def __init__(self, tokenizer, name: str) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise UserError(f"tokenizer of {name!r} is not a fast tokenizer; token spans need a fast one")
        self.tok, self.name = tokenizer, name
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        self.vocab_hash = hashlib.sha256("\n".join(k for k, _ in vocab).encode()).hexdigest()[:16]

    def identity(self) -> dict:
        return {"name": self.name, "class": type(self.tok).__name__, "vocab": self.vocab_hash}

    def encode(self, text: str) -> Encoded:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        spans = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        return Encoded(ids, spans)

    def token_strings(self, ids: np.ndarray) -> list[str]:
        return list(self.tok.convert_ids_to_tokens(np.asarray(ids).tolist()))


@dataclass
class Window:
    """One forward pass: tokens ``[start, start + len(ids))`` of document ``doc``; the sampled
    positions in it are ``positions - start`` (local), and ``rows`` are their sample indices."""

    doc: int
    start: int
    ids: np.ndarray
    local: np.ndarray
    rows: np.ndarray


class TokenSamples(StimulusSet):
    """Token-level samples of a document set (see the module docstring).

    Args:
        documents: a document-level stimulus set (provides labels and texts).
        tokenizer: see :class:`TextTokenizer`.
        window: tokens per forward pass (the model's context, special tokens excluded).
        tokens_per_doc: cap on samples per document (a seeded sample of positions).
        before, after: context tokens shown around the active token.
        overlap: least left context of a sample when a document is longer than ``window``
            (default ``min(window // 4, 64)``).
        seed: fixes the sampled positions.
    """

    modality = "language"
    provides = frozenset({"labels", "texts", "captions", "tokens"})

    def __init__(
        self,
        documents: StimulusSet,
        tokenizer: TextTokenizer,
        window: int,
        tokens_per_doc: int = 32,
        before: int = 24,
        after: int = 4,
        overlap: int | None = None,
        seed: int = 0,
    ) -> None:
        if documents.modality != "language" or not {"labels", "texts"} <= set(documents.provides):
            raise UserError(
                f"{documents.describe()}: a language model needs a text corpus that provides labels and texts "
                "(e.g. textmix or text_files)"
            )
        if before < 0 or after < 0:
            raise UserError(f"context window: before and after must be >= 0, got {before} and {after}")
        if before + after + 1 > window:
            raise UserError(
                f"context window of {before} + 1 + {after} tokens is longer than the model's context of {window} tokens; "
                f"use context_before + context_after < {window}"
            )
        if tokens_per_doc < 1:
            raise UserError(f"tokens_per_doc must be >= 1, got {tokens_per_doc}")
        self.documents, self.tokenizer, self.window = documents, tokenizer, window
        self.tokens_per_doc, self.before, self.after, self.seed = tokens_per_doc, before, after, seed
        self.overlap = min(window // 4, 64) if overlap is None else overlap
        if not 0 <= self.overlap < window:
            raise UserError(f"overlap must be in [0, window), got {self.overlap} for a window of {window}")
        self.label_names = documents.label_names
        n_docs = len(documents)
        self._doc_labels = np.asarray(documents.labels(np.arange(n_docs)), dtype=np.int64)
        doc_groups = documents.groups()
        self._doc_groups = np.arange(n_docs) if doc_groups is None else np.asarray(doc_groups)
        self._texts = documents.texts(np.arange(n_docs))
        self._enc: list[Encoded] = []
        sample_doc, sample_pos, sample_start = [], [], []
        rng = np.random.default_rng(seed)
        self.empty_documents = 0
        for d, text in enumerate(self._texts):
            enc = tokenizer.encode(text)
            self._enc.append(enc)
            t = len(enc.ids)
            if t == 0:
                self.empty_documents += 1
                continue
            start = 0 if t <= window else int(rng.integers(0, t - window + 1))
            first = start + self.overlap if start > 0 else 0
            candidates = np.arange(first, min(start + window, t))
            if len(candidates) > tokens_per_doc:
                candidates = np.sort(rng.choice(candidates, tokens_per_doc, replace=False))
            sample_doc.append(np.full(len(candidates), d, dtype=np.int64))
            sample_pos.append(candidates.astype(np.int64))
            sample_start.append(np.full(len(candidates), start, dtype=np.int64))
        if not sample_doc:
            raise UserError(f"{documents.describe()}: no tokens in any document (empty corpus)")
        self.sample_doc = np.concatenate(sample_doc)
        self.sample_pos = np.concatenate(sample_pos)
        self.sample_start = np.concatenate(sample_start)

    def __len__(self) -> int:
        return len(self.sample_doc)

    def identity(self) -> dict:
        return {
            "name": "tokens",
            "documents": self.documents.identity(),
            "tokenizer": self.tokenizer.identity(),
            "window": self.window,
            "tokens_per_doc": self.tokens_per_doc,
            "before": self.before,
            "after": self.after,
            "overlap": self.overlap,
            "seed": self.seed,
            "version": 2,
        }

    def describe(self) -> str:
        return f"token samples ({len(self)} tokens of {len(self.documents)} documents)"

    # -- stimuli -------------------------------------------------------------------------
    def labels(self, idx: np.ndarray) -> np.ndarray:
        return self._doc_labels[self.sample_doc[np.asarray(idx, dtype=np.int64)]]

    def groups(self) -> np.ndarray:
        return self._doc_groups[self.sample_doc]

    def texts(self, idx: np.ndarray) -> list[str]:
        out = []
        for i in np.asarray(idx, dtype=np.int64).reshape(-1).tolist():
            d, p = int(self.sample_doc[i]), int(self.sample_pos[i])
            spans, text = self._enc[d].spans, self._texts[d]
            lo, hi = max(0, p - self.before), min(len(spans) - 1, p + self.after)
            a, s0, s1, b = int(spans[lo, 0]), int(spans[p, 0]), int(spans[p, 1]), int(spans[hi, 1])
            out.append(f"{text[a:s0]}{MARK_OPEN}{text[s0:s1]}{MARK_CLOSE}{text[s1:b]}")
        return out

    def captions(self, idx: np.ndarray) -> list[str]:
        return self.texts(idx)

    def tokens(self, idx: np.ndarray) -> list[str]:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        ids = np.asarray([self._enc[d].ids[p] for d, p in zip(self.sample_doc[idx], self.sample_pos[idx])])
        return self.tokenizer.token_strings(ids)

    def token_ids(self, idx: np.ndarray) -> np.ndarray:
        """Token ids ``[m]`` of the samples."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return np.asarray([self._enc[d].ids[p] for d, p in zip(self.sample_doc[idx], self.sample_pos[idx])])

    def document_ids(self, doc: int) -> np.ndarray:
        """All token ids ``[t]`` of document ``doc``."""
        return self._enc[doc].ids

    # -- forward planning ----------------------------------------------------------------
    def windows(self, idx: np.ndarray) -> Iterator[Window]:
        """The forward windows for samples ``idx`` (sorted), in the order of ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and np.any(np.diff(idx) < 0):
            raise ValueError("windows() needs sorted sample indices")
        docs, pos, starts = self.sample_doc[idx], self.sample_pos[idx], self.sample_start[idx]
        keys = np.stack([docs, starts], axis=1)
        if not len(keys):
            return
        change = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        for a, b in zip(np.r_[0, change], np.r_[change, len(idx)]):
            d, s = int(docs[a]), int(starts[a])
            ids = self._enc[d].ids[s : s + self.window]
            yield Window(d, s, ids, pos[a:b] - s, np.arange(a, b))


def resolve_token_samples(samples: StimulusSet, idx: np.ndarray) -> tuple[TokenSamples, np.ndarray]:
    """Unwrap :class:`Subset` views: the underlying :class:`TokenSamples` and indices into it."""
    idx = np.asarray(idx, dtype=np.int64)
    while isinstance(samples, Subset):
        idx = samples.indices[idx]
        samples = samples.parent
    if not isinstance(samples, TokenSamples):
        raise UserError(
            f"{samples.describe()}: a language model reads token samples; build them with the model's samples(stimuli)"
        )
    order = np.argsort(idx, kind="stable")
    if np.any(order != np.arange(len(idx))):
        raise UserError("token activations need sorted sample indices")
    return samples, idx
