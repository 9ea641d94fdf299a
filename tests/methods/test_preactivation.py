"""``Basis.preactivation``: dense, and in the code's order wherever the code is non-zero.

For every sparse basis: active samples keep the code's order, every active sample ranks above
every inactive one, and inactive samples get real (mostly distinct) values, not ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.base import LinearBasis
from methods.nmf import NMFBasis
from methods.sae import SAEBasis
from methods.sparse_coding import SparseCodingBasis


def check_order(codes: torch.Tensor, pre: torch.Tensor) -> None:
    """``codes, pre [n, k]``: same order among non-zero codes, non-zero codes above (positive) or
    below (negative) every zero, and zeros mostly untied."""
    assert codes.shape == pre.shape
    for j in range(codes.shape[1]):
        c, p = codes[:, j], pre[:, j]
        active = c != 0
        if active.sum() > 1:
            order = torch.argsort(c[active])
            assert (torch.diff(p[active][order]) >= 0).all()
        pos, neg, zero = c > 0, c < 0, c == 0
        if pos.any() and zero.any():
            assert p[pos].min() > p[zero].max()
        if neg.any() and zero.any():
            assert p[neg].max() < p[zero].min()
        if zero.sum() > 10:
            assert len(torch.unique(p[zero])) > 0.9 * int(zero.sum())


def sae(activation: str, **kw) -> SAEBasis:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(12, 6, generator=gen)
    return SAEBasis(W_enc=w, b_enc=-0.5 * torch.ones(12), W_dec=w.clone(), activation=activation, **kw)


@pytest.mark.parametrize(
    "basis", [sae("relu"), sae("topk", topk=3), sae("jumprelu", threshold=torch.full((12,), 0.3))], ids=str
)
def test_sae_preactivation(basis):
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    codes, pre = basis.encode_with_preactivation(x)
    torch.testing.assert_close(codes, basis.encode(x))
    check_order(codes, pre)
    if basis.activation == "relu":
        torch.testing.assert_close(pre, basis.pre_activations(x))


@pytest.mark.parametrize("positive", [False, True])
def test_sparse_coding_preactivation(positive):
    gen = torch.Generator().manual_seed(2)
    atoms = torch.nn.functional.normalize(torch.randn(10, 6, generator=gen), dim=1)
    basis = SparseCodingBasis(directions=atoms, alpha=0.3, positive=positive, working_set=8, tol=1e-6)
    x = torch.randn(400, 6, generator=gen)
    codes, pre = basis.encode_with_preactivation(x)
    assert (codes == 0).float().mean() > 0.3
    check_order(codes, pre)
    # the lasso code is the soft threshold of the preactivation at alpha
    a = basis.alpha
    soft = torch.sign(pre) * (pre.abs() - a).clamp_min(0)
    torch.testing.assert_close(codes, soft.clamp_min(0) if positive else soft, atol=1e-5, rtol=0)


def test_nmf_preactivation():
    gen = torch.Generator().manual_seed(3)
    comps = torch.rand(8, 6, generator=gen)
    basis = NMFBasis(directions=torch.nn.functional.normalize(comps, dim=1), components=comps, encode_iters=200)
    x = torch.rand(300, 6, generator=gen)
    codes, pre = basis.encode_with_preactivation(x)
    assert (codes == 0).float().mean() > 0.2
    check_order(codes, pre)
    assert (pre[codes == 0] <= 0).all()


def test_dense_basis_preactivation_is_the_code():
    basis = LinearBasis(directions=torch.eye(4)[:3])
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32))
    torch.testing.assert_close(basis.preactivation(x), basis.encode(x))
