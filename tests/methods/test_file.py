"""The ``file`` method: bases saved by SAELens, dictionary_learning and overcomplete load with the
same codes as each package's own encoder; plain direction matrices; clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmark.errors import UserError
from benchmark.registry import METHODS
from methods.base import LinearBasis
from methods.file import FileBasis, find_bases, load_basis
from methods.sae import SAEBasis

D, K = 12, 40
TOL = 1e-5


@pytest.fixture(scope="module")
def acts() -> torch.Tensor:
    """``[300, D]`` activations with an offset (so decoder biases matter)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(300, D, generator=gen) + 0.5


def randomise(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Every parameter random (biases too), so no zero-initialised term hides a mistake."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module


def fit_file(path: Path, acts: torch.Tensor, **params) -> object:
    return FileBasis(path=str(path), **params).fit(acts, seed=0)


def assert_codes(basis, expected: torch.Tensor, acts: torch.Tensor) -> None:
    codes = basis.encode(acts)
    assert codes.shape == expected.shape
    assert (expected != 0).any(), "the planted SAE is dead: the comparison would be empty"
    torch.testing.assert_close(codes, expected, atol=TOL, rtol=0)


def test_file_is_a_registered_method():
    assert METHODS.get("file") is FileBasis


# -- SAELens --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sae_lens():
    return pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed here (the `test` extra installs it: pip install sae-lens)"
    )


SAELENS_CASES = [
    ("StandardSAE", "StandardSAEConfig", {}),
    ("StandardSAE", "StandardSAEConfig", {"apply_b_dec_to_input": False}),
    ("TopKSAE", "TopKSAEConfig", {"k": 5}),
    ("TopKSAE", "TopKSAEConfig", {"k": 5, "rescale_acts_by_decoder_norm": True}),
    ("JumpReLUSAE", "JumpReLUSAEConfig", {}),
]


@pytest.mark.parametrize(("cls", "cfg_cls", "kwargs"), SAELENS_CASES)
def test_saelens_codes_match_the_package(sae_lens, tmp_path, acts, cls, cfg_cls, kwargs):
    sae = randomise(getattr(sae_lens, cls)(getattr(sae_lens, cfg_cls)(d_in=D, d_sae=K, **kwargs)))
    if hasattr(sae, "threshold"):
        with torch.no_grad():
            sae.threshold.copy_(torch.rand(K, generator=torch.Generator().manual_seed(2)) * 0.4)
    sae.save_model(tmp_path / "sae")
    basis = fit_file(tmp_path / "sae", acts)
    assert isinstance(basis, SAEBasis)
    with torch.no_grad():
        expected = sae.encode(acts)
        assert_codes(basis, expected, acts)
        torch.testing.assert_close(basis.decode(expected), sae.decode(expected), atol=TOL, rtol=1e-5)
    assert basis.activation == {"StandardSAE": "relu", "TopKSAE": "topk", "JumpReLUSAE": "jumprelu"}[cls]


def test_saelens_pre_6_config_layout(sae_lens, tmp_path, acts):
    """Older SAELens folders: activation_fn_str + activation_fn_kwargs.k, hook_point; SAELens still reads them."""
    sae = randomise(sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=D, d_sae=K, k=3)))
    folder = tmp_path / "old"
    sae.save_model(folder)
    old_cfg = {
        "d_in": D,
        "d_sae": K,
        "dtype": "float32",
        "device": "cpu",
        "hook_point": "blocks.0.hook_resid_pre",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 3},
        "apply_b_dec_to_input": True,
        "sae_lens_training_version": "3.0.0",
    }
    (folder / "cfg.json").write_text(json.dumps(old_cfg))
    reloaded = sae_lens.SAE.load_from_disk(folder)
    basis = fit_file(folder, acts)
    assert basis.activation == "topk" and basis.topk == 3
    with torch.no_grad():
        assert_codes(basis, reloaded.encode(acts), acts)


