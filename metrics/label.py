"""Label consistency: two stimuli are similar when they share a label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.data.base import StimulusSet
from metrics.base import SimilarityMetric


@dataclass(frozen=True)
class LabelConsistency(SimilarityMetric):
    """Agreement of stimulus labels (1 where two labels are equal, else 0) under a protocol.

    Under ``consistency`` the score is the fraction of top-``n`` pairs that share a label
    (chance: the sum of squared class frequencies). A negative label means "unlabelled" and
    matches nothing, not even another unlabelled stimulus.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    version: ClassVar[str] = "2"  # 2: psychophysics bands with 4 T (R + 1) samples or fewer are "insufficient"

    def embed(self, stimuli: StimulusSet, idx: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(stimuli.labels(idx), dtype=np.int64))

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return ((a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)).float()
