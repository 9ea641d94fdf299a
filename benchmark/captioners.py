"""Captioners: one short text per stimulus, for caption compressibility.

A captioner is a frozen dataclass of its settings (registered in ``CAPTIONERS``) with

* ``skip_reason(stimuli) -> str | None``: why it cannot caption this set (None when it can);
* ``captions(stimuli, idx [m]) -> list[str]``: one caption per index, in order;
* ``identity() -> dict``: what fixes its output (for cache keys).

Built in: ``dataset`` (the captions the stimulus set carries, else its class names) and
``open_clip_zero_shot`` (the best prompt from a vocabulary under a local open_clip model).
A user's own captioner registers under ``interpbench.captioners``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.base import StimulusSet
from benchmark.errors import UserError


@dataclass(frozen=True)
class Captioner:
    """Base class of captioners."""

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        return None

    def captions(self, stimuli: StimulusSet, idx: np.ndarray) -> list[str]:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        return {"captioner": type(self).__name__, **dataclasses.asdict(self)}


_SOURCES = ("auto", "captions", "labels")


@dataclass(frozen=True)
class DatasetCaptioner(Captioner):
    """The captions the stimulus set carries (shapes: factor templates, clipart: file-name words),
    or, for sets with labels only, the class name of each stimulus.

    Settings:
        source: ``"auto"`` (captions when provided, else class names), ``"captions"`` or ``"labels"``.
    """

    source: str = "auto"

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise UserError(f"dataset captioner: unknown source {self.source!r} (valid: {', '.join(_SOURCES)})")

    def _resolved(self, stimuli: StimulusSet) -> str | None:
        provides = set(stimuli.provides)
        if self.source in ("auto", "captions") and "captions" in provides:
            return "captions"
        if self.source in ("auto", "labels") and "labels" in provides and stimuli.label_names:
            return "labels"
        return None

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        if self._resolved(stimuli) is None:
            wanted = "captions or labels with class names" if self.source == "auto" else self.source
            return f"{type(stimuli).__name__} provides no {wanted} to caption with"
        return None

    def captions(self, stimuli: StimulusSet, idx: np.ndarray) -> list[str]:
        idx = np.asarray(idx, dtype=np.int64)
        how = self._resolved(stimuli)
        if how == "captions":
            return ["" if c is None else str(c) for c in stimuli.captions(idx)]
        if how == "labels":
            names = stimuli.label_names
            return [str(names[int(i)]) if 0 <= int(i) < len(names) else "" for i in stimuli.labels(idx)]
        raise UserError(self.skip_reason(stimuli) or "cannot caption")


@dataclass(frozen=True)
class OpenClipZeroShot(Captioner):
    """Zero-shot captions: for each image, the prompt ``template.format(word)`` whose open_clip
    text embedding is most similar to the image embedding, over a vocabulary.

    Settings:
        model: an open_clip model name (``"ViT-B-32"``, ...).
        pretrained: path of a local open_clip checkpoint for ``model``; nothing is downloaded.
        vocabulary: the candidate words; empty = the stimulus set's class names.
        template: the prompt, with ``{}`` for the word.
        random_init: use random weights (for testing the mechanics only).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    """

    model: str = "ViT-B-32"
    pretrained: str | None = None
    vocabulary: tuple[str, ...] = ()
    template: str = "a photo of a {}."
    random_init: bool = False
    device: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
        if "{}" not in self.template:
            raise UserError(f"open_clip_zero_shot: template {self.template!r} needs a '{{}}' for the word")

    def words(self, stimuli: StimulusSet) -> tuple[str, ...]:
        return self.vocabulary or tuple(str(n) for n in (stimuli.label_names or []))

    def skip_reason(self, stimuli: StimulusSet) -> str | None:
        if stimuli.modality != "vision" or "images" not in stimuli.provides:
            return "open_clip_zero_shot captions images; these stimuli have none"
        try:
            import open_clip  # noqa: F401
        except ImportError:
            return "the open_clip_torch package is not installed (pip install open_clip_torch)"
        if not self.words(stimuli):
            return "open_clip_zero_shot needs a vocabulary (the stimulus set has no class names)"
        if not self.random_init:
            if not self.pretrained:
                return f"no open_clip weights: set the captioner's pretrained = PATH to a local {self.model} checkpoint"
            if not Path(self.pretrained).expanduser().is_file():
                return f"open_clip weights not found at {self.pretrained}"
        return None

    def identity(self) -> dict[str, Any]:
        out = super().identity()
        if self.pretrained and Path(self.pretrained).expanduser().is_file():
            out["pretrained_mtime"] = Path(self.pretrained).expanduser().stat().st_mtime
        out.pop("device", None)
        out.pop("batch_size", None)
        return out

    def captions(self, stimuli: StimulusSet, idx: np.ndarray) -> list[str]:
        import torch

        from benchmark.env import resolve_device

        reason = self.skip_reason(stimuli)
        if reason is not None:
            raise UserError(reason)
        words = self.words(stimuli)
        prompts = [self.template.format(w) for w in words]
        device = resolve_device(self.device)
        model, tokenizer, mean, std, size = _open_clip(self.model, self.pretrained, self.random_init)
        model.to(device)
        with torch.inference_mode():
            text = model.encode_text(tokenizer(prompts).to(device))
            text = text / text.norm(dim=-1, keepdim=True)
            best: list[int] = []
            idx = np.asarray(idx, dtype=np.int64)
            for s in range(0, len(idx), self.batch_size):
                images = torch.as_tensor(stimuli.images(idx[s : s + self.batch_size])).float()
                if images.shape[1] == 1:
                    images = images.expand(-1, 3, -1, -1)
                images = torch.nn.functional.interpolate(
                    images, size=size, mode="bicubic", antialias=True, align_corners=False
                ).clamp(0, 1)
                images = (images - mean[None, :, None, None]) / std[None, :, None, None]
                emb = model.encode_image(images.to(device))
                emb = emb / emb.norm(dim=-1, keepdim=True)
                best += (emb @ text.T).argmax(dim=1).cpu().tolist()
        return [prompts[b] for b in best]


@functools.lru_cache(maxsize=2)
def _open_clip(model_name: str, pretrained: str | None, random_init: bool):
    """``(model, tokenizer, mean [3], std [3], (H, W))`` for a local open_clip model."""
    import open_clip
    import torch

    try:
        model = open_clip.create_model(
            model_name, pretrained=None if random_init else str(Path(pretrained).expanduser()), weights_only=True
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"open_clip_zero_shot: cannot load {model_name!r} from {pretrained}: {exc}") from None
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), dtype=torch.float32)
    return model, tokenizer, mean, std, size


def build_captioner(name: str, params: dict[str, Any] | None = None) -> Captioner:
    """The registered captioner ``name`` with ``params`` (errors name the bad key)."""
    from benchmark.config import instantiate
    from benchmark.registry import CAPTIONERS

    cls = CAPTIONERS.get(name)
    return instantiate(cls, dict(params or {}), f"captioner {name!r}") if params else cls()
