"""Per-cell feature galleries, saved by the runner into the run directory for the report.

Why here and not in the report: the report must work from a run directory alone (no stage
cache, no rebuilding of models and datasets), so at the end of each grid cell of the *first*
seed the runner calls :func:`save_cell_gallery`, which writes::

    <run_dir>/galleries/<task_slug>/<method_slug>.json   first N directions: top/bottom stimuli
    <run_dir>/galleries/<task_slug>/<method_slug>.png    (image sets) their thumbnails, one sprite

The sprite holds one row per direction (its top stimuli, then its bottom ones), each thumbnail in
a :data:`THUMB_PX` square; the report shows each cell of it with CSS ``object-position``, so a
cell's gallery is two files (cheap to cache, copy and serve). The files are made once per cell
through the stage cache (stage ``gallery``, keyed by the cell's top-examples key), so a warm run
only copies them; files already in the run directory are not rewritten. A gallery that cannot be made (a dataset without the accessors) logs one line
and never stops the run.

Gallery JSON (``version`` 2)::

    {"version": 2, "task": [model, layer, dataset], "method": ..., "method_params": "{...}",
     "seed": 0, "modality": "vision" | "language", "n_directions": k,
     "directions": [{"direction": j,
                     "top": [{"index": i, "value": a, "label": str?, "caption": str?,
                              "sprite": [row, col]?, "text": [before, token, after]?}, ...],
                     "bottom": [...]}, ...]}
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

GALLERY_VERSION = 2
#: directions per cell with a gallery (the first ones, in the basis' own order)
N_DIRECTIONS = 12
#: stimuli shown per side (top and bottom)
N_SHOW = 8
#: longest side of a thumbnail, pixels
THUMB_PX = 64


def slug(text: str) -> str:
    """File-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


def method_slug(method: str, params_json: str) -> str:
    """``sae_topk_k=8-1a2b3c``: readable, and unique per (method, params)."""
    from benchmark.results import method_label

    digest = hashlib.sha256(f"{method}\0{params_json}".encode()).hexdigest()[:6]
    return f"{slug(method_label(method, params_json))}-{digest}"


def split_marked(text: str) -> list[str]:
    """``"ab«c»d"`` -> ``["ab", "c", "d"]`` (the token samples mark the active token ``«so»``)."""
    from benchmark.data.tokens import MARK_CLOSE, MARK_OPEN

    a = text.find(MARK_OPEN)
    b = text.find(MARK_CLOSE, a + 1) if a >= 0 else -1
    if a < 0 or b < 0:
        return [text, "", ""]
    return [text[:a], text[a + 1 : b], text[b + 1 :]]


