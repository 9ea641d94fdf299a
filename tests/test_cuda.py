"""CPU against GPU: every method's fit and encode, the streaming top-k, and every metric's score.

These run only where CUDA is present (``pytest -m cuda``; they skip elsewhere). Each compares
the CPU result with the same computation on ``OTHER`` (``cuda``; set ``INTERPBENCH_EQUIV_DEVICE=cpu``
to check the comparisons themselves on a machine without a GPU, where they must hold exactly).

Why results may differ at all: every method draws its initialisation from a CPU generator and
moves it, so both devices start from the same point; they then differ only in the order of
floating-point reductions (cuBLAS and CPU BLAS sum in different orders) and in TF32, which
PyTorch uses for cuDNN convolutions by default. Tolerances, per case:

* closed-form bases (``neurons``, ``random``, ``pca``): the same directions to 1e-4 (``|cos|``
  of matched rows; float64 eigensolvers on both sides).
* iterative bases (``ica``, ``kmeans``, ``nmf``, ``sparse_coding``, ``sae_l1``, ``sae_topk``):
  rounding differences grow over iterations, and a k-means reassignment or a TopK selection
  can flip on a near-tie, so the two fits are compared as solutions, not bit patterns: on a
  planted sparse toy, matched directions (one-to-one, by ``|cos|``) agree on average to 0.97
  and FVU to 0.02 (absolute). Both fits are also checked against the planted features, so a
  GPU fit that converged somewhere worse fails even when CPU is equally bad.
* encode of one fitted basis: codes agree to 1e-4 of their scale (linear and k-means codes),
  1e-3 for the iterative sparse codes (FISTA stopping on a tolerance).
* top-k: identical indices on codes without near-ties.
* metric scores on identical top examples: 1e-5 absolute (float32 features summed in float64).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from benchmark.activations import ActivationStore
from methods.base import compute_stats
from tests.methods.conftest import make_method, method_names
from tests.methods.toy import mean_max_cosine, sparse_toy_data

OTHER = os.environ.get("INTERPBENCH_EQUIV_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(OTHER == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CLOSED_FORM = {"neurons", "random", "pca"}
#: method -> settings for the toy (d = 32, 48 planted features): enough steps to converge
TOY_SETTINGS = {
    "pca": {"n_components": 16},
    "ica": {"n_components": 16, "max_iter": 200},
    "kmeans": {"n_components": 48, "max_iter": 50},
    "nmf": {"n_components": 16, "max_iter": 60, "encode_iters": 40, "shift": True},
    "sparse_coding": {"n_components": 48, "epochs": 3, "batch_size": 256},
    "sae_l1": {"expansion": 1.5, "n_tokens": 60_000, "batch_size": 256},
    "sae_topk": {"expansion": 1.5, "n_tokens": 60_000, "batch_size": 256, "k": 4},
}


@pytest.fixture(scope="module")
def toy():
    """Planted sparse toy ``(store [6000, 32], features [48, 32])``, non-negative codes."""
    acts, features, _ = sparse_toy_data(n=6000, d=32, m=48, mean_active=3.0, decay=0.98, seed=2)
    return ActivationStore(acts.numpy(), name="toy/planted"), features


def matched_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``|cos|`` of the one-to-one matching of rows of ``a [k, d]`` and ``b [k, d]`` that maximises
    their sum (Hungarian), ``[k]``."""
    a = torch.nn.functional.normalize(a.double().cpu(), dim=1)
    b = torch.nn.functional.normalize(b.double().cpu(), dim=1)
    cos = (a @ b.T).abs().numpy()
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def fit_both(name: str, store: ActivationStore):
    """The method fitted with seed 0 on the CPU and on ``OTHER``, both returned on the CPU."""
    method = make_method(name, **TOY_SETTINGS.get(name, {}))
    cpu = method.fit(store, seed=0, device="cpu").to("cpu")
    other = method.fit(store, seed=0, device=OTHER).to("cpu")
    return cpu, other


@pytest.mark.parametrize("name", method_names())
def test_fit_agrees(name, toy):
    store, features = toy
    cpu, other = fit_both(name, store)
    assert cpu.directions.shape == other.directions.shape
    cos = matched_cosines(cpu.directions, other.directions)
    if name in CLOSED_FORM:
        assert cos.min() > 1 - 1e-4, f"{name}: closed-form directions differ across devices ({cos.min():.6f})"
    else:
        assert cos.mean() > 0.97, f"{name}: matched directions agree to {cos.mean():.4f} on average"
    stats_cpu, stats_other = compute_stats(cpu, store), compute_stats(other, store)
    if not np.isnan(stats_cpu["fvu"]):
        assert abs(stats_cpu["fvu"] - stats_other["fvu"]) < (1e-5 if name in CLOSED_FORM else 0.02)
    if name not in CLOSED_FORM:
        # neither device converged somewhere worse: both recover the planted features alike
        rec_cpu = mean_max_cosine(features, cpu.directions)[1]
        rec_other = mean_max_cosine(features, other.directions)[1]
        assert abs(rec_cpu - rec_other) < 0.03, f"{name}: recovery {rec_cpu:.3f} (cpu) vs {rec_other:.3f} ({OTHER})"


