"""Captioners: dataset captions and class names; open_clip zero-shot mechanics at random init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.captioners import DatasetCaptioner, OpenClipZeroShot, build_captioner
from benchmark.data.base import StimulusSet
from benchmark.data.shapes import Shapes
from benchmark.errors import UserError
from benchmark.registry import CAPTIONERS


class LabelsOnly(StimulusSet):
    provides = frozenset({"images", "labels"})
    label_names = ["cat", "dog"]

    def __len__(self) -> int:
        return 6

    def identity(self) -> dict:
        return {"name": "labels_only"}

    def labels(self, idx):
        return np.asarray(idx) % 2

    def images(self, idx):
        g = torch.Generator().manual_seed(0)
        return torch.rand(len(idx), 3, 32, 32, generator=g)


def test_registry_and_dataset_captions():
    assert CAPTIONERS.get("dataset") is DatasetCaptioner
    assert isinstance(build_captioner("open_clip_zero_shot", {"random_init": True}), OpenClipZeroShot)
    shapes = Shapes(n=10, size=16)
    caps = DatasetCaptioner().captions(shapes, np.array([3, 1]))
    assert caps == shapes.captions(np.array([3, 1]))
    assert DatasetCaptioner().captions(LabelsOnly(), np.array([0, 1, 2])) == ["cat", "dog", "cat"]
    assert DatasetCaptioner(source="captions").skip_reason(LabelsOnly()) is not None
    with pytest.raises(UserError, match="source"):
        DatasetCaptioner(source="files")


def test_open_clip_zero_shot_skips_without_weights():
    reason = OpenClipZeroShot().skip_reason(LabelsOnly())
    assert reason is not None and ("pretrained" in reason or "open_clip" in reason)
    assert "not found" in OpenClipZeroShot(pretrained="/nonexistent/open_clip.bin").skip_reason(LabelsOnly()) or (
        "open_clip_torch" in OpenClipZeroShot(pretrained="/nonexistent/open_clip.bin").skip_reason(LabelsOnly())
    )


def test_open_clip_zero_shot_mechanics_at_random_init(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    }
    (tmp_path / "interpbench-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "interpbench-tiny.json")
    torch.manual_seed(0)
    cap = OpenClipZeroShot(model="interpbench-tiny", random_init=True, vocabulary=("cat", "dog", "car"))
    assert cap.skip_reason(LabelsOnly()) is None
    out = cap.captions(LabelsOnly(), np.arange(6))
    assert len(out) == 6 and set(out) <= {"a photo of a cat.", "a photo of a dog.", "a photo of a car."}
    assert cap.captions(LabelsOnly(), np.arange(6)) == out  # deterministic once built
