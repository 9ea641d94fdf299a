"""Where a run's numbers came from: the run's ``provenance.json``.

What a stranger needs to rerun a published run and check that nothing but chance differs::

    interpbench   version, source digest (benchmark.results.source_digest), git commit and
                  whether the tree was dirty (None: not a git checkout, e.g. pip-installed)
    constraints   sha256 of constraints.txt and the installed versions that differ from its pins
    datasets      per stimulus set: a content hash of what was loaded, the stimulus count and
                  the count per label
    models        per model: its weights hash and what its training recorded of its quality
    tasks         per model/layer/dataset: sample counts and a hash of the fit/probe split
    seeds         the run's seeds and its number of random sets per chance level

Every hash here is of content (bytes of images, texts, weights, index arrays), never of paths
or file times, so the same inputs give the same record on any machine.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cache import hash_key

#: the checkout (or installed copy) interpbench runs from: the folder holding ``benchmark/``
ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = "constraints.txt"
_ROWS = 1024  # images hashed per read


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: Path = ROOT) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool, "changed_files": n}`` of the git checkout whose top is
    ``root``; None when ``root`` is not the top of a checkout (a pip-installed copy, even one in a
    virtualenv inside another repository) or git is not there. Dirty: a tracked file differs from
    the commit, or an untracked file is not ignored."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != Path(root).resolve():
        return None
    commit, status = _git(root, "rev-parse", "HEAD"), _git(root, "status", "--porcelain")
    if commit is None or status is None:
        return None
    changed = [line for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed_files": len(changed)}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints_state(path: Path) -> dict[str, Any] | None:
    """``{"file", "sha256", "pins", "mismatched": {name: {"pinned", "installed"}}}`` of the
    constraints file ``path``, None when there is none (an installed copy ships without it).
    A pinned package that is not installed is not a mismatch (the file pins every extra)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    pins = {}
    for line in data.decode("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (s.strip() for s in line.split("==", 1))
            pins[_canonical(name)] = version
    mismatched = {}
    for name, version in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed != version:
            mismatched[name] = {"pinned": version, "installed": installed}
    return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "pins": len(pins), "mismatched": mismatched}


def _images_uint8(stimuli, idx: np.ndarray) -> np.ndarray | None:
    """Images ``[m, C, H, W]`` uint8 of ``idx`` as loaded, through subsets; None when the set has none."""
    from benchmark.data.base import Subset

    if isinstance(stimuli, Subset):
        return _images_uint8(stimuli.parent, stimuli.indices[idx])
    fn = getattr(stimuli, "images_uint8", None)
    return None if fn is None else fn(idx)


def stimuli_hash(stimuli) -> tuple[str, str]:
    """``(hash, what was hashed)`` of a stimulus set's content (hex; 32 digits, 16 for text corpora).

    Text corpora: their own content hash (every document's text and label). Image sets: the
    loaded uint8 pixels and labels (what the model reads, after resizing and stimulus hygiene).
    A subset (``max_samples``): its parent's hash and its indices. Other sets: their
    ``identity()`` (the JSON that fixes their content in cache keys).
    """
    from benchmark.data.base import Subset

    content = getattr(stimuli, "content_hash", None)
    if isinstance(content, str):
        return content, "texts+labels"
    n = len(stimuli)
    if isinstance(stimuli, Subset) and _images_uint8(stimuli, np.arange(min(n, 1))) is None:
        parent, what = stimuli_hash(stimuli.parent)
        return hashlib.blake2b(parent.encode() + stimuli.indices.tobytes(), digest_size=16).hexdigest(), what + "+subset"
    if _images_uint8(stimuli, np.arange(min(n, 1))) is not None:
        h = hashlib.blake2b(digest_size=16)
        for start in range(0, n, _ROWS):
            h.update(np.ascontiguousarray(_images_uint8(stimuli, np.arange(start, min(n, start + _ROWS)))).tobytes())
        what = "images"
        if "labels" in stimuli.provides:
            h.update(np.asarray(stimuli.labels(np.arange(n)), dtype=np.int64).tobytes())
            what += "+labels"
        return h.hexdigest(), what
    return hash_key(stimuli.identity())[:32], "identity"


