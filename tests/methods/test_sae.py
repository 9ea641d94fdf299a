"""Sparse autoencoders: the shared :class:`SAEBasis`, hand-written gradients equal autograd's,
and ``sae_l1`` / ``sae_topk`` recover planted sparse features."""

from __future__ import annotations

import pytest
import torch

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import Basis
from methods.sae import L1SAE, SAEBasis, TopKSAE
from tests.methods.toy import mean_max_cosine, sparse_toy_data


def random_params(k: int = 48, d: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(k, d, generator=gen, dtype=torch.float64),
        "b_enc": 0.1 * torch.randn(k, generator=gen, dtype=torch.float64),
        "W_dec": torch.nn.functional.normalize(torch.randn(k, d, generator=gen, dtype=torch.float64), dim=1),
        "b_dec": 0.1 * torch.randn(d, generator=gen, dtype=torch.float64),
    }


# -- SAEBasis ------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_sae_basis_encodes_as_specified_and_round_trips(activation, tmp_path):
    p = {n: t.float() for n, t in random_params().items()}
    threshold = torch.rand(48) if activation == "jumprelu" else None
    basis = SAEBasis(**p, activation=activation, topk=5 if activation == "topk" else None, threshold=threshold)
    x = torch.randn(30, 16)
    pre = (x - p["b_dec"]) @ p["W_enc"].T + p["b_enc"]
    if activation == "relu":
        expected = torch.relu(pre)
    elif activation == "topk":
        keep = torch.zeros_like(pre, dtype=torch.bool).scatter(1, pre.topk(5, dim=1).indices, True)
        expected = torch.relu(pre) * keep
    else:
        expected = pre * (pre > threshold)
    codes = basis.encode(x)
    torch.testing.assert_close(codes, expected)
    torch.testing.assert_close(basis.decode(codes), codes @ p["W_dec"] + p["b_dec"])
    torch.testing.assert_close(basis.directions, torch.nn.functional.normalize(p["W_dec"], dim=1))
    basis.save(tmp_path / activation)
    loaded = Basis.load(tmp_path / activation)
    assert isinstance(loaded, SAEBasis) and loaded.activation == activation
    assert torch.equal(loaded.encode(x), codes)


def test_sae_basis_rejects_bad_shapes_and_settings():
    p = {n: t.float() for n, t in random_params().items()}
    with pytest.raises(UserError, match="must match"):
        SAEBasis(W_enc=p["W_enc"][:, :8], W_dec=p["W_dec"])
    with pytest.raises(UserError, match="topk"):
        SAEBasis(W_enc=p["W_enc"], W_dec=p["W_dec"], activation="topk")
    with pytest.raises(UserError, match="valid"):
        SAEBasis(W_enc=p["W_enc"], W_dec=p["W_dec"], activation="gelu")


# -- hand-written gradients ---------------------------------------------------------------------


def autograd_grads(p: dict[str, torch.Tensor], loss_of) -> dict[str, torch.Tensor]:
    q = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    loss_of(q).backward()
    return {n: t.grad for n, t in q.items()}


def test_topk_gradients_equal_autograd_including_auxk():
    p, x = random_params(), torch.randn(64, 16, dtype=torch.float64)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[::3] = True
    method = TopKSAE(k=4, n_latents=48, aux_k=6)
    ours = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    method._step(x, ours, dead, 6, "cpu")

    def loss_of(q):
        pre = (x - q["b_dec"]) @ q["W_enc"].T + q["b_enc"]
        vals, idx = pre.topk(4, dim=1)
        codes = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
        err = x - (codes @ q["W_dec"] + q["b_dec"])
        dead_idx = torch.nonzero(dead).flatten()
        a_vals, a_pos = pre[:, dead_idx].topk(6, dim=1)
        aux_codes = torch.zeros_like(pre).scatter(1, dead_idx[a_pos], torch.relu(a_vals))
        aux = ((err.detach() - aux_codes @ q["W_dec"]) ** 2).sum() / len(x)
        return (err**2).sum() / len(x) + aux / 32

    ref = autograd_grads(p, loss_of)
    for name in p:
        torch.testing.assert_close(ours[name].grad, ref[name], atol=1e-10, rtol=1e-8)


