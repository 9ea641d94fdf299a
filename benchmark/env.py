"""The machine a run used: device resolution and the environment record saved with each run."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from benchmark.errors import UserError

_PACKAGES = (
    "interpbench",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "safetensors",
    "transformers",
    "lpips",
)


def resolve_device(name: str):
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` without a GPU is an error.

    On CUDA, TF32 is turned off for convolutions and matrix products: cuDNN convolutions run in
    TF32 by default (10-bit mantissa), which moves a CNN's activations by ~1e-3 relative and so
    reorders near-tied top stimuli; with it off, GPU stores agree with CPU ones to float32
    rounding (tests/test_cuda.py).
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA GPU is available (use device = 'auto' or 'cpu')")
    if name.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(name)


def environment(device) -> dict:
    """Versions, threads and device of this process, for the run record."""
    import torch

    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