@pytest.mark.parametrize("name", method_names())
def test_encode_agrees(name, toy):
    store, _ = toy
    method = make_method(name, **TOY_SETTINGS.get(name, {}))
    basis = method.fit(store, seed=0, device="cpu").to("cpu")
    x = store.load(max_rows=2048, seed=1)
    with torch.no_grad():
        codes_cpu = basis.encode(x)
        codes_other = basis.to(OTHER).encode(x.to(OTHER)).cpu()
    scale = codes_cpu.abs().max().clamp_min(1e-12)
    tol = 1e-3 if name in {"sparse_coding", "nmf"} else 1e-4
    err = float((codes_cpu - codes_other).abs().max() / scale)
    assert err < tol, f"{name}: codes differ by {err:.2e} of their scale on {OTHER}"
    if basis.has_decoder:
        with torch.no_grad():
            rec_cpu = basis.decode(codes_cpu)
            rec_other = basis.to(OTHER).decode(codes_cpu.to(OTHER)).cpu()
        assert torch.allclose(rec_cpu, rec_other, rtol=1e-4, atol=1e-4 * float(rec_cpu.abs().max()))


def test_top_examples_agree(tmp_path):
    """The streaming top-k on the GPU keeps the same samples, bands included."""
    from benchmark.topk import top_examples
    from methods.rotation import RandomRotation

    rng = np.random.default_rng(0)
    # integer-valued activations: codes of a neurons basis have no near-ties, only exact ones
    acts = rng.integers(0, 50, size=(5000, 24)).astype(np.float32)
    store = ActivationStore(acts, name="toy/integers")
    basis = make_method("neurons").fit(store, seed=0, device="cpu")
    cpu = top_examples(basis, store, 40, (0.0, 0.25), device="cpu", seed=3)
    other = top_examples(basis, store, 40, (0.0, 0.25), device=OTHER, seed=3)
    for q in cpu:
        np.testing.assert_array_equal(cpu[q].top_idx, other[q].top_idx)
        np.testing.assert_array_equal(cpu[q].bottom_idx, other[q].bottom_idx)
        np.testing.assert_array_equal(cpu[q].top_val, other[q].top_val)
    # a continuous basis: values agree to float32 rounding
    rot = RandomRotation().fit(store, seed=0, device="cpu")
    a = top_examples(rot, store, 40, device="cpu")[0.0]
    b = top_examples(rot, store, 40, device=OTHER)[0.0]
    np.testing.assert_allclose(a.top_val, b.top_val, rtol=1e-5, atol=1e-4)


GRID = """
name = "equivalence"
seeds = [0]
chance_sets = 4
device = "{device}"

[[tasks]]
model = "shapes_cnn_untrained"
model_params = {{ width = 8 }}
layers = ["conv2"]
dataset = "shapes"
dataset_params = {{ n = 900, size = 32 }}

[[tasks]]
model = "bytes_1l_untrained"
layers = ["mlp"]
dataset = "textmix"
max_samples = 40

[[methods]]
name = "neurons"

[[methods]]
name = "pca"
params = {{ n_components = 6 }}

[[metrics]]
name = "label_consistency"
sweep = {{ protocol = ["consistency", "psychophysics"] }}

[[metrics]]
name = "color_consistency"
sweep = {{ protocol = ["consistency", "psychophysics"] }}

[[metrics]]
name = "perceptual_consistency"
params = {{ model = "shapes_cnn_untrained", layers = ["conv1", "conv3"], device = "{device}" }}
sweep = {{ protocol = ["consistency", "psychophysics"] }}

[[metrics]]
name = "lpips_consistency"
params = {{ weights = "{lpips}", device = "{device}" }}
sweep = {{ protocol = ["consistency", "psychophysics"] }}

[[metrics]]
name = "caption_compressibility"

[[metrics]]
name = "token_consistency"

[[metrics]]
name = "ngram_consistency"
sweep = {{ protocol = ["consistency", "psychophysics"] }}
"""


@pytest.mark.slow
def test_every_metric_scores_alike(tmp_path):
    """The whole harness on both devices: activations, fits of the closed-form methods, top-k,
    every built-in metric and its chance level (LPIPS with a stand-in AlexNet of the right shape).

    The untrained CNN's activations go through cuDNN convolutions, which PyTorch runs in TF32 by
    default; the harness turns TF32 off, so stores agree to float32 rounding and the top sets agree.
    """
    from safetensors.torch import save_file

    from benchmark.cache import Cache
    from benchmark.config import parse_config
    from benchmark.runner import Runner
    from metrics.lpips import alexnet_features

    pytest.importorskip("lpips")  # ships the LPIPS v0.1 linear weights
    torch.manual_seed(0)
    lpips = tmp_path / "alexnet-stand-in.safetensors"  # random AlexNet of the right shape
    save_file({f"features.{k}": v.contiguous() for k, v in alexnet_features().state_dict().items()}, str(lpips))
    frames = {}
    for device in ("cpu", OTHER):
        cfg = parse_config(GRID.format(device=device, lpips=lpips), "equivalence.toml")
        res = Runner(cfg, Cache(tmp_path / f"cache-{device}"), results_dir=tmp_path / f"r-{device}", progress=False).run()
        frames[device] = res.scores.sort_values(["model", "method", "metric", "direction"]).reset_index(drop=True)
    a, b = frames["cpu"], frames[OTHER]
    assert len(a) == len(b) and set(a["metric"].astype(str)) == set(b["metric"].astype(str))
    assert (a["status"].astype(str) == b["status"].astype(str)).all()
    ok = a["status"].astype(str) == "ok"
    assert ok.sum() > 0
    for metric in sorted(set(a["metric"].astype(str))):
        rows = ok & (a["metric"].astype(str) == metric)
        np.testing.assert_allclose(
            a.loc[rows, "value"].to_numpy(float), b.loc[rows, "value"].to_numpy(float), atol=1e-5, err_msg=metric
        )
        np.testing.assert_allclose(
            a.loc[rows, "chance_mean"].to_numpy(float),
            b.loc[rows, "chance_mean"].to_numpy(float),
            atol=1e-5,
            err_msg=metric,
        )
