"""Small galleries of top stimuli for the notebook view of a run.

While a run goes, :class:`RecordingExecutor` notes which cache entries each grid cell used;
afterwards :func:`collect_galleries` reads the top-activating probe stimuli of a few of the
best directions per method and keeps them as JSON-able dicts (images as base64 PNG
thumbnails, text contexts as strings), written to ``<run_dir>/gallery.json`` so that
:func:`interpbench.load_results` shows them too. :func:`galleries_html` renders them, every
string escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.runner import Cell, Executor

GALLERY_FILE = "gallery.json"
BASES_FILE = "bases.json"


class RecordingExecutor(Executor):
    """Runs cells in this process, and records each cell's cache keys per stage."""

    def __init__(self, cache) -> None:
        self.cache = cache
        self.stages: list[tuple[Cell, dict[str, str]]] = []

    def map(self, fn: Callable[[Cell], Any], cells: list[Cell]) -> Iterator[Any]:
        for cell in cells:
            start = len(self.cache.records)
            out = fn(cell)
            self.stages.append((cell, {r.stage: r.key for r in self.cache.records[start:]}))
            yield out


def thumbnail_png(image: np.ndarray, size: int = 64) -> str:
    """Base64 PNG of one image ``[C, H, W]`` in [0, 1] (C = 1 or 3), scaled up to ``size`` px."""
    from PIL import Image

    arr = (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr[:3], (1, 2, 0))
    img = Image.fromarray(arr)
    if max(img.size) < size:
        scale = size / max(img.size)
        img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def best_directions(scores: pd.DataFrame, cell: Cell, n: int) -> list[tuple[int, str, float]]:
    """The ``n`` directions of ``cell`` with the best headline score: ``[(direction, metric, value)]``."""
    from benchmark.results import params_json

    rows = scores[
        (scores["model"] == cell.task.spec.model)
        & (scores["layer"] == cell.task.layer)
        & (scores["dataset"] == cell.task.spec.dataset)
        & (scores["method"] == cell.method)
        & (scores["method_params"] == params_json(cell.params))
        & (scores["seed"] == cell.seed)
        & (scores["status"] == "ok")
    ]
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=float))]
    if rows.empty:
        return []
    metric = rows["metric"].iloc[0]
    m = rows[rows["metric"] == metric]
    m = m.sort_values("value", ascending=not bool(m["higher_is_better"].iloc[0]), kind="stable")
    return [(int(r.direction), metric, float(r.value)) for r in m.head(n).itertuples()]


def collect_galleries(
    runner,
    executor: RecordingExecutor,
    scores: pd.DataFrame,
    *,
    max_methods: int = 4,
    n_directions: int = 3,
    n_stimuli: int = 6,
) -> list[dict]:
    """Top stimuli of the best directions of up to ``max_methods`` methods per task (first seed)."""
    from benchmark.results import method_label, params_json

    out: list[dict] = []
    per_task: dict[str, int] = {}
    seed = runner.config.seeds[0]
    for cell, stages in executor.stages:
        if cell.seed != seed or "top" not in stages or per_task.get(cell.task.label, 0) >= max_methods:
            continue
        top_dir = runner.cache.entry_path("top", stages["top"])
        top_file = top_dir / "q0_top_idx.npy"
        if not top_file.exists():
            continue
        top_idx = np.load(top_file)
        _, samples, _, _ = runner._task_objects(cell.task)
        directions = []
        for j, metric, value in best_directions(scores, cell, n_directions):
            idx = top_idx[j, :n_stimuli]
            entry: dict[str, Any] = {"direction": j, "metric": metric, "value": value}
            if "images" in samples.provides:
                entry["images"] = [thumbnail_png(im) for im in samples.images(idx).cpu().numpy()]
            elif "texts" in samples.provides:
                entry["texts"] = [t[-300:] for t in samples.texts(idx)]
                if "tokens" in samples.provides:
                    entry["tokens"] = list(samples.tokens(idx))
            if "labels" in samples.provides and samples.label_names:
                entry["labels"] = [str(samples.label_names[int(i)]) for i in samples.labels(idx)]
            directions.append(entry)
        if directions:
            per_task[cell.task.label] = per_task.get(cell.task.label, 0) + 1
            out.append(
                {
                    "task": cell.task.label,
                    "method": method_label(cell.method, params_json(cell.params)),
                    "seed": cell.seed,
                    "directions": directions,
                }
            )
    return out