def test_l1_gradients_equal_autograd():
    p, x = random_params(), torch.randn(64, 16, dtype=torch.float64)
    method = L1SAE(n_latents=48, l1_coefficient=0.7)
    ours = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    method._step(x, ours, "cpu")

    def loss_of(q):
        codes = torch.relu((x - q["b_dec"]) @ q["W_enc"].T + q["b_enc"])
        return ((codes @ q["W_dec"] + q["b_dec"] - x) ** 2).sum() / len(x) + 0.7 * codes.sum() / len(x)

    ref = autograd_grads(p, loss_of)
    for name in p:
        torch.testing.assert_close(ours[name].grad, ref[name], atol=1e-10, rtol=1e-8)


# -- planted recovery ---------------------------------------------------------------------------

# The recovery tests' settings (perf/sae_recovery.py prints the same fits per frequency third).
# The toy's rarest features are active in ~0.3 % of samples (~60 times in 20,000). What closes the
# gap to 0.99 is resampling: latents that are dead, weak (summed squared activation below a tenth of
# the median latent's: rarely firing partial copies of frequent features) or duplicated are pointed
# at the reconstruction errors of high-loss training rows, which is where the missed features are.
N_SAMPLES = 20_000
RESAMPLING = {"weak_fraction": 0.1, "resample_duplicates": True}
TOPK_SETTINGS = {
    "n_latents": 512,
    "k": 8,
    "lr": 2e-3,
    "batch_size": 128,
    "epochs": 30,
    "dead_tokens": 20_000,
    "resample_every": 200,
    "resample_until": 0.8,
    **RESAMPLING,
}
L1_SETTINGS = {
    "n_latents": 512,
    "l1_coefficient": 2.0,
    "lr": 2e-3,
    "batch_size": 128,
    "epochs": 30,
    "resample_every": 300,
    "resample_until": 0.85,
    "resample_target": "residual",
    **RESAMPLING,
}


def recovery(method, n: int, seed: int = 0):
    acts, features, _ = sparse_toy_data(n=n)
    # one thread: these 128 x 256 steps are too small to share, and two spinning threads on a
    # busy 2-core machine made one step 60x slower (1.6 ms -> 94 ms); same numbers either way
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        basis = method.fit(ActivationStore.wrap(acts), seed=seed)
    finally:
        torch.set_num_threads(threads)
    forward, reverse = mean_max_cosine(features, basis.directions)
    print(f"{type(method).__name__} recovery: forward {forward:.4f}, reverse {reverse:.4f}, stats {basis.stats}")
    return basis, forward, reverse


# The bar: forward (each planted feature's best |cosine|) >= 0.99 at width 512, and a
# reverse bar (each latent's best match) so that dead or duplicated latents cannot hide.


@pytest.mark.slow
def test_topk_sae_recovers_planted_features():
    basis, forward, reverse = recovery(TopKSAE(**TOPK_SETTINGS), n=N_SAMPLES)
    assert forward >= 0.99  # measured 0.997 (seed 1: 0.996)
    assert reverse >= 0.99  # measured 0.998
    assert basis.encode(torch.randn(5, 256)).count_nonzero(dim=1).max() <= 8


@pytest.mark.slow
def test_l1_sae_recovers_planted_features():
    basis, forward, reverse = recovery(L1SAE(**L1_SETTINGS), n=N_SAMPLES)
    assert forward >= 0.99  # measured 0.994
    assert reverse >= 0.99  # measured 0.995
    assert basis.stats["resampled_latents"] > 0


def test_k_larger_than_width_is_an_error():
    acts, _, _ = sparse_toy_data(n=300, d=16, m=24)
    with pytest.raises(UserError, match="TopKSAE.*k must be"):
        TopKSAE(n_latents=32, k=40).fit(ActivationStore(acts.numpy(), name="toy/layer"), seed=0)


@pytest.mark.parametrize(
    "method, match",
    [
        (L1SAE(n_latents=32, resample_target="output"), "L1SAE on toy/layer: resample_target"),
        (TopKSAE(n_latents=32, k=4, weak_fraction=1.0), "TopKSAE on toy/layer: weak_fraction"),
        (L1SAE(n_latents=32, resample_until=1.5), "L1SAE on toy/layer: resample_until"),
    ],
)
def test_bad_resampling_settings_are_errors(method, match):
    acts, _, _ = sparse_toy_data(n=300, d=16, m=24)
    with pytest.raises(UserError, match=match):
        method.fit(ActivationStore(acts.numpy(), name="toy/layer"), seed=0)