# -- dictionary_learning ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dl():
    pytest.importorskip(
        "dictionary_learning",
        reason="dictionary-learning is not installed here (the `test` extra installs it: pip install dictionary-learning)",
    )
    from dictionary_learning.dictionary import AutoEncoder, AutoEncoderNew, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    return {
        "AutoEncoder": lambda: AutoEncoder(D, K),
        "AutoEncoderNew": lambda: AutoEncoderNew(D, K),
        "AutoEncoderTopK": lambda: AutoEncoderTopK(D, K, 5),
        "BatchTopKSAE": lambda: BatchTopKSAE(D, K, 5),
        "MatryoshkaBatchTopKSAE": lambda: MatryoshkaBatchTopKSAE(D, K, 5, [10, 30]),
        "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(D, K),
    }


@pytest.mark.parametrize(
    ("dict_class", "with_config"),
    [
        ("AutoEncoder", False),
        ("AutoEncoderNew", False),
        ("AutoEncoderTopK", True),
        ("BatchTopKSAE", True),
        ("MatryoshkaBatchTopKSAE", False),
        ("JumpReluAutoEncoder", False),
    ],
)
def test_dictionary_learning_codes_match_the_package(dl, tmp_path, acts, dict_class, with_config):
    ae = randomise(dl[dict_class]())
    if hasattr(ae, "threshold"):
        with torch.no_grad():
            if ae.threshold.ndim == 0:
                ae.threshold.fill_(0.2)
            else:
                ae.threshold.copy_(torch.rand(K, generator=torch.Generator().manual_seed(3)) * 0.4)
    torch.save(ae.state_dict(), tmp_path / "ae.pt")  # what dictionary_learning's training loop writes
    if with_config:
        (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": dict_class, "k": 5}}))
    basis = fit_file(tmp_path, acts)
    with torch.no_grad():
        expected = ae.encode(acts)
        assert_codes(basis, expected, acts)
        torch.testing.assert_close(basis.decode(expected), ae.decode(expected), atol=TOL, rtol=1e-5)


def test_dictionary_learning_batch_topk_without_config_needs_the_activation(dl, tmp_path, acts):
    ae = randomise(dl["BatchTopKSAE"]())
    with torch.no_grad():
        ae.threshold.fill_(0.2)
    torch.save(ae.state_dict(), tmp_path / "sae.pt")
    assert fit_file(tmp_path / "sae.pt", acts).activation == "topk"  # AutoEncoderTopK has the same keys
    basis = fit_file(tmp_path / "sae.pt", acts, format="dictionary_learning", activation="jumprelu")
    with torch.no_grad():
        assert_codes(basis, ae.encode(acts), acts)


# -- overcomplete -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overcomplete():
    import matplotlib
    import matplotlib.cm

    # overcomplete 0.3 calls matplotlib.cm.get_cmap (removed in matplotlib 3.9) when imported
    added = not hasattr(matplotlib.cm, "get_cmap")
    if added:
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    try:
        sae = pytest.importorskip(
            "overcomplete.sae",
            reason="overcomplete is not installed here (the `test` extra installs it: pip install overcomplete)",
        )
    finally:
        if added:
            del matplotlib.cm.get_cmap
    return sae


@pytest.mark.parametrize("kind", ["SAE", "TopKSAE", "JumpSAE", "SAE+BatchNorm"])
def test_overcomplete_codes_match_the_package(overcomplete, tmp_path, acts, kind):
    params: dict = {}
    if kind == "SAE":
        model = overcomplete.SAE(D, K)
    elif kind == "TopKSAE":
        model = overcomplete.TopKSAE(D, K, top_k=5)
        params = {"activation": "topk", "topk": 5}
    elif kind == "JumpSAE":
        model = overcomplete.JumpSAE(D, K)
    else:
        model = overcomplete.SAE(D, K, encoder_module="mlp_bn_1")
    randomise(model)
    if kind == "JumpSAE":
        with torch.no_grad():
            model.thresholds.fill_(-1.5)
    if kind == "SAE+BatchNorm":
        with torch.no_grad():  # running statistics that are not 0 / 1
            model.train()
            model(torch.randn(128, D, generator=torch.Generator().manual_seed(4)) * 2 + 1)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "sae.pt")
    basis = fit_file(tmp_path / "sae.pt", acts, **params)
    with torch.no_grad():
        expected = model.encode(acts)[1]
        assert_codes(basis, expected, acts)
        torch.testing.assert_close(basis.decode(expected), model.decode(expected), atol=TOL, rtol=1e-5)


