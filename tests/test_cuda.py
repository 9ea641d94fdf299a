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
* iterative bases (``ica``, ``nmf``, ``sparse_coding``, ``sae_l1``, ``sae_topk``): rounding
  differences grow over iterations, so the two fits are compared as solutions, not bit
  patterns: on a planted sparse toy, matched directions (one-to-one, by ``|cos|``) agree on
  average to 0.97 and FVU to 0.02 (absolute); both recover the planted features alike (0.03).
  On the CPU alone, a 1e-6 relative perturbation of the data leaves these fits at matched
  ``|cos|`` 1.0000, so 0.97 leaves room for GPU rounding and none for a different solution.
* ``kmeans`` is chaotic: the same 1e-6 perturbation on the CPU alone moves a reassignment
  cascade (matched ``|cos|`` 0.90 on average, one centroid at 0.24; FVU 0.476 against 0.482), and
  on an H200 the GPU fit differed from the CPU fit in the same way. Its two fits are compared
  by quality: FVU within 0.02 and recovery of the planted features within 0.03, directions
  matched to 0.8 on average.
* encode of one fitted basis: codes agree to 1e-4 of their scale (linear and k-means codes),
  1e-3 for the iterative sparse codes (FISTA stopping on a tolerance).
* top-k: identical indices on codes without near-ties.
* metric scores on identical top examples: 1e-5 absolute (float32 features summed in float64).
* the whole harness: stores agree to float32 rounding, but a stimulus whose activation ties
  its neighbour's to ~1e-6 may swap across the edge of a top set (or a psychophysics reference
  rank), which moves that direction's score. So per cell, at least 80% of the directions score
  the same to 1e-5, and the cell medians agree to 0.01 (1% of the value for larger scales).
"""

from __future__ import annotations

import dataclasses
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
        least = 0.8 if name == "kmeans" else 0.97
        assert cos.mean() > least, f"{name}: matched directions agree to {cos.mean():.4f} on average"
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


def _vision_examples(n_directions: int = 12):
    """Shapes stimuli and their top examples (both bands, 200 per side) for codes that read
    planted factors, ranked once on the CPU: ``(stimuli, examples)``."""
    from benchmark.data.shapes import Shapes
    from benchmark.topk import top_examples
    from metrics.base import TopExamples

    stimuli = Shapes(n=1800, size=32, seed=3)  # q=0.25 band > 4 T (R + 1) = 800 samples
    rng = np.random.default_rng(0)
    images = stimuli.images(np.arange(len(stimuli)))  # [N, 3, h, w]
    mean_rgb = images.mean(dim=(2, 3)).numpy()  # [N, 3]
    codes = mean_rgb @ rng.standard_normal((3, n_directions)) + 0.05 * rng.standard_normal((len(stimuli), n_directions))
    store = ActivationStore(codes.astype(np.float32), name="shapes/planted")
    basis = make_method("neurons").fit(store, seed=0, device="cpu")
    return stimuli, TopExamples(stimuli, top_examples(basis, store, 200, (0.0, 0.25), device="cpu"))


@pytest.mark.parametrize(
    "name", ["label_consistency", "color_consistency", "perceptual_consistency", "lpips_consistency"]
)
@pytest.mark.parametrize("protocol", ["consistency", "psychophysics"])
def test_vision_metric_scores_agree(name, protocol, tmp_path):
    """One set of top examples, scored with the metric on the CPU and on ``OTHER``."""
    from benchmark.registry import METRICS
    from metrics.features import FEATURES
    from metrics.perceptual import _LAYERS

    params = {"protocol": protocol}
    if name == "perceptual_consistency":
        params["model"] = "shapes_cnn_untrained"
    if name == "lpips_consistency":
        params["weights"] = str(_stand_in_alexnet(tmp_path))
    cls = METRICS.get(name)
    _, examples = _vision_examples()
    scores = {}
    for device in (OTHER, "cpu"):  # the CPU second: a network left on the GPU must not leak into it
        FEATURES.clear()
        _LAYERS.clear()
        extra = {"device": device} if "device" in {f.name for f in dataclasses.fields(cls)} else {}
        scores[device] = cls(**params, **extra).score_all(examples)
    for suffix, values in scores["cpu"].items():
        assert np.isfinite(values).all()
        np.testing.assert_allclose(values, scores[OTHER][suffix], atol=1e-5, err_msg=f"{name} {suffix}")


def _stand_in_alexnet(directory) -> os.PathLike:
    """A random AlexNet trunk in torchvision's layout (the LPIPS linear weights come from the
    lpips package, which the test needs)."""
    from safetensors.torch import save_file

    from metrics.lpips import alexnet_features

    pytest.importorskip("lpips")
    path = directory / "alexnet-stand-in.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_file({f"features.{k}": v.contiguous() for k, v in alexnet_features().state_dict().items()}, str(path))
    return path


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
def test_the_harness_agrees(tmp_path):
    """The whole harness on both devices: activations, fits of the closed-form methods, top-k,
    every built-in metric and its chance level (LPIPS with a stand-in AlexNet of the right shape).
    TF32 is off on CUDA (:func:`benchmark.env.resolve_device`), so stores agree to float32
    rounding; near-ties may still swap at the edge of a top set (see the module docstring)."""
    from benchmark.cache import Cache
    from benchmark.config import parse_config
    from benchmark.runner import Runner

    lpips = _stand_in_alexnet(tmp_path)
    frames, fits = {}, {}
    for device in ("cpu", OTHER):
        cfg = parse_config(GRID.format(device=device, lpips=lpips), "equivalence.toml")
        res = Runner(cfg, Cache(tmp_path / f"cache-{device}"), results_dir=tmp_path / f"r-{device}", progress=False).run()
        keys = ["model", "method", "metric", "direction"]
        frames[device] = res.scores.astype({k: str for k in keys[:3]}).sort_values(keys).reset_index(drop=True)
        fits[device] = res.fits.astype({"model": str, "method": str}).sort_values(["model", "method"])
    a, b = frames["cpu"], frames[OTHER]
    assert len(a) == len(b), (len(a), len(b))
    assert set(a["metric"]) == set(b["metric"])
    assert (a["status"].astype(str).to_numpy() == b["status"].astype(str).to_numpy()).all()
    np.testing.assert_allclose(fits["cpu"]["fvu"].to_numpy(float), fits[OTHER]["fvu"].to_numpy(float), atol=1e-4)
    ok = a["status"].astype(str) == "ok"
    assert ok.sum() > 0
    for (model, method, metric), rows in a[ok].groupby(["model", "method", "metric"]).groups.items():
        x, y = a.loc[rows, "value"].to_numpy(float), b.loc[rows, "value"].to_numpy(float)
        where = f"{model} {method} {metric}"
        same = np.isclose(x, y, atol=1e-5, rtol=0)
        assert same.mean() >= 0.8, f"{where}: {same.mean():.0%} of directions score alike"
        assert abs(np.median(x) - np.median(y)) <= max(0.01, 0.01 * abs(np.median(x))), where
        np.testing.assert_allclose(
            a.loc[rows, "chance_mean"].to_numpy(float), b.loc[rows, "chance_mean"].to_numpy(float), atol=1e-5, err_msg=where
        )