def test_resampling_reinitialises_dead_latents_toward_high_loss_inputs():
    method = L1SAE(n_latents=8)
    params = {n: t.float()[:8] if t.dim() and t.shape[0] == 48 else t.float() for n, t in random_params().items()}
    params = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)
    x = torch.randn(50, 16)
    method._step(x, params, "cpu")
    opt.step()
    before = {n: t.detach().clone() for n, t in params.items()}
    dead = torch.zeros(8, dtype=torch.bool)
    dead[[2, 5]] = True
    losses = torch.zeros(50)
    losses[7] = 3.0  # the only input with loss: both dead latents move toward it
    n = method._resample(opt, params, dead, x, losses, torch.Generator().manual_seed(0))
    assert n == 2
    target = torch.nn.functional.normalize(x[7] - before["b_dec"], dim=0)
    alive_norm = before["W_enc"][~dead].norm(dim=1).mean()
    for row in (2, 5):
        torch.testing.assert_close(params["W_dec"][row].detach(), target)
        torch.testing.assert_close(params["W_enc"][row].detach(), target * 0.2 * alive_norm)
        assert params["b_enc"][row] == 0.0
        assert (opt.state[params["W_enc"]]["exp_avg"][row] == 0).all()
    torch.testing.assert_close(params["W_dec"][~dead].detach(), before["W_dec"][~dead])


def test_dead_latents_are_reported_not_an_error():
    """A width far beyond the data: fits finish, stats count dead and resampled latents."""
    acts, _, _ = sparse_toy_data(n=2000, d=16, m=24)
    basis = L1SAE(n_latents=256, batch_size=128, epochs=3, resample_every=10).fit(acts, seed=0)
    assert basis.stats["resampled_latents"] >= 0
    topk = TopKSAE(n_latents=256, k=4, batch_size=128, epochs=3, dead_tokens=1000).fit(acts, seed=0)
    assert 0 <= topk.stats["dead_latents_at_end"] <= 256
    assert torch.isfinite(topk.W_dec).all() and torch.isfinite(basis.W_dec).all()


def test_duplicates_flag_the_less_active_of_two_near_equal_decoder_rows():
    w_dec = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    assert TopKSAE._duplicates(w_dec, torch.tensor([5, 9, 1])).tolist() == [True, False, False]
    assert TopKSAE._duplicates(w_dec, torch.tensor([4, 4, 0])).tolist() == [False, True, False]  # tie: higher index
    w_dec[1] = -w_dec[0]  # opposite signs are the same direction
    assert TopKSAE._duplicates(w_dec, torch.tensor([9, 5, 1])).tolist() == [False, True, False]


@pytest.mark.parametrize("cls", [TopKSAE, L1SAE])
def test_resampling_targets_are_residuals_of_the_worst_reconstructed_rows(cls):
    """Zero weights reconstruct every row as ``b_dec``: the rows' residuals are ``x - b_dec``, and
    distinct targets come from the rows with loss, the largest first in probability."""
    params = {n: torch.zeros_like(t).float() for n, t in random_params().items()}
    params["b_dec"] = torch.ones(16)
    pool = torch.ones(40, 16)
    pool[3, 2] += 5.0  # residual e_2 * 5
    pool[11, 7] -= 2.0  # residual -e_7 * 2
    method = cls(n_latents=48, **({"k": 4} if cls is TopKSAE else {}))
    targets = method._residual_targets(params, pool, 2, torch.Generator().manual_seed(0))
    expected = {(2, 1.0), (7, -1.0)}
    assert {(int(t.abs().argmax()), float(t[t.abs().argmax()])) for t in targets} == expected


def test_topk_resampling_moves_duplicate_latents_and_keeps_unit_decoder_rows():
    acts, _, _ = sparse_toy_data(n=3000, d=16, m=24)
    method = TopKSAE(
        n_latents=64, k=3, batch_size=128, epochs=4, resample_every=20, resample_until=0.8, weak_fraction=0.5
    )
    basis = method.fit(acts, seed=0)
    assert basis.stats["resampled_latents"] > 0  # half the latents are below half the median energy
    torch.testing.assert_close(basis.W_dec.norm(dim=1) * basis.W_dec.norm(dim=1)[0] ** -1, torch.ones(64))
