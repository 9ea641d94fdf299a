"""``file``: a basis trained elsewhere, loaded from local files instead of fitted.

Formats (``format = "auto"`` tells them apart by their files and keys):

* ``saelens``: a folder with ``cfg.json`` + ``sae_weights.safetensors`` (``W_enc [d, k]``,
  ``b_enc [k]``, ``W_dec [k, d]``, ``b_dec [d]``, ``threshold [k]`` for JumpReLU), in the
  current layout (``architecture`` = standard / topk / jumprelu, ``k``,
  ``apply_b_dec_to_input``, ``rescale_acts_by_decoder_norm``) and the pre-6.0 one
  (``activation_fn_str`` / ``activation_fn`` with ``activation_fn_kwargs.k``).
* ``dictionary_learning``: ``ae.pt`` (a ``torch.save``-d state dict, read with
  ``weights_only=True``) of ``AutoEncoder``, ``AutoEncoderNew``, ``AutoEncoderTopK``,
  ``BatchTopKSAE``, ``MatryoshkaBatchTopKSAE`` or ``JumpReluAutoEncoder``; the class comes from
  the ``config.json`` beside it (``trainer.dict_class``) or from the state dict's keys.
* ``overcomplete``: a state dict of an ``SAE`` / ``TopKSAE`` / ``JumpSAE`` with the default
  ``"linear"`` encoder (a BatchNorm after it is folded in). A TopK state dict does not say
  it is one: pass ``activation = "topk"`` and ``topk``.
* ``npy`` / ``safetensors``: a plain direction matrix ``[k, d]`` (a safetensors file with one
  tensor, or pick one with ``key``). Directions only: codes are projections onto the unit
  rows; the decoder is the pseudo-inverse (least-squares reconstruction from the codes), or
  none with ``decoder = "none"``; signs are fixed to positive skew on the fit split.
* ``interpbench``: a basis saved by :meth:`methods.base.Basis.save`.

Every SAE becomes a :class:`methods.sae.SAEBasis` whose codes equal the original package's
encoder output (biases that a package adds elsewhere are folded into ``b_enc``). Nothing is
fitted; the fit split only checks that the basis has the layer's width ``d``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.activations import ActivationStore
from benchmark.errors import UserError
from methods.base import Basis, LinearBasis, Method, orient_by_skew, unit_rows
from methods.sae import SAEBasis

FORMATS = ("auto", "saelens", "dictionary_learning", "overcomplete", "npy", "safetensors", "interpbench")
SAE_ACTIVATIONS = ("relu", "topk", "jumprelu")
SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_LAYOUT = "SAELens layout: W_enc [d, k], b_enc [k], W_dec [k, d], b_dec [d], threshold [k]"


@dataclass(frozen=True)
class FileBasis(Method):
    """A basis trained elsewhere, loaded from files (SAELens, dictionary_learning, overcomplete, npy, safetensors).

    Parameters:
        path: the folder or file (``~`` is expanded; relative paths are from the working directory).
        format: one of :data:`FORMATS`; ``"auto"`` detects it.
        activation: override the SAE activation (``relu``, ``topk``, ``jumprelu``) where the
            file does not say it (an overcomplete ``TopKSAE``; a dictionary_learning BatchTopK
            state dict without its ``config.json``).
        topk: active latents per sample for ``activation = "topk"`` when the file lacks it.
        key: the tensor to read from a plain safetensors file holding several.
        decoder: for plain direction matrices: ``"pinv"`` (least-squares) or ``"none"``.
        orient: for plain direction matrices: flip signs so codes have positive skew.
    """

    path: str
    format: str = "auto"
    activation: str | None = None
    topk: int | None = None
    key: str | None = None
    decoder: str = "pinv"
    orient: bool = True
    version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError("method 'file': path is empty; give the folder or file of the basis")
        if self.format not in FORMATS:
            raise UserError(f"method 'file': unknown format {self.format!r} (valid: {', '.join(FORMATS)})")
        if self.activation is not None and self.activation not in SAE_ACTIVATIONS:
            raise UserError(
                f"method 'file': unknown activation {self.activation!r} (valid: {', '.join(SAE_ACTIVATIONS)})"
            )
        if self.decoder not in ("pinv", "none"):
            raise UserError(f"method 'file': decoder must be 'pinv' or 'none', got {self.decoder!r}")
        if not Path(self.path).expanduser().exists():
            raise UserError(f"method 'file': {self.path}: no such file or folder")

    def params(self) -> dict[str, Any]:
        """The parameters plus a digest of the files, so a changed file is never read from the cache."""
        return {**dataclasses.asdict(self), "content": content_digest(Path(self.path).expanduser())}

    def fit(
        self, acts: ActivationStore | Tensor | np.ndarray, *, seed: int, device: str | torch.device = "cpu"
    ) -> Basis:
        """Load the basis (no fitting); check it has the width ``d`` of ``acts [n, d]``."""
        store = ActivationStore.wrap(acts)
        basis = load_basis(
            self.path,
            self.format,
            d=store.d,
            activation=self.activation,
            topk=self.topk,
            key=self.key,
            decoder=self.decoder,
        )
        if isinstance(basis, LinearBasis) and basis.kind == "linear" and self.orient:
            x = store.load(max_rows=50_000, seed=seed)
            sign = orient_by_skew(basis.directions, basis.encode(x))
            basis = dataclasses.replace(
                basis,
                directions=basis.directions * sign[:, None],
                encoder=basis.encoder * sign[:, None],
                decoder=None if basis.decoder is None else basis.decoder * sign[:, None],
            )
        return basis


_DIGESTS: dict[tuple, str] = {}


def content_digest(path: Path) -> str:
    """A digest of the file, or of every file under the folder (names and bytes).

    Remembered per (path, size, modification time) of every file, so a large SAE is hashed once
    per process, not once per grid cell.
    """
    from benchmark.cache import file_digest, hash_key

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = (str(path.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _DIGESTS:
        if path.is_file():
            _DIGESTS[stamp] = file_digest(path)
        else:
            _DIGESTS[stamp] = hash_key([[str(p.relative_to(path)), file_digest(p)] for p in files])
    return _DIGESTS[stamp]


# ----------------------------------------------------------------------------------------
def load_basis(
    path: str | Path,
    format: str = "auto",
    *,
    d: int | None = None,
    activation: str | None = None,
    topk: int | None = None,
    key: str | None = None,
    decoder: str = "pinv",
) -> Basis:
    """Read a basis from ``path`` in ``format``; with ``d``, check it fits a layer of width ``d``.

    Returns an :class:`~methods.sae.SAEBasis` for SAEs, a :class:`~methods.base.LinearBasis` for
    plain direction matrices, or whatever kind an ``interpbench`` folder holds.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    fmt, target = detect_format(path) if format == "auto" else (format, path)
    if fmt == "saelens":
        folder = target if target.is_dir() else target.parent
        basis = load_saelens(folder, d=d)
    elif fmt in ("dictionary_learning", "overcomplete"):
        file = target / "ae.pt" if target.is_dir() else target
        state = read_state_dict(file)
        if fmt == "dictionary_learning":
            basis = dictionary_learning_basis(state, file, d=d, activation=activation, topk=topk)
        else:
            basis = overcomplete_basis(state, file, d=d, activation=activation, topk=topk)
    elif fmt in ("npy", "safetensors"):
        basis = load_directions(target, d=d, key=key, decoder=decoder)
    elif fmt == "interpbench":
        basis = Basis.load(target)
        if d is not None and basis.d != d:
            raise UserError(f"{target}: the basis has d = {basis.d} but the layer has d = {d}: expected [k, {d}]")
    else:
        raise UserError(f"{path}: unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    if isinstance(basis, SAEBasis) and activation is not None and basis.activation != activation:
        basis = _override_activation(basis, activation, topk, path)
    return basis


def detect_format(path: Path) -> tuple[str, Path]:
    """``(format, path)`` from the files at ``path``; raises naming what it looked for."""
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if SAELENS_CFG in names or SAELENS_WEIGHTS in names:
            return "saelens", path
        if "ae.pt" in names:
            return "dictionary_learning", path
        if "basis.json" in names and "tensors.safetensors" in names:
            return "interpbench", path
        inside = find_bases(path)
        if inside:
            shown = ", ".join(str(p) for p in inside[:4]) + (", ..." if len(inside) > 4 else "")
            raise UserError(
                f"{path}: holds {len(inside)} basis folders or files ({shown}), not one basis: name one, or score "
                f"them all with sweep = {{ path = [...] }} (methods.file.find_bases lists them)"
            )
        found = ", ".join(sorted(names)[:12]) or "nothing"
        raise UserError(
            f"{path}: not a basis folder: expected SAELens ({SAELENS_CFG} + {SAELENS_WEIGHTS}), "
            f"dictionary_learning (ae.pt [+ config.json]) or interpbench (basis.json + tensors.safetensors); "
            f"found {found}"
        )
    if path.name in (SAELENS_CFG, SAELENS_WEIGHTS):
        return "saelens", path.parent
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "npy", path
    if suffix == ".safetensors":
        return "safetensors", path
    if suffix in (".pt", ".pth", ".bin"):
        state = read_state_dict(path)
        return ("overcomplete" if any(k.startswith("dictionary.") for k in state) else "dictionary_learning"), path
    raise UserError(
        f"{path}: cannot tell its format from the name: expected a folder, .npy, .safetensors or a "
        f"torch state dict (.pt, .pth); or set format (valid: {', '.join(FORMATS[1:])})"
    )


def find_bases(root: str | Path) -> list[str]:
    """Every basis under ``root`` (SAELens / dictionary_learning / interpbench folders, state dicts, npy and
    safetensors files), sorted: the values for ``sweep = { path = [...] }``."""
    root = Path(root).expanduser()
    found: list[str] = []
    for p in sorted(root.rglob("*")):
        if any(str(p).startswith(f + "/") for f in found):
            continue  # inside a basis folder already listed
        if p.is_dir():
            names = {c.name for c in p.iterdir()}
            if SAELENS_CFG in names or "ae.pt" in names or {"basis.json", "tensors.safetensors"} <= names:
                found.append(str(p))
        elif p.suffix.lower() in (".npy", ".safetensors", ".pt", ".pth"):
            found.append(str(p))
    return found


def read_state_dict(file: Path) -> dict[str, Tensor]:
    """A ``torch.save``-d dict of tensors, read with ``weights_only=True`` (never unpickling code)."""
    if not file.is_file():
        raise UserError(f"{file}: no such file (expected a torch state dict saved with torch.save)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"{file}: cannot read it as a state dict with weights_only=True ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); save model.state_dict(), not the model object"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{file}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    return {k: v.detach() for k, v in state.items()}


# -- shape checks ------------------------------------------------------------------------
def _shape_error(file: Path, name: str, found: Tensor, expected: str, layout: str) -> UserError:
    return UserError(f"{file}: {name} has shape {list(found.shape)}, expected {expected}; {layout}")


def _check_sae(
    file: Path,
    d: int | None,
    layout: str,
    W_enc: Tensor,
    b_enc: Tensor,
    W_dec: Tensor,
    b_dec: Tensor,
    threshold: Tensor | None = None,
    names: tuple[str, str, str, str] = ("W_enc", "b_enc", "W_dec", "b_dec"),
) -> None:
    """Check ``W_enc [k, d]``, ``b_enc [k]``, ``W_dec [k, d]``, ``b_dec [d]`` (already in SAEBasis layout)."""
    if W_dec.ndim != 2:
        raise _shape_error(file, names[2], W_dec, "a matrix", layout)
    k, d_file = W_dec.shape
    if d is not None and d_file != d:
        hint = " (transposed?)" if W_dec.shape[0] == d else ""
        raise UserError(
            f"{file}: {names[2]} is for d = {d_file} but the layer has d = {d}{hint}: "
            f"expected W_dec [k, {d}] with any k, found {list(W_dec.shape)}; {layout}"
        )
    d = d_file
    for name, t, shape in ((names[0], W_enc, (k, d)), (names[1], b_enc, (k,)), (names[3], b_dec, (d,))):
        if tuple(t.shape) != shape:
            raise _shape_error(file, name, t, f"{list(shape)} (k = {k}, d = {d}) in SAEBasis layout", layout)
    if threshold is not None and tuple(threshold.shape) != (k,):
        raise _shape_error(file, "threshold", threshold, f"[{k}]", layout)


def _sae(
    W_enc: Tensor,
    b_enc: Tensor,
    W_dec: Tensor,
    b_dec: Tensor,
    activation: str,
    topk: int | None = None,
    threshold: Tensor | None = None,
    source: str = "",
) -> SAEBasis:
    f32 = [None if t is None else t.detach().to(torch.float32).contiguous() for t in (W_enc, b_enc, W_dec, b_dec)]
    thr = None if threshold is None else threshold.detach().to(torch.float32).clamp_min(0.0).contiguous()
    basis = SAEBasis(
        W_enc=f32[0], b_enc=f32[1], W_dec=f32[2], b_dec=f32[3], activation=activation, topk=topk, threshold=thr
    )
    basis.stats["source"] = source
    return basis


def _override_activation(basis, activation: str, topk: int | None, path: Path):
    if activation == "topk" and topk is None and basis.topk is None:
        raise UserError(f"{path}: activation 'topk' needs topk (active latents per sample)")
    if activation == "jumprelu" and basis.threshold is None:
        raise UserError(f"{path}: activation 'jumprelu' needs thresholds, and the file has none")
    return dataclasses.replace(basis, activation=activation, topk=topk if topk is not None else basis.topk)


# -- SAELens -----------------------------------------------------------------------------
def load_saelens(folder: Path, *, d: int | None = None):
    """An SAELens SAE folder -> SAEBasis with the same codes as ``SAE.load_from_disk(folder).encode``."""
    from safetensors.torch import load_file

    cfg_path, weights_path = folder / SAELENS_CFG, folder / SAELENS_WEIGHTS
    if not cfg_path.is_file():
        raise UserError(
            f"{folder}: missing {SAELENS_CFG}: an SAELens SAE folder holds {SAELENS_CFG} (architecture, d_in, "
            f"d_sae, activation) beside {SAELENS_WEIGHTS}"
        )
    if not weights_path.is_file():
        raise UserError(f"{folder}: missing {SAELENS_WEIGHTS} beside {SAELENS_CFG}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, OSError) as exc:
        raise UserError(f"{cfg_path}: not valid JSON: {exc}") from None
    state = load_file(str(weights_path))
    missing = [n for n in ("W_enc", "W_dec") if n not in state]
    if missing:
        raise UserError(f"{weights_path}: no {', '.join(missing)} (has {', '.join(sorted(state))}); {SAELENS_LAYOUT}")

    arch = cfg.get("architecture", "standard")
    act_fn = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    fn_kwargs = cfg.get("activation_fn_kwargs") or {}
    norm = cfg.get("normalize_activations", "none")
    if norm in ("constant_norm_rescale", "layer_norm"):
        raise UserError(
            f"{cfg_path}: normalize_activations = {norm!r} rescales each input on its own, which a fixed "
            f"basis cannot express; supported: none, expected_average_only_in (folded at save time)"
        )
    threshold = None
    topk = None
    if arch == "standard" and act_fn not in ("relu", "topk"):
        raise UserError(
            f"{cfg_path}: unknown activation function {act_fn!r} for architecture {arch!r} "
            f"(valid: relu, topk with activation_fn_kwargs.k; or architecture jumprelu with threshold)"
        )
    if arch == "topk" or (arch == "standard" and act_fn == "topk"):
        activation = "topk"
        topk = cfg.get("k", fn_kwargs.get("k"))
        if topk is None:
            raise UserError(f"{cfg_path}: a topk SAE needs k (cfg 'k' or activation_fn_kwargs.k)")
        topk = int(topk)
    elif arch == "standard":
        activation = "relu"
    elif arch in ("jumprelu", "batchtopk", "matryoshka_batchtopk"):
        activation = "jumprelu"
        if "threshold" in state:
            threshold = state["threshold"]
        elif "log_threshold" in state:
            threshold = state["log_threshold"].exp()
        elif "topk_threshold" in state:
            threshold = torch.full_like(state["b_enc"], float(state["topk_threshold"]))
        elif arch != "jumprelu" and cfg.get("k") is not None:
            activation, topk = "topk", int(cfg["k"])
        else:
            raise UserError(f"{weights_path}: a JumpReLU SAE needs 'threshold' [k] (has {', '.join(sorted(state))})")
    else:
        raise UserError(
            f"{cfg_path}: unknown SAE architecture {arch!r} (valid: standard, topk, jumprelu, batchtopk, "
            f"matryoshka_batchtopk); its encoder is not one linear map plus relu / topk / jumprelu"
        )

    W_enc_dk = state["W_enc"].float()
    W_dec = state["W_dec"].float()
    if W_enc_dk.ndim != 2 or W_dec.ndim != 2:
        raise UserError(f"{weights_path}: W_enc and W_dec must be matrices; {SAELENS_LAYOUT}")
    k = W_dec.shape[0]
    b_enc = state.get("b_enc", torch.zeros(k)).float()
    b_dec = state.get("b_dec", torch.zeros(W_dec.shape[1])).float()
    if d is not None and W_enc_dk.shape[0] != d:
        raise UserError(
            f"{weights_path}: W_enc has shape {list(W_enc_dk.shape)} but the layer has d = {d}: expected "
            f"W_enc [{d}, k] and W_dec [k, {d}] (cfg d_in = {cfg.get('d_in')}); {SAELENS_LAYOUT}"
        )
    if tuple(W_enc_dk.shape) != (W_dec.shape[1], k):
        raise _shape_error(weights_path, "W_enc", W_enc_dk, f"[{W_dec.shape[1]}, {k}] to match W_dec", SAELENS_LAYOUT)
    W_enc = W_enc_dk.T.contiguous()
    _check_sae(weights_path, d, SAELENS_LAYOUT, W_enc, b_enc, W_dec, b_dec, threshold)
    if "finetuning_scaling_factor" in state and cfg.get("finetuning_scaling_factor", True):
        W_dec = W_dec * state["finetuning_scaling_factor"].float()[:, None]
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + b_dec @ W_enc_dk
    if activation == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        norms = W_dec.norm(dim=1)
        W_enc, b_enc, W_dec = W_enc * norms[:, None], b_enc * norms, W_dec / norms[:, None]
    return _sae(W_enc, b_enc, W_dec, b_dec, activation, topk, threshold, source=f"saelens:{arch}")


# -- dictionary_learning -----------------------------------------------------------------
DL_LAYOUT = (
    "dictionary_learning layouts: AutoEncoder (encoder.weight [k, d], encoder.bias [k], decoder.weight [d, k], "
    "bias [d]); AutoEncoderTopK / BatchTopKSAE (+ b_dec [d], k, threshold); JumpReluAutoEncoder and "
    "MatryoshkaBatchTopKSAE (W_enc [d, k], b_enc [k], W_dec [k, d], b_dec [d], threshold)"
)
DL_CLASSES = (
    "AutoEncoder",
    "AutoEncoderNew",
    "AutoEncoderTopK",
    "BatchTopKSAE",
    "MatryoshkaBatchTopKSAE",
    "JumpReluAutoEncoder",
)


def _dl_class(state: dict[str, Tensor], file: Path, activation: str | None) -> tuple[str, dict]:
    config_path = file.parent / "config.json"
    trainer: dict = {}
    if config_path.is_file():
        try:
            trainer = json.loads(config_path.read_text()).get("trainer", {}) or {}
        except (ValueError, OSError, AttributeError):
            trainer = {}
    cls = trainer.get("dict_class")
    if cls is None:
        if "r_mag" in state or "gate_bias" in state:
            cls = "GatedAutoEncoder"
        elif "group_sizes" in state:
            cls = "MatryoshkaBatchTopKSAE"
        elif "W_enc" in state:
            cls = "JumpReluAutoEncoder"
        elif "k" in state:
            cls = "BatchTopKSAE" if activation == "jumprelu" else "AutoEncoderTopK"
        elif "decoder.bias" in state:
            cls = "AutoEncoderNew"
        elif "bias" in state and "encoder.weight" in state:
            cls = "AutoEncoder"
        else:
            raise UserError(
                f"{file}: not a dictionary_learning state dict (keys: {', '.join(sorted(state))}); {DL_LAYOUT}"
            )
    if cls not in DL_CLASSES:
        raise UserError(
            f"{file}: dictionary_learning class {cls!r} is not supported (valid: {', '.join(DL_CLASSES)}); "
            f"a gated encoder is not one linear map plus relu / topk / jumprelu"
        )
    return cls, trainer


def dictionary_learning_basis(
    state: dict[str, Tensor],
    file: Path,
    *,
    d: int | None = None,
    activation: str | None = None,
    topk: int | None = None,
):
    """A dictionary_learning state dict -> SAEBasis with the same codes as the class's ``encode``."""
    cls, trainer = _dl_class(state, file, activation)
    need = {
        "AutoEncoder": ("encoder.weight", "encoder.bias", "decoder.weight", "bias"),
        "AutoEncoderNew": ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
        "AutoEncoderTopK": ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"),
        "BatchTopKSAE": ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "threshold"),
        "MatryoshkaBatchTopKSAE": ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"),
        "JumpReluAutoEncoder": ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"),
    }[cls]
    missing = [n for n in need if n not in state]
    if missing:
        raise UserError(
            f"{file}: {cls} state dict lacks {', '.join(missing)} (has {', '.join(sorted(state))}); {DL_LAYOUT}"
        )
    s = {n: state[n].float() for n in need}
    threshold = None
    k_active = None
    if "W_enc" in s:  # nn.Parameter layout: W_enc [d, k]
        if s["W_enc"].ndim != 2:
            raise _shape_error(file, "W_enc", s["W_enc"], "[d, k]", DL_LAYOUT)
        if d is not None and s["W_enc"].shape[0] != d:
            raise UserError(
                f"{file}: W_enc has shape {list(s['W_enc'].shape)} but the layer has d = {d}: expected W_enc "
                f"[{d}, k], W_dec [k, {d}]; {DL_LAYOUT}"
            )
        W_enc_dk, W_dec, b_enc, b_dec = s["W_enc"], s["W_dec"], s["b_enc"], s["b_dec"]
        W_enc = W_enc_dk.T.contiguous()
        _check_sae(file, d, DL_LAYOUT, W_enc, b_enc, W_dec, b_dec)
        if cls == "JumpReluAutoEncoder":  # encode(x) = relu(pre * (pre > thr)), pre = x @ W_enc + b_enc
            b_enc = b_enc + b_dec @ W_enc_dk
            threshold = s["threshold"]
        else:  # relu(pre) * (relu(pre) > threshold), one scalar threshold
            threshold = s["threshold"].reshape(-1)[:1].expand(W_dec.shape[0]).clone()
        activation_out = "jumprelu"
    else:  # nn.Linear layout: encoder.weight [k, d], decoder.weight [d, k]
        W_enc, b_enc, W_dec = s["encoder.weight"], s["encoder.bias"], s["decoder.weight"].T.contiguous()
        if s["decoder.weight"].ndim == 2 and d is not None and s["decoder.weight"].shape[0] != d:
            raise UserError(
                f"{file}: decoder.weight has shape {list(s['decoder.weight'].shape)} but the layer has d = {d}: "
                f"expected decoder.weight [{d}, k], encoder.weight [k, {d}]; {DL_LAYOUT}"
            )
        b_dec = s.get("bias", s.get("b_dec", s.get("decoder.bias")))
        _check_sae(
            file,
            d,
            DL_LAYOUT,
            W_enc,
            b_enc,
            W_dec,
            b_dec,
            names=("encoder.weight", "encoder.bias", "decoder.weight", "bias/b_dec"),
        )
        if cls == "AutoEncoderNew":  # encode(x) = relu(encoder(x)): no b_dec subtracted
            b_enc = b_enc + b_dec @ W_enc.T
        if cls == "AutoEncoderTopK":
            activation_out = "topk"
            k_active = topk or trainer.get("k") or (int(state["k"]) if "k" in state else None)
            if k_active is None:
                raise UserError(f"{file}: AutoEncoderTopK without k: pass topk")
            k_active = int(k_active)
        elif cls == "BatchTopKSAE":
            activation_out = "jumprelu"
            threshold = s["threshold"].reshape(-1)[:1].expand(W_dec.shape[0]).clone()
        else:
            activation_out = "relu"
    return _sae(W_enc, b_enc, W_dec, b_dec, activation_out, k_active, threshold, source=f"dictionary_learning:{cls}")


# -- overcomplete ------------------------------------------------------------------------
OC_LAYOUT = (
    "overcomplete layout (default 'linear' encoder): encoder.final_block.0.weight [k, d], "
    "encoder.final_block.0.bias [k], dictionary._weights [k, d], dictionary.multiplier []; JumpSAE: thresholds [k]"
)


def overcomplete_basis(
    state: dict[str, Tensor],
    file: Path,
    *,
    d: int | None = None,
    activation: str | None = None,
    topk: int | None = None,
):
    """An overcomplete SAE state dict -> SAEBasis with the codes of ``model.eval(); model.encode(x)[1]``."""
    w_key, b_key = "encoder.final_block.0.weight", "encoder.final_block.0.bias"
    if any(k.startswith("encoder.mlp_blocks.") for k in state):
        raise UserError(f"{file}: an overcomplete MLP encoder with hidden blocks is not a linear encoder; {OC_LAYOUT}")
    missing = [n for n in (w_key, "dictionary._weights") if n not in state]
    if missing:
        raise UserError(
            f"{file}: not an overcomplete SAE state dict with a linear encoder: lacks {', '.join(missing)} "
            f"(has {', '.join(sorted(state)[:12])}); {OC_LAYOUT}"
        )
    W = state[w_key].float()
    k = W.shape[0]
    b = state.get(b_key, torch.zeros(k)).float()
    if "encoder.final_block.1.running_mean" in state:  # BatchNorm1d in eval mode: an affine map, folded
        mean = state["encoder.final_block.1.running_mean"].float()
        scale = (
            state["encoder.final_block.1.weight"].float()
            / (state["encoder.final_block.1.running_var"].float() + 1e-5).sqrt()
        )
        W, b = W * scale[:, None], (b - mean) * scale + state["encoder.final_block.1.bias"].float()
    elif any(k.startswith("encoder.final_block.1.") for k in state):
        raise UserError(f"{file}: a LayerNorm after the encoder is not a linear encoder; {OC_LAYOUT}")
    raw = state["dictionary._weights"].float()
    if d is not None and raw.ndim == 2 and raw.shape[1] != d:
        raise UserError(
            f"{file}: dictionary._weights has shape {list(raw.shape)} but the layer has d = {d}: expected "
            f"[k, {d}]; {OC_LAYOUT}"
        )
    multiplier = state.get("dictionary.multiplier", torch.tensor(0.0)).float()
    W_dec = raw / (raw.norm(dim=1, keepdim=True) + 1e-8) * multiplier.exp()  # eval(): l2-normalised dictionary
    b_dec = torch.zeros(raw.shape[1])
    _check_sae(file, d, OC_LAYOUT, W, b, W_dec, b_dec, names=(w_key, b_key, "dictionary._weights", "b_dec"))
    threshold = None
    if "thresholds" in state:
        act, threshold = "jumprelu", state["thresholds"].float().exp()
    elif activation == "topk":
        if topk is None:
            raise UserError(f"{file}: an overcomplete TopKSAE state dict does not store top_k: pass topk")
        act = "topk"
    else:
        act = "relu"
    return _sae(W, b, W_dec, b_dec, act, topk if act == "topk" else None, threshold, source="overcomplete")


# -- plain direction matrices ------------------------------------------------------------
def load_directions(file: Path, *, d: int | None = None, key: str | None = None, decoder: str = "pinv") -> LinearBasis:
    """A ``[k, d]`` matrix from ``.npy`` / ``.safetensors`` -> LinearBasis (codes = projections)."""
    if file.suffix.lower() == ".npy":
        try:
            matrix = torch.from_numpy(np.load(file, allow_pickle=False).astype(np.float32))
        except ValueError as exc:
            raise UserError(f"{file}: not a plain numeric .npy array: {exc}") from None
    else:
        from safetensors.torch import load_file

        tensors = load_file(str(file))
        if key is not None:
            if key not in tensors:
                raise UserError(f"{file}: no tensor {key!r} (has {', '.join(sorted(tensors))})")
            matrix = tensors[key]
        elif {"W_enc", "W_dec"} <= set(tensors):
            raise UserError(
                f"{file}: holds SAE weights (W_enc, W_dec) but no {SAELENS_CFG} beside it: an SAELens SAE "
                f"folder needs {SAELENS_CFG} (architecture, activation); or set key to read one matrix as directions"
            )
        elif len(tensors) == 1:
            matrix = next(iter(tensors.values()))
        elif "directions" in tensors:
            matrix = tensors["directions"]
        else:
            raise UserError(f"{file}: holds several tensors ({', '.join(sorted(tensors))}): set key to pick one")
        matrix = matrix.float()
    if matrix.ndim != 2:
        raise UserError(f"{file}: expected a direction matrix [k, d], found shape {list(matrix.shape)}")
    if d is not None and matrix.shape[1] != d:
        hint = "; transpose it (rows are directions)" if matrix.shape[0] == d else ""
        raise UserError(
            f"{file}: directions have shape {list(matrix.shape)} but the layer has d = {d}: expected [k, {d}]{hint}"
        )
    if not torch.isfinite(matrix).all() or (matrix.norm(dim=1) == 0).any():
        raise UserError(f"{file}: the direction matrix has NaN, Inf or all-zero rows")
    directions = unit_rows(matrix)
    dec = torch.linalg.pinv(directions.T.double()).float().contiguous() if decoder == "pinv" else None
    basis = LinearBasis(directions=directions, encoder=directions.clone(), decoder=dec)
    basis.stats["source"] = f"directions:{file.name}"
    return basis
