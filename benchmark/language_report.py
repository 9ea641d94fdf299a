"""Language-track summaries for reports: which direction reads each source best.

:func:`best_direction_per_source` takes a basis's top examples over token samples and returns,
per source label, the direction whose top-``n`` contexts are most dominated by that source,
with its *label purity* (share of the top ``n`` from that source), the source's base rate
among the probe samples (what a random direction would get), the commonest top tokens and the
first top context. A basis with monosemantic directions has purities near 1 for many sources.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from metrics.base import TopExamples


def label_purity(top_labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Share of each label among each direction's top samples: ``[k, n] -> [k, n_labels]``."""
    k, n = top_labels.shape
    counts = np.zeros((k, n_labels), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(k), n), top_labels.reshape(-1)), 1.0)
    return counts / max(n, 1)


def best_direction_per_source(
    examples: TopExamples, n: int = 16, probe_idx: np.ndarray | None = None, n_tokens: int = 3
) -> pd.DataFrame:
    """Per source: the direction with the highest label purity among its top ``n`` samples.

    Args:
        examples: top examples of a basis (``examples.stimuli`` provides labels; tokens and
            texts are used when provided).
        n: top samples per direction.
        probe_idx: the probe samples, for each source's base rate (NaN when not given).
        n_tokens: how many of the commonest top tokens to list.

    Returns:
        One row per source: ``source, direction, purity, base_rate, lift, top_tokens, example``,
        sorted by purity (highest first).
    """
    stimuli = examples.stimuli
    top = examples.top_idx[:, :n]
    names = list(stimuli.label_names)
    labels = np.asarray(stimuli.labels(top.reshape(-1))).reshape(top.shape)
    purity = label_purity(labels, len(names))  # [k, L]
    if probe_idx is not None and len(probe_idx):
        base = np.bincount(np.asarray(stimuli.labels(np.asarray(probe_idx))), minlength=len(names)) / len(probe_idx)
    else:
        base = np.full(len(names), np.nan)
    rows = []
    for j, name in enumerate(names):
        d = int(np.argmax(purity[:, j]))
        p = float(purity[d, j])
        tokens = ""
        if "tokens" in stimuli.provides:
            common = Counter(stimuli.tokens(top[d])).most_common(n_tokens)
            tokens = " ".join(f"{t!r}x{c}" for t, c in common)
        example = stimuli.texts(top[d, :1])[0] if "texts" in stimuli.provides else ""
        rows.append(
            {
                "source": name,
                "direction": d,
                "purity": p,
                "base_rate": float(base[j]),
                "lift": p / float(base[j]) if base[j] > 0 else np.nan,
                "top_tokens": tokens,
                "example": " ".join(example.split())[:120],
            }
        )
    return pd.DataFrame(rows).sort_values("purity", ascending=False, kind="stable").reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown (text cells escaped for ``|``)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_source_tables(runner, n: int = 16) -> dict[str, pd.DataFrame]:
    """:func:`best_direction_per_source` for every language cell of a finished run.

    Everything is read from the run's cache (activations and bases); only the top examples are
    recomputed (one streamed pass over the probe activations per basis).
    """
    from benchmark.activations import ActivationStore
    from benchmark.cache import using_cache
    from benchmark.topk import top_examples
    from methods.base import Basis

    tables: dict[str, pd.DataFrame] = {}
    with using_cache(runner.cache):
        for cell in runner.cells():
            model, samples, _fit_idx, probe_idx = runner._task_objects(cell.task)
            if samples.modality != "language" or "labels" not in samples.provides:
                continue
            probe_path, _ = runner.activations(cell.task, "probe")
            _, parts = runner.basis_parts(cell)
            path = runner.cache.lookup("basis", runner.cache.key("basis", parts))
            if path is None:
                continue  # not fitted yet: run the grid first
            basis = Basis.load(path)
            bands = top_examples(basis, ActivationStore.open(probe_path), n, device=runner.device, seed=cell.seed)
            tables[cell.label] = best_direction_per_source(TopExamples(samples, bands), n=n, probe_idx=probe_idx)
    return tables
