"""Helpers shared by the executor tests: run a TOML grid through a Runner, count stage records."""

from __future__ import annotations

from pathlib import Path

from benchmark.cache import Cache
from benchmark.config import parse_config
from benchmark.runner import Runner


def run(text: str, cache: Path, results: Path, executor):
    """Run the grid of TOML ``text`` with ``executor``; the :class:`~benchmark.runner.RunResult`."""
    return Runner(
        parse_config(text, "tiny.toml"), Cache(cache), results_dir=results, progress=False, executor=executor
    ).run()


def stage_counts(result) -> dict[str, tuple[int, int]]:
    """``{stage: (computed, reused)}`` of a run."""
    t = result.stage_times.set_index("stage")
    return {s: (int(t.loc[s, "computed"]), int(t.loc[s, "reused"])) for s in t.index}