def thumbnail(image) -> Any:
    """A PIL image of at most :data:`THUMB_PX` on its longest side from ``image [C, H, W]`` in [0, 1]."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.float32)
    arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(arr[:3].transpose(1, 2, 0), "RGB")
    scale = THUMB_PX / max(pil.size)
    size = (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return pil.resize(size, resample)


def _entries(samples, idx: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
    provides = set(samples.provides)
    out: list[dict[str, Any]] = [{"index": int(i), "value": float(v)} for i, v in zip(idx, values)]
    if "labels" in provides and samples.label_names:
        names = samples.label_names
        for e, lab in zip(out, samples.labels(idx)):
            e["label"] = str(names[int(lab)]) if 0 <= int(lab) < len(names) else str(int(lab))
    if samples.modality == "language" and "texts" in provides:
        for e, text in zip(out, samples.texts(idx)):
            e["text"] = split_marked(text)
    elif "captions" in provides:
        for e, caption in zip(out, samples.captions(idx)):
            e["caption"] = caption
    return out


def _write_sprite(path: Path, samples, directions: list[dict], n_show: int) -> None:
    """One PNG per cell: row ``j`` = direction ``j``, its top stimuli then its bottom ones, each in a
    :data:`THUMB_PX` square (centred on white); entries get ``"sprite": [row, col]``."""
    from PIL import Image

    order = np.array(sorted({e["index"] for d in directions for side in ("top", "bottom") for e in d[side]}))
    thumbs = {}
    for start in range(0, len(order), 64):
        batch = order[start : start + 64]
        for i, image in zip(batch.tolist(), samples.images(batch)):
            thumbs[i] = thumbnail(image).convert("RGB")
    sheet = Image.new("RGB", (2 * n_show * THUMB_PX, len(directions) * THUMB_PX), "white")
    for row, d in enumerate(directions):
        for col, e in enumerate(d["top"] + d["bottom"]):
            t = thumbs[e["index"]]
            x = col * THUMB_PX + (THUMB_PX - t.size[0]) // 2
            y = row * THUMB_PX + (THUMB_PX - t.size[1]) // 2
            sheet.paste(t, (x, y))
            e["sprite"] = [row, col]
    sheet.save(path, optimize=False, compress_level=6)


def write_gallery(out: Path, samples, ranked, meta: dict[str, Any]) -> None:
    """Write ``gallery.json`` and ``thumbs/<index>.png`` for the first directions of ``ranked``.

    Args:
        out: an empty directory.
        samples: the task's :class:`~benchmark.data.base.StimulusSet` (indices of ``ranked`` index it).
        ranked: a :class:`metrics.base.Ranked` (``top_idx [k, n]`` etc., whole range).
        meta: task, method, params and seed, copied into the JSON.
    """
    k = ranked.top_idx.shape[0]
    n_dirs, n_show = min(N_DIRECTIONS, k), min(N_SHOW, ranked.top_idx.shape[1])
    directions = []
    shown: set[int] = set()
    for j in range(n_dirs):
        d = {"direction": j}
        for side in ("top", "bottom"):
            idx = np.asarray(getattr(ranked, f"{side}_idx")[j, :n_show], dtype=np.int64)
            vals = np.asarray(getattr(ranked, f"{side}_val")[j, :n_show], dtype=np.float64)
            d[side] = _entries(samples, idx, vals)
            shown.update(int(i) for i in idx)
        directions.append(d)
    if "images" in set(samples.provides):
        _write_sprite(out / "sprite.png", samples, directions, n_show)
    doc = {
        "version": GALLERY_VERSION,
        **meta,
        "modality": samples.modality,
        "n_directions": k,
        "directions": directions,
    }
    (out / "gallery.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True))


def save_cell_gallery(runner, cell, samples, ranked, top_parts: dict) -> None:
    """Called by :meth:`benchmark.runner.Runner.run_cell`: the gallery of ``cell`` into the run directory.

    Only the first seed of the config gets a gallery. Never raises: a failure is logged.
    """
    if cell.seed != runner.config.seeds[0]:
        return
    from benchmark.codedigest import code_digest
    from benchmark.leaderboard import task_slug
    from benchmark.results import params_json

    task = (cell.task.spec.model, cell.task.layer, cell.task.spec.dataset)
    pjson = params_json(cell.params)
    meta = {"task": list(task), "method": cell.method, "method_params": pjson, "seed": cell.seed}
    parts = {
        "top": top_parts,
        "samples": samples.identity(),
        "meta": meta,
        "n": [N_DIRECTIONS, N_SHOW, THUMB_PX],
        "version": GALLERY_VERSION,
        "code": code_digest(__name__),
    }
    try:
        entry = runner.cache.get_or_compute("gallery", parts, lambda tmp: write_gallery(tmp, samples, ranked, meta))
        run_dir = Path(runner.results_dir) / "runs" / (runner.run_id or runner.default_run_id())
        dest = run_dir / "galleries" / task_slug(task)
        dest.mkdir(parents=True, exist_ok=True)
        name = method_slug(cell.method, pjson)
        for src, target in (
            (entry / "gallery.json", dest / f"{name}.json"),
            (entry / "sprite.png", dest / f"{name}.png"),
        ):
            if src.exists() and (not target.exists() or target.read_bytes() != src.read_bytes()):
                shutil.copyfile(src, target)
    except Exception as exc:  # a by-product: never stop the grid for it
        runner.log(f"  gallery of {cell.label} not saved: {type(exc).__name__}: {exc}")


def read_galleries(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """All galleries of a run: ``{(task_slug, method_slug): gallery dict}`` (with ``"dir"`` added)."""
    out = {}
    root = Path(run_dir) / "galleries"
    for path in sorted(root.glob("*/*.json")) if root.exists() else []:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != GALLERY_VERSION:
            continue
        doc["dir"] = path.parent
        out[(path.parent.name, path.stem)] = doc
    return out
