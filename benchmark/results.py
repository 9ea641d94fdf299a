"""The tidy results schema and its Parquet I/O.

``scores``: one row per (task, method, params, seed, metric, direction)::

    schema_version, run_id, model, layer, dataset, modality, method, method_params (JSON),
    n_directions, seed, metric, higher_is_better, direction, value, chance_mean,
    chance_std, status

``metric`` is the column name a reader sees: the metric's name, its settings that differ
from the defaults, and the protocol (e.g. ``label_consistency[psychophysics]``).
``status`` is ``"ok"``, ``"skipped: <reason>"`` (the metric does not apply: ``value`` is NaN,
never 0) or ``"undetermined"`` (the metric scored, but this direction's top set is decided by
tie-breaking, not by values: a dead latent, a sparse code active on fewer samples than the
metric reads; ``value`` is NaN, the chance columns are kept).

``fits``: one row per (task, method, params, seed) with the basis statistics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError

SCHEMA_VERSION = 1
#: the ``status`` of a direction whose top set is decided by ties (it has no concept to score)
UNDETERMINED = "undetermined"

SCORE_COLUMNS = [
    "schema_version",
    "run_id",
    "model",
    "layer",
    "dataset",
    "modality",
    "method",
    "method_params",
    "n_directions",
    "seed",
    "metric",
    "higher_is_better",
    "direction",
    "value",
    "chance_mean",
    "chance_std",
    "status",
]
FIT_COLUMNS = [
    "schema_version",
    "run_id",
    "model",
    "layer",
    "dataset",
    "modality",
    "method",
    "method_params",
    "n_directions",
    "seed",
    "fvu",
    "explained_variance",
    "l0",
    "dead_fraction",
    "fit_seconds",
    "n_fit",
    "n_probe",
    "extra",
]
TASK_KEYS = ["model", "layer", "dataset"]
FIT_KEYS = [*TASK_KEYS, "method", "method_params", "seed"]


def params_json(params: dict) -> str:
    """Canonical JSON of method parameters (sorted keys) used as a key column."""
    return json.dumps(params, sort_keys=True, default=str)


def method_label(method: str, params_json_str: str) -> str:
    """Human label: ``sae_topk(k=8, expansion=4.0)``, just ``pca`` when no parameter is set."""
    params = {k: v for k, v in json.loads(params_json_str).items() if v is not None}
    if not params:
        return method
    return f"{method}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def categorical_strings(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its text columns as ordered categoricals (categories sorted, so rows sort,
    and ``min``/``max`` compare, as the text does).

    A run's scores repeat a few dozen labels over millions of rows; as categoricals the
    filters, group-bys and sorts of the leaderboards and report work on integer codes (the
    report of the default run: 56 s -> 22 s), and Parquet stores them as dictionaries.
    """
    out = {}
    for c in df.columns:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_string_dtype(col):
            continue
        codes, labels = pd.factorize(col)  # hash pass in C; sorting only the few labels
        labels = np.asarray(labels, dtype=object)
        order = np.argsort(labels)
        rank = np.empty(len(order), dtype=codes.dtype)
        rank[order] = np.arange(len(order))
        codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
        out[c] = pd.Categorical.from_codes(codes, categories=labels[order], ordered=True)
    return df.assign(**out) if out else df


def write_tables(run_dir: Path, scores: pd.DataFrame, fits: pd.DataFrame) -> None:
    """Write ``scores.parquet`` and ``fits.parquet`` (column order fixed, rows sorted)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    scores = categorical_strings(scores[SCORE_COLUMNS]).sort_values([*FIT_KEYS, "metric", "direction"], kind="stable").reset_index(drop=True)
    fits = fits[FIT_COLUMNS].sort_values(FIT_KEYS, kind="stable").reset_index(drop=True)
    scores.to_parquet(run_dir / "scores.parquet", index=False)
    fits.to_parquet(run_dir / "fits.parquet", index=False)


def read_tables(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a run's ``(scores, fits)``, text columns as categoricals; refuses tables of another
    schema version."""
    run_dir = Path(run_dir)
    paths = [run_dir / "scores.parquet", run_dir / "fits.parquet"]
    for p in paths:
        if not p.exists():
            raise UserError(f"{run_dir}: no {p.name}; is this a run directory (results/runs/<run_id>)?")
    scores, fits = (categorical_strings(pd.read_parquet(p)) for p in paths)
    for name, df in (("scores", scores), ("fits", fits)):
        versions = set(df["schema_version"].unique()) if "schema_version" in df else {None}
        if versions != {SCHEMA_VERSION} and len(df):
            raise UserError(
                f"{run_dir}/{name}.parquet has schema_version {sorted(map(str, versions))}; this interpbench reads "
                f"version {SCHEMA_VERSION}: re-run `interpbench run` with the run's config.json to regenerate it"
            )
    return scores, fits


# -- outputs made from a run --------------------------------------------------------------------
RUN_INPUTS = ("scores.parquet", "fits.parquet", "config.json", "environment.json", "skipped_tasks.json", "datasets.json",
              "provenance.json")  # fmt: skip
STAMP = ".tables.sha256"


def source_digest() -> str:
    """Content hash of interpbench's own code and templates (``benchmark/``): outputs drawn by
    other code are drawn again."""
    import hashlib

    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".html", ".css", ".js") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def run_digest(run_dir: str | Path, *extra: str, folders: Iterable[str] = ()) -> str:
    """Content hash of what the outputs of ``run_dir`` are made from: the bytes of its tables and
    JSON files (the Parquet files are byte-for-byte the same for the same results), of the files
    under its subfolders ``folders`` (e.g. ``galleries``), interpbench's source and ``extra``
    (e.g. the output's kind)."""
    import hashlib

    run_dir = Path(run_dir)
    h = hashlib.sha256(source_digest().encode())
    files = [run_dir / name for name in RUN_INPUTS]
    files += sorted(p for f in folders for p in (run_dir / f).rglob("*") if p.is_file() and p.name != STAMP)
    for p in files:
        h.update(str(p.relative_to(run_dir)).encode() + b"\0" + (p.read_bytes() if p.exists() else b"-") + b"\0")
    for x in extra:
        h.update(x.encode() + b"\0")
    return h.hexdigest()


def outputs_fresh(folder: str | Path, digest: str, names: Iterable[str]) -> bool:
    """``folder`` holds every file of ``names``, made from inputs of ``digest`` (its stamp)."""
    folder = Path(folder)
    stamp = folder / STAMP
    return stamp.exists() and stamp.read_text() == digest and all((folder / n).exists() for n in names)


def stamp_outputs(folder: str | Path, digest: str | None) -> None:
    """Record that ``folder``'s files were made from inputs of ``digest``; ``None`` removes the
    record (call it before rewriting the files, so an interrupted write is not taken as fresh)."""
    stamp = Path(folder) / STAMP
    if digest is None:
        stamp.unlink(missing_ok=True)
    else:
        stamp.write_text(digest)
