"""Export to SAELens: SAELens loads what ``to_saelens`` writes and gives the same codes; an SAE
fitted here and scored again through the ``file`` method gives the same results table."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from benchmark.errors import UserError
from benchmark.registry import METHODS
from methods.base import Basis, LinearBasis, unit_rows
from methods.export import to_saelens
from methods.file import FileBasis, load_basis
from methods.sae import SAEBasis

D, K = 10, 24


@pytest.fixture(scope="module")
def sae_lens():
    return pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed here (the `test` extra installs it: pip install sae-lens)"
    )


@pytest.fixture(scope="module")
def acts() -> torch.Tensor:
    return torch.randn(400, D, generator=torch.Generator().manual_seed(0)) + 0.3


def random_sae(activation: str, seed: int = 0) -> SAEBasis:
    gen = torch.Generator().manual_seed(seed)
    extra: dict = {}
    if activation == "topk":
        extra["topk"] = 4
    if activation == "jumprelu":
        extra["threshold"] = torch.rand(K, generator=gen) * 0.3
    return SAEBasis(
        W_enc=torch.randn(K, D, generator=gen) * 0.4,
        b_enc=torch.randn(K, generator=gen) * 0.1,
        W_dec=torch.randn(K, D, generator=gen),
        b_dec=torch.randn(D, generator=gen) * 0.2,
        activation=activation,
        **extra,
    )


@pytest.mark.parametrize(
    ("activation", "architecture"), [("relu", "standard"), ("topk", "topk"), ("jumprelu", "jumprelu")]
)
def test_sae_round_trip_through_sae_lens(sae_lens, tmp_path, acts, activation, architecture):
    basis = random_sae(activation)
    out = to_saelens(basis, tmp_path / "sae", hook_name="blocks.0.hook_mlp_out", d_in=D, model_name="toy")
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and cfg["d_in"] == D and cfg["d_sae"] == K
    sae = sae_lens.SAE.load_from_disk(out)
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_mlp_out"
    with torch.no_grad():
        codes = sae.encode(acts)
        assert (codes != 0).any()
        torch.testing.assert_close(codes, basis.encode(acts), atol=1e-6, rtol=0)
        torch.testing.assert_close(sae.decode(codes), basis.decode(codes), atol=1e-5, rtol=1e-6)
    # and back through the file method: identical tensors, identical codes
    again = FileBasis(path=str(out)).fit(acts, seed=0)
    assert again.activation == activation
    assert torch.equal(again.encode(acts), basis.encode(acts))


def test_linear_basis_exports_as_signed_pairs(sae_lens, tmp_path, acts):
    """A projection basis (signed codes) becomes 2k ReLU latents whose difference is the code; decoding is exact."""
    gen = torch.Generator().manual_seed(1)
    enc = unit_rows(torch.randn(6, D, generator=gen))
    basis = LinearBasis(directions=enc, encoder=enc, bias=torch.randn(D, generator=gen), decoder=torch.randn(6, D))
    sae = sae_lens.SAE.load_from_disk(to_saelens(basis, tmp_path / "lin"))
    with torch.no_grad():
        codes = sae.encode(acts)
        signed = basis.encode(acts)
        assert (signed < 0).any() and (signed > 0).any()
        torch.testing.assert_close(codes[:, :6] - codes[:, 6:], signed, atol=1e-5, rtol=0)
        torch.testing.assert_close(sae.decode(codes), basis.decode(signed), atol=1e-5, rtol=1e-5)


def test_linear_basis_without_decoder_gets_the_pseudo_inverse(sae_lens, tmp_path):
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(2)))
    basis = LinearBasis(directions=q[:4].contiguous())  # no decoder: least squares on the span
    x = torch.randn(50, 4) @ q[:4]
    sae = sae_lens.SAE.load_from_disk(to_saelens(basis, tmp_path / "lin"))
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(sae.encode(x)), x, atol=1e-5, rtol=1e-5)


@dataclasses.dataclass
class _CentroidBasis(Basis):
    kind = "test_centroids"

    def encode(self, acts):
        return -torch.cdist(acts, self.directions)


def test_non_linear_kinds_are_refused_unless_approximate(tmp_path):
    basis = _CentroidBasis(directions=unit_rows(torch.randn(5, D)))
    with pytest.raises(UserError, match="test_centroids.*allow_approximate"):
        to_saelens(basis, tmp_path / "c")
    out = to_saelens(basis, tmp_path / "c", allow_approximate=True)
    loaded = load_basis(out)
    assert loaded.k == 10 and torch.allclose(loaded.W_enc[:5], basis.directions)


def test_bad_export_arguments(tmp_path):
    with pytest.raises(UserError, match="d_in = 3"):
        to_saelens(random_sae("relu"), tmp_path / "x", d_in=3)
    with pytest.raises(UserError, match="dtype"):
        to_saelens(random_sae("relu"), tmp_path / "x", dtype="int8")


def test_half_precision_export_loads(sae_lens, tmp_path, acts):
    basis = random_sae("topk")
    sae = sae_lens.SAE.load_from_disk(to_saelens(basis, tmp_path / "h", dtype="float16"), dtype="float32")
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(acts), basis.encode(acts), atol=5e-2, rtol=1e-2)


# -- scoring an imported SAE == fitting the identical SAE here --------------------------------
TASK = {
    "model": "shapes_cnn_untrained",
    "model_params": {"width": 8},
    "layers": ["conv2"],
    "dataset": "shapes",
    "dataset_params": {"n": 600, "size": 16},
}
VALUE_COLUMNS = ["model", "layer", "dataset", "modality", "n_directions", "seed", "metric", "higher_is_better",
                 "direction", "value", "chance_mean", "chance_std", "status"]  # fmt: skip


def _sae_topk_params() -> dict:
    """Small, fast settings for whatever parameters ``sae_topk`` has."""
    cls = METHODS.get("sae_topk")
    names = {f.name for f in dataclasses.fields(cls)}
    wanted = {"k": 4, "topk": 4, "expansion": 2.0, "n_steps": 200, "steps": 200, "max_steps": 200, "epochs": 2,
              "batch_size": 128, "n_components": 32}  # fmt: skip
    return {k: v for k, v in wanted.items() if k in names}


@pytest.mark.slow
def test_imported_sae_scores_like_the_fitted_one(tmp_path, cache_dir):
    import interpbench

    params = _sae_topk_params()  # a built-in: a failure to load it fails the test
    base = {"seeds": [0], "chance_sets": 4, "tasks": [TASK], "metrics": [{"name": "label_consistency"}]}
    fitted = interpbench.run(
        {**base, "name": "fitted", "methods": [{"name": "sae_topk", "params": params}]},
        cache_dir=cache_dir, results_dir=tmp_path / "r", progress=False, gallery=False,
    )  # fmt: skip
    basis = fitted.basis("sae_topk")
    assert isinstance(basis, SAEBasis) and basis.activation == "topk"
    folder = to_saelens(basis, tmp_path / "exported", hook_name="conv2")
    imported = interpbench.run(
        {**base, "name": "imported", "methods": [{"name": "file", "params": {"path": str(folder)}}]},
        cache_dir=cache_dir, results_dir=tmp_path / "r", progress=False, gallery=False,
    )  # fmt: skip
    assert set(imported.scores["method"]) == {"file"}
    a = fitted.scores[VALUE_COLUMNS].reset_index(drop=True)
    b = imported.scores[VALUE_COLUMNS].reset_index(drop=True)
    # the same directions scored, the same ones undetermined (a TopK latent active on fewer probe
    # stimuli than the metric reads)
    assert len(a) == basis.k and (a["status"] == "ok").sum() > basis.k // 2
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    stats = ["n_directions", "fvu", "explained_variance", "l0", "dead_fraction", "n_fit", "n_probe"]
    pd.testing.assert_frame_equal(fitted.fits[stats], imported.fits[stats], check_exact=True)