def test_overcomplete_topk_without_k_is_an_error(overcomplete, tmp_path, acts):
    torch.save(overcomplete.TopKSAE(D, K, top_k=5).state_dict(), tmp_path / "sae.pt")
    with pytest.raises(UserError, match="top_k: pass topk"):
        fit_file(tmp_path / "sae.pt", acts, format="overcomplete", activation="topk")


# -- plain direction matrices -----------------------------------------------------------------
def planted(k: int = 5, n: int = 2000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal directions ``[k, D]``, positive-skew sparse codes ``[n, k]`` and ``acts = codes @ dirs``."""
    gen = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen))
    dirs = q[:k].contiguous()
    codes = torch.rand(n, k, generator=gen) ** 4 * (torch.rand(n, k, generator=gen) < 0.3)
    return dirs, codes, codes @ dirs


def test_npy_directions_encode_by_projection_with_pinv_decoder(tmp_path):
    dirs, codes, x = planted()
    np.save(tmp_path / "dirs.npy", (-3.0 * dirs).numpy())  # scaled and sign-flipped on disk
    basis = fit_file(tmp_path / "dirs.npy", x)
    assert isinstance(basis, LinearBasis)
    torch.testing.assert_close(basis.directions, dirs, atol=1e-5, rtol=0)  # unit rows, positive skew
    torch.testing.assert_close(basis.encode(x), codes, atol=1e-5, rtol=0)
    torch.testing.assert_close(basis.decode(basis.encode(x)), x, atol=1e-5, rtol=0)
    no_decoder = fit_file(tmp_path / "dirs.npy", x, decoder="none")
    assert not no_decoder.has_decoder


def test_safetensors_directions_and_key(tmp_path):
    dirs, codes, x = planted()
    save_file({"directions": dirs, "other": torch.zeros(2, 2)}, str(tmp_path / "two.safetensors"))
    torch.testing.assert_close(fit_file(tmp_path / "two.safetensors", x).encode(x), codes, atol=1e-5, rtol=0)
    save_file({"a": dirs.clone(), "b": dirs.clone()}, str(tmp_path / "ab.safetensors"))
    with pytest.raises(UserError, match="set key"):
        fit_file(tmp_path / "ab.safetensors", x)
    torch.testing.assert_close(fit_file(tmp_path / "ab.safetensors", x, key="b").directions, dirs, atol=1e-5, rtol=0)


def test_interpbench_folder_loads_back(tmp_path):
    basis = SAEBasis(W_enc=torch.randn(K, D), W_dec=torch.randn(K, D), b_dec=torch.randn(D), b_enc=torch.randn(K))
    basis.save(tmp_path / "saved")
    x = torch.randn(50, D)
    assert torch.equal(fit_file(tmp_path / "saved", x).encode(x), basis.encode(x))


# -- errors -----------------------------------------------------------------------------------
def write_saelens(folder: Path, d: int = D, k: int = K, cfg: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": torch.randn(d, k), "b_enc": torch.zeros(k), "W_dec": torch.randn(k, d), "b_dec": torch.zeros(d)}
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    if cfg is not None:
        (folder / "cfg.json").write_text(json.dumps({"d_in": d, "d_sae": k, **cfg}))
    return folder


def test_wrong_shape_for_the_layer_names_file_and_expected_shape(tmp_path):
    folder = write_saelens(tmp_path / "sae", d=16, cfg={"architecture": "standard"})
    with pytest.raises(UserError) as err:
        fit_file(folder, torch.randn(10, D))
    msg = str(err.value)
    assert "sae_weights.safetensors" in msg and f"d = {D}" in msg
    assert f"W_enc [{D}, k]" in msg and f"W_dec [k, {D}]" in msg and "[16, 40]" in msg


def test_wrong_shape_plain_matrix_suggests_transposing(tmp_path):
    np.save(tmp_path / "dirs.npy", np.ones((D, 5), dtype=np.float32))
    with pytest.raises(UserError, match=rf"dirs.npy: directions have shape \[{D}, 5\].*expected \[k, {D}\]; transpose"):
        fit_file(tmp_path / "dirs.npy", torch.randn(10, D))


def test_inconsistent_tensor_shapes_are_named(tmp_path):
    folder = tmp_path / "sae"
    write_saelens(folder, cfg={"architecture": "standard"})
    save_file(
        {"W_enc": torch.randn(D, K), "b_enc": torch.zeros(K + 1), "W_dec": torch.randn(K, D), "b_dec": torch.zeros(D)},
        str(folder / "sae_weights.safetensors"),
    )
    with pytest.raises(UserError, match=rf"b_enc has shape \[{K + 1}\], expected \[{K}\]"):
        fit_file(folder, torch.randn(10, D))


def test_missing_cfg_json(tmp_path):
    folder = write_saelens(tmp_path / "sae")  # weights only
    with pytest.raises(UserError, match="missing cfg.json") as err:
        fit_file(folder, torch.randn(10, D))
    assert str(folder) in str(err.value)
    with pytest.raises(UserError, match="no cfg.json beside it"):
        fit_file(folder / "sae_weights.safetensors", torch.randn(10, D), format="safetensors")


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"activation_fn": "tanh-relu"}, "unknown activation function 'tanh-relu'"),
        ({"architecture": "gated"}, "unknown SAE architecture 'gated'"),
        ({"architecture": "standard", "normalize_activations": "layer_norm"}, "layer_norm"),
    ],
)
def test_unknown_activation_or_architecture(tmp_path, cfg, match):
    folder = write_saelens(tmp_path / "sae", cfg=cfg)
    with pytest.raises(UserError, match=match) as err:
        fit_file(folder, torch.randn(10, D))
    assert "cfg.json" in str(err.value)


def test_bad_parameters_and_paths(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        FileBasis(path=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="unknown format 'hdf5'"):
        FileBasis(path=str(tmp_path), format="hdf5")
    with pytest.raises(UserError, match="unknown activation 'gelu'"):
        FileBasis(path=str(tmp_path), activation="gelu")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a basis folder"):
        load_basis(tmp_path)
    torch.save({"model": "a string, not tensors"}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="dict of tensors"):
        load_basis(tmp_path / "bad.pt")


def test_params_carry_a_content_digest(tmp_path):
    """The cache key changes when the file changes, so a replaced SAE is never scored from the cache."""
    np.save(tmp_path / "dirs.npy", np.eye(D, dtype=np.float32)[:3])
    method = FileBasis(path=str(tmp_path / "dirs.npy"))
    before = method.params()["content"]
    assert before == method.params()["content"]
    np.save(tmp_path / "dirs.npy", np.eye(D, dtype=np.float32)[:4])
    assert method.params()["content"] != before


def test_a_folder_of_bases_is_listed_for_a_sweep(tmp_path):
    write_saelens(tmp_path / "saes" / "l0_16", cfg={"architecture": "standard"})
    write_saelens(tmp_path / "saes" / "l0_32", cfg={"architecture": "standard"})
    (tmp_path / "saes" / "dl" / "checkpoints").mkdir(parents=True)
    torch.save({"encoder.weight": torch.randn(K, D)}, tmp_path / "saes" / "dl" / "ae.pt")
    torch.save({"encoder.weight": torch.randn(K, D)}, tmp_path / "saes" / "dl" / "checkpoints" / "ae_100.pt")
    np.save(tmp_path / "saes" / "probe.npy", np.eye(D, dtype=np.float32)[:2])
    found = find_bases(tmp_path / "saes")
    assert found == [str(tmp_path / "saes" / n) for n in ("dl", "l0_16", "l0_32", "probe.npy")]
    with pytest.raises(UserError, match=r"holds 4 basis folders or files .*sweep = \{ path"):
        load_basis(tmp_path / "saes")
