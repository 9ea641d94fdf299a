"""Export a fitted basis to SAELens's format, so it loads with ``sae_lens.SAE.load_from_disk``.

``to_saelens(basis, out_dir)`` writes ``cfg.json`` + ``sae_weights.safetensors`` (the layout
SAELens 6 saves: ``W_enc [d, k]``, ``b_enc [k]``, ``W_dec [k, d]``, ``b_dec [d]``,
``threshold [k]``):

* an :class:`~methods.sae.SAEBasis` exports exactly: architecture ``standard`` (ReLU),
  ``topk`` (with ``k``) or ``jumprelu`` (with ``threshold``); SAELens's codes equal ours;
* a :class:`~methods.base.LinearBasis` (neurons, random, PCA, ICA, plain directions) has
  signed codes, which no SAELens architecture gives (all apply a ReLU), so it exports as a
  ``standard`` SAE with ``2k`` latents: latent ``j`` is ``relu(code_j)`` and latent ``k + j`` is
  ``relu(-code_j)``, with decoder rows ``D_j`` and ``-D_j``, so decoding is exact
  (``relu(c) - relu(-c) = c``). A LinearBasis without a decoder gets the pseudo-inverse of
  its encoder (least-squares reconstruction);
* other kinds (k-means similarities, sparse-coding codes from an optimiser, NMF) are not
  one linear map plus an activation: refused, unless ``allow_approximate=True``, which
  exports their unit directions as a tied linear basis (codes = projections) as above.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from benchmark.errors import UserError
from methods.base import Basis, LinearBasis

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
#: the SAELens config layout written (6.x: ``architecture`` + ``metadata``)
SAELENS_LAYOUT_VERSION = "6.0.0"


def _saelens_version() -> str:
    try:
        from importlib.metadata import version

        return version("sae-lens")
    except Exception:
        return SAELENS_LAYOUT_VERSION


def to_saelens(
    basis: Basis,
    out_dir: str | Path,
    *,
    hook_name: str = "",
    d_in: int | None = None,
    model_name: str = "",
    allow_approximate: bool = False,
    dtype: str = "float32",
) -> Path:
    """Write ``basis`` as an SAELens SAE folder ``out_dir``; returns the folder.

    Args:
        basis: a fitted basis (``SAEBasis`` or ``LinearBasis`` exactly; others with ``allow_approximate``).
        out_dir: the folder to write (created; existing files there are overwritten).
        hook_name: the TransformerLens hook the SAE reads (``metadata.hook_name``), e.g. the layer.
        d_in: the layer width; checked against the basis when given.
        model_name: ``metadata.model_name``.
        allow_approximate: export a basis whose encoder is not linear as its directions.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` for the saved weights.
    """
    from methods.sae import SAEBasis

    if d_in is not None and basis.d != d_in:
        raise UserError(f"to_saelens: the basis has d = {basis.d} but d_in = {d_in}")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise UserError(f"to_saelens: dtype must be float32, float16 or bfloat16, got {dtype!r}")
    extra: dict = {}
    if isinstance(basis, SAEBasis):
        tensors = {
            "W_enc": basis.W_enc.T,
            "b_enc": basis.b_enc,
            "W_dec": basis.W_dec,
            "b_dec": basis.b_dec,
        }
        if basis.activation == "relu":
            architecture = "standard"
        elif basis.activation == "topk":
            architecture = "topk"
            extra = {"k": int(basis.topk), "rescale_acts_by_decoder_norm": False}
        else:
            architecture = "jumprelu"
            tensors["threshold"] = basis.threshold
    elif isinstance(basis, LinearBasis) or allow_approximate:
        encoder, decoder, bias = _linear_parts(basis)
        tensors = {
            "W_enc": torch.cat([encoder, -encoder]).T,
            "b_enc": torch.zeros(2 * basis.k),
            "W_dec": torch.cat([decoder, -decoder]),
            "b_dec": bias,
        }
        architecture = "standard"
        extra = {}
    else:
        raise UserError(
            f"to_saelens: a {type(basis).__name__} (kind {basis.kind!r}) is not one linear map plus "
            f"relu / topk / jumprelu, so SAELens cannot reproduce its codes; exportable exactly: SAEBasis, "
            f"LinearBasis; pass allow_approximate=True to export its directions as a linear basis"
        )
    k = tensors["W_dec"].shape[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {n: t.detach().to("cpu", torch_dtype).contiguous().clone() for n, t in tensors.items()},
        str(out / SAELENS_WEIGHTS),
    )
    cfg = {
        "architecture": architecture,
        "d_in": int(basis.d),
        "d_sae": int(k),
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **extra,
        "metadata": {
            "sae_lens_version": _saelens_version(),
            "sae_lens_training_version": _saelens_version(),
            "hook_name": hook_name,
            "model_name": model_name,
            "interpbench_kind": basis.kind,
            "interpbench_signed_pairs": not isinstance(basis, SAEBasis),
        },
    }
    (out / SAELENS_CFG).write_text(json.dumps(cfg, indent=1))
    return out


def _linear_parts(basis: Basis) -> tuple[Tensor, Tensor, Tensor]:
    """``(encoder [k, d], decoder [k, d], bias [d])`` of a projection basis."""
    if isinstance(basis, LinearBasis):
        encoder = basis.encoder.detach().float()
        bias = basis.bias.detach().float()
        decoder = basis.decoder
    else:
        encoder = basis.directions.detach().float()
        bias = torch.zeros(basis.d)
        decoder = None
    if decoder is None:
        decoder = torch.linalg.pinv(encoder.T.double()).float()
    return encoder, decoder.detach().float(), bias
