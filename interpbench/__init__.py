"""interpbench from Python and notebooks.

::

    import interpbench

    res = interpbench.run("quick", results_dir="results")   # a shipped config, a TOML path, a Config or a dict
    res.scores          # pandas: one row per (task, method, seed, metric, direction)
    res.fits            # pandas: one row per fitted basis (FVU, L0, dead fraction, fit seconds)
    res.leaderboard()   # methods x metrics per task
    res                 # in a notebook: the leaderboard and galleries of top stimuli

    res = interpbench.load_results("results/runs/quick-1a2b3c4d")

See docs/python-api.md.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from interpbench.results import Results

__all__ = ["Results", "load_config", "load_results", "run"]


def load_config(config: Any) -> Any:
    """A :class:`benchmark.config.Config` from a shipped name, a TOML path, a dict or a Config.

    A dict has the layout of the TOML file (``{"tasks": [...], "methods": [...], ...}``); it is
    written out as TOML and parsed like a file, so it is validated the same way and never executed.
    """
    from benchmark.config import Config, parse_config
    from benchmark.config import load_config as load_toml
    from benchmark.errors import UserError

    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return parse_config(to_toml(config), "<dict>")
    if isinstance(config, str | Path):
        return load_toml(config)
    raise UserError(
        f"config must be a shipped config name, a TOML path, a dict or a Config, got {type(config).__name__}"
    )


def run(
    config: Any,
    cache_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    *,
    methods: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    gallery: bool = True,
) -> Results:
    """Run a benchmark grid (every stage through the cache) and return its :class:`Results`.

    Args:
        config: a shipped config name (``"quick"``, ``"default"``), a TOML path, a dict, or a Config.
        cache_dir: the stage cache (default ``$INTERPBENCH_CACHE`` or ``~/.cache/interpbench``).
        results_dir: where ``runs/<run_id>/`` is written (default ``results``).
        methods: run only these methods (like ``--only-method``).
        metrics: score only these metrics (like ``--only-metric``).
        run_id: the run directory's name (default: config name + hash).
        progress: show progress bars and per-cell lines on stderr.
        gallery: keep top stimuli of a few of the best directions for the HTML view.
    """
    from benchmark.cache import Cache, default_root
    from benchmark.runner import Runner
    from interpbench.gallery import RecordingExecutor, collect_galleries, write_bases, write_galleries

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cfg = load_config(config)
    cache = Cache(Path(cache_dir) if cache_dir is not None else default_root())
    executor = RecordingExecutor(cache)
    kwargs: dict[str, Any] = {}
    if cfg.executor == "local":
        kwargs["executor"] = executor
    runner = Runner(
        cfg,
        cache,
        results_dir=Path(results_dir) if results_dir is not None else Path("results"),
        only_methods=tuple(methods or ()),
        only_metrics=tuple(metrics or ()),
        run_id=run_id,
        progress=progress,
        **({} if progress else {"log": lambda s: None}),  # with progress: stderr, above the bar
        **kwargs,
    )
    out = runner.run()
    galleries: list[dict] = []
    if executor.stages:
        write_bases(out.run_dir, executor, cache.root)
    if gallery and executor.stages:
        try:
            galleries = collect_galleries(runner, executor, out.scores)
        except Exception as exc:  # the HTML view is a convenience: never fail a finished run for it
            print(f"interpbench: no galleries ({type(exc).__name__}: {exc})", file=sys.stderr)
        write_galleries(out.run_dir, galleries)
    return Results(out.run_dir, out.scores, out.fits, out.stage_times, galleries)


def load_results(path: str | Path) -> Results:
    """The :class:`Results` of a finished run.

    ``path`` is a run directory (``results/runs/<run_id>``), or a results directory whose
    ``runs/`` holds run directories (then the most recently written run is loaded).
    """
    from benchmark.errors import UserError
    from benchmark.results import read_tables
    from interpbench.gallery import GALLERY_FILE, galleries_from_run_dir, read_galleries

    path = Path(path).expanduser()
    if not (path / "scores.parquet").exists() and (path / "runs").is_dir():
        runs = [p for p in (path / "runs").iterdir() if (p / "scores.parquet").exists()]
        if not runs:
            raise UserError(f"{path}/runs has no run directories with scores.parquet")
        path = max(runs, key=lambda p: (p / "scores.parquet").stat().st_mtime).resolve()
    scores, fits = read_tables(path)
    galleries = read_galleries(path)
    if not galleries and not (path / GALLERY_FILE).exists():  # a command-line run: the report's galleries
        try:
            galleries = galleries_from_run_dir(path, scores)
        except Exception:  # the HTML view is a convenience: never fail to load a run for it
            galleries = []
    return Results(path, scores, fits, None, galleries)


# -- dict -> TOML (so a dict config is parsed and validated exactly like a file) -----------
def _toml_value(value: Any, where: str) -> str:
    import json

    from benchmark.errors import UserError

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items()) + " }"
    if value is None:
        raise UserError(f"config {where}: None has no TOML form; leave the key out to get its default")
    raise UserError(f"config {where}: cannot write a {type(value).__name__} into a config")


def _toml_key(key: Any) -> str:
    import json
    import re

    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(data: dict[str, Any]) -> str:
    """TOML text for a config dict: top-level keys, then ``[[tasks]]``, ``[[methods]]``, ``[[metrics]]`` tables."""
    lines = []
    tables = {}
    for key, value in data.items():
        if isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            tables[key] = value
        elif value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    for key, items in tables.items():
        for i, item in enumerate(items):
            lines.append(f"\n[[{_toml_key(key)}]]")
            for k, v in item.items():
                if v is not None:
                    lines.append(f"{_toml_key(k)} = {_toml_value(v, f'{key}[{i}].{k}')}")
    return "\n".join(lines) + "\n"