def write_bases(run_dir: Path, executor: RecordingExecutor, cache_root: Path) -> None:
    """Record where each cell's fitted basis lies in the cache (``<run_dir>/bases.json``)."""
    from benchmark.results import params_json

    entries = [
        {
            "model": cell.task.spec.model,
            "layer": cell.task.layer,
            "dataset": cell.task.spec.dataset,
            "method": cell.method,
            "method_params": params_json(cell.params),
            "seed": cell.seed,
            "key": stages["basis"],
        }
        for cell, stages in executor.stages
        if "basis" in stages
    ]
    (Path(run_dir) / BASES_FILE).write_text(json.dumps({"cache": str(cache_root), "bases": entries}, indent=1))


def write_galleries(run_dir: Path, galleries: list[dict]) -> None:
    (Path(run_dir) / GALLERY_FILE).write_text(json.dumps(galleries))


def read_galleries(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / GALLERY_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def galleries_from_run_dir(
    run_dir: Path, scores: pd.DataFrame, *, n_directions: int = 3, n_stimuli: int = 6
) -> list[dict]:
    """Galleries from the per-cell files the runner writes into ``<run_dir>/galleries/`` (for the report).

    Used for runs made with the command line (no ``gallery.json``): the best ``n_directions`` of the
    directions those files hold, by the cell's headline score. Returns ``[]`` when there are none.
    """
    from PIL import Image

    from benchmark.config import TaskSpec
    from benchmark.report.gallery import THUMB_PX, read_galleries
    from benchmark.results import method_label
    from benchmark.runner import Task

    out = []
    for doc in read_galleries(Path(run_dir)).values():
        model, layer, dataset = doc["task"]
        params = json.loads(doc["method_params"])
        cell = Cell(
            Task(TaskSpec(model=model, layers=(layer,), dataset=dataset), layer), doc["method"], params, doc["seed"]
        )
        by_direction = {int(d["direction"]): d for d in doc["directions"]}
        ranked = [r for r in best_directions(scores, cell, len(scores)) if r[0] in by_direction][:n_directions]
        sprite_path = Path(doc["dir"]) / f"{_stem(doc)}.png"
        sprite = Image.open(sprite_path).convert("RGB") if sprite_path.is_file() else None
        directions = []
        for j, metric, value in ranked:
            top = by_direction[j]["top"][:n_stimuli]
            entry: dict[str, Any] = {"direction": j, "metric": metric, "value": value}
            if sprite is not None and all("sprite" in e for e in top):
                entry["images"] = []
                for e in top:
                    row, col = e["sprite"]
                    crop = sprite.crop((col * THUMB_PX, row * THUMB_PX, (col + 1) * THUMB_PX, (row + 1) * THUMB_PX))
                    entry["images"].append(thumbnail_png(np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255))
            elif all("text" in e for e in top):
                entry["texts"] = ["".join(e["text"])[-300:] for e in top]
                entry["tokens"] = [e["text"][1] for e in top]
            if all("label" in e for e in top):
                entry["labels"] = [e["label"] for e in top]
            directions.append(entry)
        if directions:
            task = f"{model}/{layer}/{dataset}"
            out.append(
                {
                    "task": task,
                    "method": method_label(doc["method"], doc["method_params"]),
                    "seed": doc["seed"],
                    "directions": directions,
                }
            )
    return sorted(out, key=lambda g: (g["task"], g["method"]))


def _stem(doc: dict) -> str:
    from benchmark.report.gallery import method_slug

    return method_slug(doc["method"], doc["method_params"])


def galleries_html(galleries: list[dict]) -> str:
    """HTML of the galleries; every string from the run or the corpus is escaped."""
    esc = html.escape
    parts = []
    for g in galleries:
        parts.append(f"<h4>{esc(str(g.get('task', '')))} &middot; {esc(str(g.get('method', '')))}</h4>")
        for entry in g.get("directions", []):
            head = (
                f"direction {int(entry.get('direction', -1))}: {esc(str(entry.get('metric', '')))} = "
                f"{float(entry.get('value', float('nan'))):.3f}"
            )
            cells = []
            labels = entry.get("labels") or []
            for i, png in enumerate(entry.get("images", [])):
                if not isinstance(png, str) or not png.isascii() or any(c in png for c in "\"'<> "):
                    continue
                title = esc(str(labels[i])) if i < len(labels) else ""
                cells.append(
                    f'<img src="data:image/png;base64,{png}" title="{title}" alt="{title}" '
                    f'style="width:64px;height:64px;image-rendering:pixelated;margin:1px">'
                )
            tokens = entry.get("tokens") or []
            for i, text in enumerate(entry.get("texts", [])):
                token = f" <b>[{esc(str(tokens[i]))}]</b>" if i < len(tokens) else ""
                cells.append(
                    f'<pre style="display:inline-block;max-width:30em;white-space:pre-wrap;margin:2px;'
                    f'font-size:11px">{esc(str(text))}{token}</pre>'
                )
            parts.append(f"<div><div>{head}</div>{''.join(cells)}</div>")
    return "\n".join(parts)