def dataset_record(stimuli) -> dict[str, Any]:
    """``{"hash", "hash_of", "n_stimuli", "label_counts"}`` of one stimulus set."""
    digest, what = stimuli_hash(stimuli)
    out: dict[str, Any] = {"hash": digest, "hash_of": what, "n_stimuli": len(stimuli)}
    if "labels" in stimuli.provides and len(stimuli):
        counts = np.bincount(np.asarray(stimuli.labels(np.arange(len(stimuli))), dtype=np.int64))
        names = list(stimuli.label_names) or [str(i) for i in range(len(counts))]
        out["label_counts"] = {str(names[i]): int(c) for i, c in enumerate(counts) if c}
    return out


def model_quality(model) -> dict[str, float]:
    """What a trained model recorded of its quality: held-out accuracy (the shapes CNNs), bits per
    byte (the byte transformer, with its unigram and bigram baselines); ``{}`` for a model not
    trained here."""
    out: dict[str, float] = {}
    acc = getattr(model, "heldout_accuracy", None)
    if acc is not None:
        out["heldout_accuracy"] = round(float(acc), 6)
    for key, value in sorted((getattr(model, "training_report", None) or {}).items()):
        if isinstance(value, int | float) and ("bpb" in key or "accuracy" in key):
            out[key] = round(float(value), 6)
    return out


def model_record(model) -> dict[str, Any]:
    """``{"name", "weights", "quality"}``: the adapter's name, weights hash and quality."""
    identity = model.identity()
    return {"name": identity.get("name"), "weights": identity.get("weights"), "quality": model_quality(model)}


def _label(name: str, params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if v is not None}
    return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(shown.items()))})" if shown else name


def split_hash(fit_idx: np.ndarray, probe_idx: np.ndarray) -> str:
    """A hash (16 hex digits) of the fit and probe index arrays."""
    h = hashlib.sha256(np.asarray(fit_idx, dtype=np.int64).tobytes() + b"|")
    h.update(np.asarray(probe_idx, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def run_provenance(runner, tasks: Iterable) -> dict[str, Any]:
    """The provenance record of a run of ``runner`` (a :class:`benchmark.runner.Runner`) over
    ``tasks`` (those that ran)."""
    from benchmark.results import source_digest

    try:
        version = metadata.version("interpbench")
    except metadata.PackageNotFoundError:
        version = None
    datasets: dict[str, Any] = {}
    models: dict[str, Any] = {}
    task_records: dict[str, Any] = {}
    for task in tasks:
        spec = task.spec
        model, samples, fit_idx, probe_idx = runner._task_objects(task)
        dparams = {**spec.dataset_params, "max_samples": spec.max_samples}
        dlabel, mlabel = _label(spec.dataset, dparams), _label(spec.model, dict(spec.model_params))
        if dlabel not in datasets:
            datasets[dlabel] = dataset_record(getattr(samples, "documents", samples))
        if mlabel not in models:
            models[mlabel] = model_record(model)
        task_records[task.label] = {
            "dataset": dlabel,
            "model": mlabel,
            "n_samples": len(samples),
            "n_fit": len(fit_idx),
            "n_probe": len(probe_idx),
            "split_seed": spec.split_seed,
            "split": split_hash(fit_idx, probe_idx),
        }
    return {
        "interpbench": {"version": version, "source_digest": source_digest(), "git": git_state()},
        "constraints": constraints_state(ROOT / CONSTRAINTS),
        "datasets": datasets,
        "models": models,
        "tasks": task_records,
        "seeds": list(runner.config.seeds),
        "chance_sets": runner.config.chance_sets,
    }
